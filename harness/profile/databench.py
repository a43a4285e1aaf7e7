"""Data and evaluation bench: speed of the training pipeline and of the evaluation post-processing.

* ``bench_pipeline``: per-sample time of our training pipeline (decode + augment + warp + normalise +
  heatmaps) on one thread, and of mmpose 1.x's equivalent pipeline on the same instances (LoadImage,
  GetBBoxCenterScale, RandomFlip, RandomHalfBody, RandomBBoxTransform, TopdownAffine,
  GenerateTarget(MSRAHeatmap), PackPoseInputs) when an interpreter with mmpose is given or mmpose is
  importable here; both also without the JPEG decode (the same libjpeg-turbo call in both pipelines).
* ``bench_eval``: parsing, rescoring + OKS-NMS and COCOeval of a synthetic COCO-val-sized set.
* ``bench_bootstrap``: the paired bootstrap (``harness.eval.bootstrap``) of two models on a synthetic
  COCO-val-size set: one COCOeval per model, then the vectorised resamples.

This file imports only the standard library at module level: ``bench_pipeline`` runs it as a plain
script under mmpose's interpreter (``--mmpose-worker``), which has no harness.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

# A development checkout's COCO-format sample (real JPEGs); elsewhere pass a COCO-format folder.
DEV_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-mini"


def _clock() -> float:
    # CPU time of this (single-threaded) process: "per core" cost, and far less sensitive than
    # wall time to other processes competing for the machine's cores.
    return time.process_time()


def _single_thread() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _instances(root: Path, split: str) -> list[dict]:
    """GT instances of a COCO-format split as plain dicts (shared by both pipelines)."""
    import numpy as np

    ann = json.loads((root / "annotations" / f"person_keypoints_{split}.json").read_text())
    imgs = {i["id"]: i for i in ann["images"]}
    out = []
    for a in ann["annotations"]:
        im = imgs[a["image_id"]]
        w, h = im["width"], im["height"]
        x, y, bw, bh = a["bbox"]
        x1, y1 = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
        x2, y2 = np.clip(x + bw, 0, w - 1), np.clip(y + bh, 0, h - 1)
        if a.get("iscrowd") or a.get("num_keypoints", 1) == 0 or x2 <= x1 or y2 <= y1:
            continue
        out.append(dict(path=str(root / split / im["file_name"]), bbox=[float(x1), float(y1), float(x2), float(y2)],
                        keypoints=a["keypoints"], id=a["id"], image_id=a["image_id"]))
    return out


def _mmpose_worker(root: Path, split: str, repeats: int) -> dict:
    """Time mmpose's top-down training pipeline (runs under an interpreter with mmpose)."""
    _single_thread()
    import copy

    import cv2
    import numpy as np
    import mmpose.datasets  # noqa: F401  (registers the codecs)
    del mmpose
    from mmengine.dataset import Compose
    from mmpose.datasets.transforms import (GenerateTarget, GetBBoxCenterScale, LoadImage, PackPoseInputs,
                                            RandomBBoxTransform, RandomFlip, RandomHalfBody, TopdownAffine)

    codec = dict(type="MSRAHeatmap", input_size=(192, 256), heatmap_size=(48, 64), sigma=2)
    steps = [GetBBoxCenterScale(), RandomFlip(direction="horizontal"), RandomHalfBody(),
             RandomBBoxTransform(), TopdownAffine(input_size=codec["input_size"]),
             GenerateTarget(encoder=codec), PackPoseInputs()]
    full = Compose([LoadImage()] + steps)
    no_decode = Compose(steps)
    flip = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    samples = []
    for s in _instances(root, split):
        k = np.asarray(s["keypoints"], np.float32).reshape(1, -1, 3)
        samples.append(dict(img_path=s["path"], bbox=np.asarray([s["bbox"]], np.float32),
                            bbox_score=np.ones(1, np.float32), keypoints=k[..., :2],
                            keypoints_visible=np.minimum(1, k[..., 2]), flip_indices=flip,
                            upper_body_ids=list(range(11)), lower_body_ids=list(range(11, 17)),
                            id=s["id"], img_id=s["image_id"], category_id=1))
    np.random.seed(0)
    for s in samples[:5]:
        full(copy.deepcopy(s))
    t = _clock()
    for _ in range(repeats):
        for s in samples:
            full(copy.deepcopy(s))  # mmpose's BaseDataset deep-copies each data_info too
    t_full = (_clock() - t) / (repeats * len(samples))
    decoded = {s["img_path"]: cv2.imread(s["img_path"]) for s in samples}
    t = _clock()
    for _ in range(repeats):
        for s in samples:
            d = copy.deepcopy(s)
            d["img"] = decoded[s["img_path"]].copy()
            d["img_shape"] = d["img"].shape[:2]
            d["ori_shape"] = d["img"].shape[:2]
            no_decode(d)
    t_nodec = (_clock() - t) / (repeats * len(samples))
    return {"ms_per_sample": 1e3 * t_full, "ms_per_sample_without_decode": 1e3 * t_nodec,
            "samples": len(samples)}


def _time_ours(ds, decoded: dict | None, epoch: int) -> float:
    """Seconds per sample for one pass over ``ds`` (with ``decoded`` images: decode excluded)."""
    from harness.data.dataset import normalize
    from harness.data.transforms import apply_affine, warp_image

    h, w = ds.input_size
    ds.set_epoch(epoch)
    t = _clock()
    for i in range(len(ds)):
        if decoded is None:
            ds[i]
        else:
            p = ds.crop_params(i)
            crop = warp_image(decoded[ds.instances[i].file], p["img_matrix"], (w, h))
            normalize(crop)
            ds.codec.encode(apply_affine(p["keypoints"], p["matrix"])[None], p["visible"][None])
    return (_clock() - t) / len(ds)


def bench_pipeline(root: str | Path, split: str = "train2017", repeats: int = 3,
                   mmpose_python: str | None = None, decode: str = "full") -> dict:
    """Per-sample ms of our pipeline (one thread) and, if available, mmpose's on the same images.

    ``decode`` is our dataset's JPEG decoding (``harness.data.decode``); mmpose always decodes whole
    images, as its pipeline does.

    Times are process CPU seconds on one thread. The two pipelines are timed in alternation
    (``repeats`` rounds) and the fastest round of each is kept, so that load from other processes
    on a shared machine affects both alike.
    """
    _single_thread()
    from harness.data import build_dataset
    from harness.data.coco import load_image

    root = Path(root)
    ds = build_dataset("coco", root, split.replace("2017", ""), train=True, seed=0, decode=decode)
    n = len(ds)
    for i in range(min(5, n)):
        ds[i]
    decoded = {inst.file: load_image(inst.file) for inst in ds.instances}
    ours_full, ours_nodec, mm_full, mm_nodec = [], [], [], []
    have_mm = True
    for r in range(repeats):
        ours_full.append(_time_ours(ds, None, r))
        ours_nodec.append(_time_ours(ds, decoded, r))
        if not have_mm:
            continue
        if mmpose_python:
            proc = subprocess.run([mmpose_python, __file__, "--mmpose-worker", "--root", str(root), "--split", split,
                                   "--repeats", "1"], capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                raise RuntimeError(f"mmpose worker failed ({mmpose_python}):\n{proc.stderr[-2000:]}")
            mm = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            try:
                mm = _mmpose_worker(root, split, 1)
            except ImportError:
                have_mm = False
                continue
        mm_full.append(mm["ms_per_sample"] / 1e3)
        mm_nodec.append(mm["ms_per_sample_without_decode"] / 1e3)
    out = {"ours": {"ms_per_sample": 1e3 * min(ours_full), "ms_per_sample_without_decode": 1e3 * min(ours_nodec),
                    "samples": n, "decode": decode}, "mmpose": None, "rounds": repeats}
    if mm_full:
        out["mmpose"] = {"ms_per_sample": 1e3 * min(mm_full), "ms_per_sample_without_decode": 1e3 * min(mm_nodec),
                         "samples": n}
        out["speedup"] = min(mm_full) / min(ours_full)
        out["speedup_without_decode"] = min(mm_nodec) / min(ours_nodec)
    return out


def synthetic_raw_predictions(num_images: int = 5000, per_image: int = 20, num_keypoints: int = 17,
                              seed: int = 0):
    """A COCO-val-sized set of raw predictions: clusters of near-duplicates per person, as a
    detector + top-down model produce them. Returns ``RawPredictions``."""
    import numpy as np

    from harness.eval.postprocess import RawPredictions

    rng = np.random.default_rng(seed)
    n = num_images * per_image
    image_ids = np.repeat(np.arange(num_images), per_image)
    persons = rng.integers(1, 6, size=num_images)  # 1..5 people per image
    person = rng.integers(0, 5, size=n) % np.repeat(persons, per_image)
    base = rng.uniform(0, 600, size=(num_images, 5, 1, 2)) + rng.normal(0, 40, size=(num_images, 5, num_keypoints, 2))
    kps = base[image_ids, person] + rng.normal(0, 4, size=(n, num_keypoints, 2))
    areas = rng.uniform(32 ** 2, 300 ** 2, size=n)
    return RawPredictions(
        image_ids=image_ids.astype(np.int64), category_ids=np.ones(n, np.int64),
        keypoints=kps.astype(np.float32), keypoint_scores=rng.uniform(0, 1, (n, num_keypoints)).astype(np.float32),
        bbox_scores=rng.uniform(0.1, 1, n), areas=areas,
        bboxes=np.concatenate([kps.min(1), kps.max(1) - kps.min(1)], axis=1),
    )


def _synthetic_gt(raw, selected):
    """An in-memory xtcocotools COCO: one GT person per kept prediction, jittered (timing only)."""
    import contextlib
    import io

    import numpy as np
    from xtcocotools.coco import COCO

    rng = np.random.default_rng(1)
    kps = raw.keypoints[selected] + rng.normal(0, 3, raw.keypoints[selected].shape)
    k = kps.shape[1]
    vis = np.full((len(selected), k, 1), 2.0)
    flat = np.concatenate([kps, vis], axis=2).reshape(len(selected), -1)
    lo, hi = kps.min(1), kps.max(1)
    images = [{"id": int(i), "width": 1000, "height": 1000} for i in np.unique(raw.image_ids)]
    anns = [{"id": j + 1, "image_id": int(raw.image_ids[i]), "category_id": 1, "iscrowd": 0,
             "keypoints": flat[j].tolist(), "num_keypoints": k, "area": float(raw.areas[i]),
             "bbox": [float(lo[j, 0]), float(lo[j, 1]), float(hi[j, 0] - lo[j, 0]), float(hi[j, 1] - lo[j, 1])]}
            for j, i in enumerate(selected.tolist())]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def bench_eval(num_images: int = 5000, per_image: int = 20) -> dict:
    """Seconds of each evaluation step on ``num_images * per_image`` synthetic raw predictions: parsing
    the RAW.json list, rescoring + OKS-NMS (ours, vectorised), the COCO results list, and the whole
    ``harness.eval.evaluate`` (its own rescoring + NMS, then xtcocotools' COCOeval against a synthetic GT)."""
    from harness.data.metainfo import COCO_META
    from harness.eval.coco_eval import evaluate
    from harness.eval.postprocess import RawPredictions, postprocess, to_coco_results

    raw = synthetic_raw_predictions(num_images, per_image)
    as_list = raw.to_list()
    t = time.perf_counter()
    RawPredictions.from_list(as_list, 17)
    t_parse = time.perf_counter() - t
    t = time.perf_counter()
    sel, scores = postprocess(raw, COCO_META.sigmas_array)
    t_nms = time.perf_counter() - t
    t = time.perf_counter()
    to_coco_results(raw, sel, scores)
    t_res = time.perf_counter() - t
    gt = _synthetic_gt(raw, sel)
    t = time.perf_counter()
    metrics = evaluate(raw, "<synthetic>", COCO_META, coco_gt=gt)
    t_eval = time.perf_counter() - t
    return {"predictions": len(raw), "images": num_images, "kept_after_nms": int(len(sel)),
            "seconds_parse_raw_list": t_parse, "seconds_rescore_oks_nms": t_nms, "seconds_to_coco_results": t_res,
            "seconds_evaluate_total": t_eval, "seconds_cocoeval": max(t_eval - t_nms, 0.0),
            "nms_share_of_evaluate": t_nms / t_eval, "predictions_per_s": len(raw) / t_eval,
            "AP_sanity": metrics["AP"]}


def _bootstrap_set(n_images: int, per_image: int, seed: int, out: Path):
    """A synthetic COCO-format set with two models' raw predictions (jittered people plus clutter):
    (annotation file, predictions A, predictions B, number of people)."""
    import numpy as np

    from harness.data import COCO_META

    rng = np.random.default_rng(seed)
    images, anns, preds = [], [], {0: [], 1: []}
    aid = 0
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"})
        people = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.uniform(0, 500), rng.uniform(0, 300)
            w, h = rng.uniform(40, 140), rng.uniform(80, 180)
            kp = np.c_[rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17), np.full(17, 2)]
            aid += 1
            anns.append({"id": aid, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": [x, y, w, h],
                         "area": w * h * 0.6, "num_keypoints": 17, "keypoints": kp.ravel().tolist()})
            people.append((x, y, w, h, kp))
        for m, noise in ((0, 0.04), (1, 0.06)):
            for j in range(per_image):
                if people and j < 3 * len(people):
                    x, y, w, h, kp = people[j % len(people)]
                    k = kp[:, :2] + rng.normal(0, noise * max(w, h), (17, 2))
                else:
                    x, y, w, h = rng.uniform(0, 500), rng.uniform(0, 300), 80, 120
                    k = np.c_[rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17)]
                preds[m].append({"image_id": i, "category_id": 1, "bbox": [x, y, w, h],
                                 "bbox_score": float(rng.uniform(0.3, 1)), "area": float(w * h * 1.56),
                                 "keypoints": k.tolist(), "keypoint_scores": rng.uniform(0.1, 1, 17).tolist()})
    ann = out / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns,
                               "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_META.keypoint_names),
                                               "skeleton": []}]}))
    return ann, preds[0], preds[1], len(anns)


def bench_bootstrap(num_images: int = 5000, per_image: int = 20, resamples: int = 1000) -> dict:
    """Seconds of the paired bootstrap on a synthetic COCO-val-size set (``num_images`` images, 0-4 people
    each, two models with ``per_image`` raw predictions per image): the one COCOeval run per model
    (rescoring, OKS-NMS, per-image matching) and the ``resamples`` paired resamples of both models."""
    import tempfile

    from harness.data import COCO_META
    from harness.eval.bootstrap import MatchTable, paired_bootstrap
    from harness.eval.coco_eval import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        ann, a, b, n_people = _bootstrap_set(num_images, per_image, 0, Path(tmp))
        tables, t_eval = {}, {}
        for name, preds in (("A", a), ("B", b)):
            t = time.perf_counter()
            evaluate(preds, ann, COCO_META, on_eval=lambda ev, n=name: tables.__setitem__(n, MatchTable.from_cocoeval(ev)))
            t_eval[name] = time.perf_counter() - t
        t = time.perf_counter()
        res = paired_bootstrap(tables, resamples=resamples, seed=0)
        t_boot = time.perf_counter() - t
    d = res.diffs[0]
    return {"images": num_images, "people": n_people, "predictions_per_model": len(a), "resamples": resamples,
            "seconds_cocoeval_per_model": t_eval, "seconds_resamples": t_boot,
            "AP": {m.name: [m.value, m.lo, m.hi] for m in res.models.values()},
            "diff": [d.diff, d.lo, d.hi], "sign_flip": d.sign_flip}


if __name__ == "__main__":
    # Run as a plain script by mmpose's interpreter (``bench_pipeline``): standard library imports only.
    ap = argparse.ArgumentParser(description="mmpose side of bench_pipeline (prints one JSON line)")
    ap.add_argument("--mmpose-worker", action="store_true", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--split", default="train2017")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    print(json.dumps(_mmpose_worker(Path(a.root), a.split, a.repeats)))
