"""The procedural synthetic crowd dataset: determinism, annotation validity, split character, caching."""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.commands import synth as synth_cmd
from harness.data import synthetic as S
from harness.data.synthetic import (
    KEYPOINT_NAMES, NUM_KEYPOINTS, SPLITS, SynthConfig, annotation_path, detections_path, ensure_synthetic,
    generate, is_cached, render_image, write_preview,
)

SMALL = {"train": 12, "val": 24, "occluded": 24}


def small_cfg(**kw) -> SynthConfig:
    return SynthConfig(**{"num_images": dict(SMALL), **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, SynthConfig]:
    root = tmp_path_factory.mktemp("synth") / "data"
    cfg = small_cfg(seed=3)
    generate(root, cfg, progress=False)
    return root, cfg


def load(root: Path, split: str) -> dict:
    return json.loads(annotation_path(root, split).read_text())


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain IoU of (N, 4) and (M, 4) xywh boxes, written independently of the module's helper."""
    ax0, ay0, ax1, ay1 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1) - np.maximum(ax0[:, None], bx0), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1) - np.maximum(ay0[:, None], by0), 0, None)
    inter = iw * ih
    return inter / (a[:, 2:].prod(1)[:, None] + b[:, 2:].prod(1)[None] - inter)


# ---------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("kw, field", [
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"image_size": (32, 32)}, "image_size"),
    ({"image_size": "256"}, "image_size"),
    ({"image_size": (256.0, 256)}, "image_size"),
    ({"num_images": {"test": 3}}, "num_images"),
    ({"num_images": {"train": -1}}, "num_images['train']"),
    ({"num_images": {"train": 0, "val": 0}}, "num_images"),
    ({"num_images": [1, 2]}, "num_images"),
    ({"people_per_image": (3, 2)}, "people_per_image"),
    ({"occluded_people_per_image": (0, 2)}, "occluded_people_per_image"),
    ({"people_per_image": (1, 99)}, "people_per_image"),
    ({"person_height": (0.9, 0.5)}, "person_height"),
    ({"image_size": (64, 64)}, "person_height"),  # figures would be under 48 px tall
    ({"max_overlap_iou": 1.5}, "max_overlap_iou"),
    ({"hidden_radius": -0.1}, "hidden_radius"),
    ({"det_jitter": "big"}, "det_jitter"),
    ({"jpeg_quality": 10}, "jpeg_quality"),
])
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ValueError, match=f"SynthConfig.{field}".replace("[", r"\[").replace("]", r"\]")):
        SynthConfig(**kw)


def test_config_normalises_and_round_trips():
    cfg = SynthConfig(image_size=[128, 160], num_images={"val": 5}, people_per_image=[1, 3])
    assert cfg.image_size == (128, 160) and cfg.people_per_image == (1, 3)
    assert cfg.num_images == {"train": 0, "val": 5, "occluded": 0}  # missing splits are empty
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert SynthConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        SynthConfig.from_dict({**d, "colour": "red"})


# ------------------------------------------------------------------------------------------ determinism

def test_render_is_deterministic_per_seed_split_index():
    cfg = small_cfg()
    a, b = render_image(cfg, "val", 7), render_image(cfg, "val", 7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.owner, b.owner)
    assert [p.keypoints.tolist() for p in a.people] == [p.keypoints.tolist() for p in b.people]
    # independent of what was rendered before, and different across index, split and seed
    render_image(cfg, "train", 0)
    assert np.array_equal(render_image(cfg, "val", 7).image, a.image)
    assert not np.array_equal(render_image(cfg, "val", 8).image, a.image)
    assert not np.array_equal(render_image(cfg, "train", 7).image, a.image)
    assert not np.array_equal(render_image(small_cfg(seed=1), "val", 7).image, a.image)
    with pytest.raises(ValueError, match="split"):
        render_image(cfg, "test", 0)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "meta.json"}


def test_generation_is_byte_identical_for_same_seed_and_worker_count(tmp_path, dataset):
    root, cfg = dataset
    again = tmp_path / "again"
    generate(again, cfg, progress=False, workers=2)  # another process pool, same bytes
    a, b = _tree_bytes(root), _tree_bytes(again)
    assert a.keys() == b.keys() and len(a) == sum(SMALL.values()) + 4  # images + 3 annotations + dets
    assert all(a[k] == b[k] for k in a)
    other = tmp_path / "other"
    generate(other, small_cfg(seed=4), progress=False)
    c = _tree_bytes(other)
    assert c.keys() == a.keys()
    assert sum(a[k] != c[k] for k in a) == len(a)  # a different seed changes every file


# ------------------------------------------------------------------------------------------- validity

@pytest.mark.parametrize("split", SPLITS)
def test_annotation_files_are_valid_coco(dataset, split):
    root, cfg = dataset
    H, W = cfg.image_size
    coco = load(root, split)
    assert coco["categories"][0]["keypoints"] == list(KEYPOINT_NAMES)
    assert coco["categories"][0]["id"] == 1 and len(coco["categories"][0]["skeleton"]) == 19
    images = {im["id"]: im for im in coco["images"]}
    assert len(images) == cfg.num_images[split] == len(coco["images"])
    for im in coco["images"]:
        assert im["file_name"] == f"{im['id']:012d}.jpg" and (im["width"], im["height"]) == (W, H)
        pix = cv2.imread(str(root / split / im["file_name"]))
        assert pix is not None and pix.shape == (H, W, 3)
    ids = [a["id"] for a in coco["annotations"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 2 * len(images)
    labeled_total = 0
    for a in coco["annotations"]:
        assert a["image_id"] in images and a["category_id"] == 1 and a["iscrowd"] == 0
        kp = np.array(a["keypoints"]).reshape(NUM_KEYPOINTS, 3)
        x, y, v = kp.T
        assert set(v.tolist()) <= {0, 1, 2}
        assert a["num_keypoints"] == int((v > 0).sum())
        assert np.all(kp[v == 0, :2] == 0), "unlabeled keypoints must be (0, 0, 0)"
        lab = v > 0
        assert np.all((x[lab] >= 0) & (x[lab] < W) & (y[lab] >= 0) & (y[lab] < H)), "labeled but outside"
        bx, by, bw, bh = a["bbox"]
        assert bx >= 0 and by >= 0 and bw > 0 and bh > 0 and bx + bw <= W and by + bh <= H
        assert np.all((x[lab] >= bx) & (x[lab] <= bx + bw) & (y[lab] >= by) & (y[lab] <= by + bh))
        assert 0 < a["area"] <= bw * bh
        for poly in a["segmentation"]:
            pts = np.array(poly).reshape(-1, 2)
            assert len(pts) >= 3
            assert np.all((pts >= [bx, by]) & (pts <= [bx + bw, by + bh]))
        labeled_total += int(lab.sum())
    assert labeled_total > 5 * len(coco["annotations"])  # people are mostly annotatable
    # the files hold exactly what the renderer drew (image index 1 of this split)
    r = render_image(cfg, split, 1)
    in_file = [a["keypoints"] for a in coco["annotations"] if a["image_id"] == coco["images"][1]["id"]]
    assert in_file == [p.keypoints.reshape(-1).tolist() for p in r.people]


def test_visibility_matches_the_owner_map():
    """v=2 iff the person owns the keypoint pixel; v=1 iff a later person does and some own visible
    pixel is within the hidden radius; v=0 otherwise (outside / buried / far side of the head)."""
    cfg = small_cfg()
    seen = {"v2": 0, "v1": 0, "self": 0}
    for split, idx in [("occluded", i) for i in range(12)] + [("val", i) for i in range(6)]:
        r = render_image(cfg, split, idx)
        slots = [p.slot for p in r.people]
        assert slots == sorted(slots)
        for p in r.people:
            vis_yx = np.argwhere(r.owner == p.slot)
            assert len(vis_yx) == p.area > 0
            kp = p.keypoints
            rad = cfg.hidden_radius * p.height_px
            for j in range(NUM_KEYPOINTS):
                x, y, v = kp[j]
                if v == 2:
                    assert r.owner[y, x] == p.slot
                    seen["v2"] += 1
                elif v == 1:
                    assert r.owner[y, x] > p.slot, "occluded keypoints are covered by a later person"
                    assert np.hypot(*(vis_yx - [y, x]).T).min() <= rad + 1e-6
                    seen["v1"] += 1
                else:  # why it is unlabeled is checked in test_unlabeled_keypoints_are_outside_or_buried
                    assert x == 0 and y == 0
                    if p.self_hidden[j]:
                        assert j < 5, "only face points are self-occluded"
                        seen["self"] += 1
    assert seen["v2"] > 200 and seen["v1"] > 20 and seen["self"] > 5


def test_unlabeled_keypoints_are_outside_or_buried(monkeypatch):
    """Recover the raw keypoint positions through a patched drawer and check why each v=0 happened."""
    cfg = small_cfg()
    H, W = cfg.image_size
    raw: list[np.ndarray] = []
    orig = S._draw_figure

    def spy(fig, offset, image, mask):
        kp = orig(fig, offset, image, mask)
        raw.append(kp.copy())
        return kp

    counts = {"outside": 0, "buried": 0}
    monkeypatch.setattr(S, "_draw_figure", spy)
    for idx in range(12):
        raw.clear()
        r = render_image(cfg, "occluded", idx)
        for p in r.people:
            xy = raw[p.slot]
            vis_yx = np.argwhere(r.owner == p.slot)
            for j in np.nonzero((p.keypoints[:, 2] == 0) & ~p.self_hidden)[0]:
                x, y = xy[j]
                if not (0 <= x < W and 0 <= y < H):
                    counts["outside"] += 1
                    continue
                assert r.owner[y, x] != p.slot
                assert np.hypot(*(vis_yx - [y, x]).T).min() > cfg.hidden_radius * p.height_px
                counts["buried"] += 1
            lab = p.keypoints[:, 2] > 0
            assert np.array_equal(p.keypoints[lab, :2], xy[lab])
    assert counts["outside"] > 0 and counts["buried"] > 0


def test_figures_have_plausible_anatomy_and_left_right_semantics():
    rng = np.random.default_rng(0)
    for _ in range(300):
        H = 150.0
        f = S._sample_figure(rng, H)
        kp = f.kp
        up = (kp[S._LSHO] + kp[S._RSHO]) / 2 - (kp[S._LHIP] + kp[S._RHIP]) / 2
        lat = np.array([-up[1], up[0]])
        # front view: the person's left is on the viewer's right, mirrored for a back view
        assert np.sign((kp[S._LSHO] - kp[S._RSHO]) @ lat) == np.sign(math.cos(f.yaw))
        for a, b, nominal in [(S._LSHO, S._LELB, S._UPPER_ARM), (S._RELB, S._RWRI, S._FOREARM),
                              (S._LHIP, S._LKNE, S._THIGH), (S._RKNE, S._RANK, S._SHIN)]:
            length = np.linalg.norm(kp[a] - kp[b]) / H
            assert 0.7 * 0.85 * nominal - 1e-9 <= length <= 1.15 * nominal + 1e-9
        # eyes and nose are never labeled on a head seen from behind
        if math.cos(f.yaw) < -0.8:
            assert f.self_hidden[[0, 1, 2]].all()
        if math.cos(f.yaw) > 0.5:  # a face turned to the camera shows nose and eyes, and one ear at least
            assert not f.self_hidden[:3].any() and not f.self_hidden[3:5].all()


# --------------------------------------------------------------------------------- split character

def test_occluded_split_overlaps_more_than_val(dataset):
    root, _ = dataset

    def stats(split):
        coco = load(root, split)
        by_img: dict[int, list] = {}
        for a in coco["annotations"]:
            by_img.setdefault(a["image_id"], []).append(a)
        max_iou = []
        for anns in by_img.values():
            if len(anns) < 2:
                max_iou.append(0.0)
                continue
            b = np.array([a["bbox"] for a in anns], float)
            iou = box_iou(b, b)
            np.fill_diagonal(iou, 0)
            max_iou.append(iou.max(1).mean())
        v = np.array([a["keypoints"][2::3] for a in coco["annotations"]])
        return float(np.mean(max_iou)), float((v == 1).sum() / (v > 0).sum())

    val_iou, val_occ = stats("val")
    occ_iou, occ_occ = stats("occluded")
    assert occ_iou > 0.5 > 0.3 > val_iou
    assert occ_occ > 2 * val_occ and occ_occ > 0.15
    meta = json.loads((root / "meta.json").read_text())
    assert meta["counts"]["occluded"]["mean_max_iou"] > meta["counts"]["val"]["mean_max_iou"]


def test_detection_file_looks_like_detector_output(dataset):
    root, cfg = dataset
    H, W = cfg.image_size
    dets = json.loads(detections_path(root).read_text())
    coco = load(root, "val")
    img_ids = {im["id"] for im in coco["images"]}
    assert {d["image_id"] for d in dets} <= img_ids
    for d in dets:
        assert d["category_id"] == 1 and 0 < d["score"] < 1
        x, y, w, h = d["bbox"]
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= W + 1e-6 and y + h <= H + 1e-6
    gts = np.array([a["bbox"] for a in coco["annotations"]], float)
    gt_img = np.array([a["image_id"] for a in coco["annotations"]])
    db = np.array([d["bbox"] for d in dets], float)
    d_img = np.array([d["image_id"] for d in dets])
    iou = box_iou(gts, db) * (gt_img[:, None] == d_img[None])
    assert (iou.max(1) >= 0.5).mean() > 0.9  # jittered, not random
    assert not np.allclose(iou.max(1), 1.0)  # but jittered
    fps = iou.max(0) < 0.1
    assert fps.sum() > 0 and max(d["score"] for d, fp in zip(dets, fps) if fp) < 0.35


def test_files_evaluate_with_xtcocotools(dataset):
    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    root, _ = dataset
    gt = COCO(str(annotation_path(root, "occluded")))
    res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
           for a in gt.loadAnns(gt.getAnnIds()) if a["num_keypoints"] > 0]
    ev = COCOeval(gt, gt.loadRes(res), "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # GT scored against itself: a well-formed file
    val = COCO(str(annotation_path(root, "val")))
    assert len(val.loadRes(str(detections_path(root))).getAnnIds()) > 0


# -------------------------------------------------------------------------------------------- cache

def test_cache_reuse_and_invalidation(tmp_path, caplog):
    root = tmp_path / "synth"
    cfg = SynthConfig(num_images={"train": 6, "val": 4})
    (root / "train").mkdir(parents=True)
    (root / "train" / "notes.txt").write_text("mine")  # foreign files are never touched
    first = generate(root, cfg, progress=False)
    assert not first["cached"] and first["counts"]["train"]["images"] == 6
    assert "occluded" not in first["annotations"] and not (root / "occluded").exists()
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    with caplog.at_level(logging.INFO):
        second = generate(root, cfg, progress=False)
    assert second["cached"] and "reusing" in caplog.text
    assert stamp == {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert ensure_synthetic(root, cfg, progress=False) == root
    assert stamp == {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    # a changed config regenerates, and removes the images it no longer wants
    fewer = SynthConfig(num_images={"train": 3, "val": 4}, seed=1)
    assert not is_cached(root, fewer)
    assert not generate(root, fewer, progress=False)["cached"]
    assert len(list((root / "train").glob("*.jpg"))) == 3
    assert (root / "train" / "notes.txt").read_text() == "mine"
    assert is_cached(root, fewer) and not is_cached(root, cfg)

    # an interrupted run (no meta.json), a corrupt meta.json or a lost image all regenerate
    (root / "meta.json").unlink()
    assert not is_cached(root, fewer)
    ensure_synthetic(root, fewer, progress=False)
    assert is_cached(root, fewer)
    (root / "meta.json").write_text("{not json")
    assert not is_cached(root, fewer)
    ensure_synthetic(root, fewer, progress=False)
    next((root / "val").glob("*.jpg")).unlink()
    assert not is_cached(root, fewer)
    assert not generate(root, fewer, progress=False)["cached"]
    assert len(list((root / "val").glob("*.jpg"))) == 4
    # force always regenerates
    assert not generate(root, fewer, progress=False, force=True)["cached"]
    with pytest.raises(ValueError, match="workers"):
        generate(root, fewer, workers=0)


def test_no_temp_files_left_behind(dataset):
    root, _ = dataset
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------- cli, preview

def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness")
    synth_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_generates_reuses_and_previews(tmp_path, capsys):
    root = tmp_path / "cli"
    png = tmp_path / "preview.png"
    argv = ["synth", "--root", str(root), "--train", "4", "--val", "8", "--occluded", "2", "--seed", "5",
            "--size", "160", "192", "--no-progress", "--preview", str(png)]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert "14 images" in out and "images/s" in out and "occluded" in out
    grid = cv2.imread(str(png))
    assert grid.shape == (2 * 160, 4 * 192, 3)  # 8 val images, 4 per row
    assert json.loads((root / "meta.json").read_text())["config"]["image_size"] == [160, 192]
    assert _cli(argv) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_rejects_bad_values(tmp_path, capsys):
    from harness.cli import main  # the CLI's one error path: exit 2, "error: ..." on stderr

    assert main(["synth", "--root", str(tmp_path / "x"), "--train", "-3"]) == 2
    assert "num_images['train']" in capsys.readouterr().err
    assert main(["synth", "--root", str(tmp_path / "x"), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_preview_errors_name_the_file(tmp_path, dataset):
    root, _ = dataset
    with pytest.raises(FileNotFoundError):
        write_preview(tmp_path / "nowhere", tmp_path / "p.png")
    out = write_preview(root, tmp_path / "p.png", split="occluded", num=3, cols=2)
    assert cv2.imread(str(out)).shape[:2] == (2 * 256, 2 * 256)
