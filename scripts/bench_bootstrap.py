"""Time the paired bootstrap on a synthetic COCO-val-size set: 5,000 images, ~11,000 people, two models with
100,000 raw predictions each (20 per image: jittered copies of the people plus clutter).

    python scripts/bench_bootstrap.py [--images 5000] [--preds-per-image 20] [--resamples 1000]

Prints the time of the one COCOeval run per model (rescoring, OKS-NMS, per-image matching) and of the
resamples (both models on the same 1,000 resamples), and the intervals.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def make_set(n_images: int, per_image: int, seed: int, out: Path):
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--preds-per-image", type=int, default=20)
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    from harness.data import COCO_META
    from harness.eval.bootstrap import MatchTable, paired_bootstrap
    from harness.eval.coco_eval import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        ann, a, b, n_people = make_set(args.images, args.preds_per_image, 0, Path(tmp))
        print(f"{args.images} images, {n_people} people, {len(a)} + {len(b)} raw predictions")
        tables = {}
        for name, preds in (("A", a), ("B", b)):
            t0 = time.perf_counter()
            evaluate(preds, ann, COCO_META, on_eval=lambda ev, n=name: tables.__setitem__(n, MatchTable.from_cocoeval(ev)))
            print(f"model {name}: COCOeval once (rescoring, OKS-NMS, matching) {time.perf_counter() - t0:.1f} s, "
                  f"{tables[name].tp.shape[1]} detections kept")
        t0 = time.perf_counter()
        res = paired_bootstrap(tables, resamples=args.resamples, seed=0)
        dt = time.perf_counter() - t0
    for m in res.models.values():
        print(f"AP {m.name}: {m.value:.4f} [{m.lo:.4f}, {m.hi:.4f}]")
    d = res.diffs[0]
    print(f"A - B: {d.diff:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}], sign flips in {d.sign_flip:.1%} of resamples")
    print(f"{args.resamples} paired resamples of 2 models: {dt:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
