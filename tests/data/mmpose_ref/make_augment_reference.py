"""mmpose 1.3.2's own RandomBBoxTransform / RandomHalfBody, sampled many times -> augment_reference.json.

Run by hand with an interpreter that has mmpose 1.3.2 (the reference kit), from the repository root:

    /tmp/refkit-venv/bin/python tests/data/mmpose_ref/make_augment_reference.py

Stores summary statistics only (moments, quantiles, choice rates), which tests/test_augment_reference.py
compares with harness's mmpose1x samplers within sampling tolerances:

* ``bbox_transform``: 200000 draws of ``RandomBBoxTransform()._get_transform_params`` (defaults, as in the
  model-zoo configs): offset (fraction of the box scale) per axis, scale multiplier, rotation (degrees):
  mean, std, quantiles, and the rates of a non-zero shift / rotation.
* ``half_body``: the real person instances of ``../shared/data/coco-mini`` train (``num_keypoints > 0``,
  not crowd), visibility ``min(1, v)`` as mmpose's CocoDataset parses it; per instance 4000 draws of
  ``RandomHalfBody()._random_select_half_body``: rates of none / upper body / lower body, plus the
  half-body box (centre, scale before the aspect fix) of each choice on the instance's keypoints.
"""
import json
from pathlib import Path

import numpy as np
from mmpose.datasets.datasets.utils import parse_pose_metainfo
from mmpose.datasets.transforms.common_transforms import RandomBBoxTransform, RandomHalfBody

REPO = Path(__file__).resolve().parents[3]
ANN = REPO.parent / "shared" / "data" / "coco-mini" / "annotations" / "person_keypoints_train2017.json"
OUT = Path(__file__).resolve().parent / "augment_reference.json"
_META = parse_pose_metainfo(dict(from_file="configs/_base_/datasets/coco.py"))
UPPER, LOWER = [int(i) for i in _META["upper_body_ids"]], [int(i) for i in _META["lower_body_ids"]]
QS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]


def summary(x):
    x = np.asarray(x, dtype=np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "quantiles": [float(v) for v in np.quantile(x, QS)]}


def main():
    np.random.seed(0)
    t = RandomBBoxTransform()
    n = 200_000
    offset, scale, rot = t._get_transform_params.__wrapped__(t, n) if hasattr(t._get_transform_params, "__wrapped__") \
        else t._get_transform_params(n)
    shifted = np.any(offset != 0, axis=1)
    bbox = {
        "draws": n, "params": {"shift_factor": t.shift_factor, "shift_prob": t.shift_prob,
                               "scale_factor": list(t.scale_factor), "rotate_factor": t.rotate_factor,
                               "rotate_prob": t.rotate_prob},
        "shift_rate": float(shifted.mean()), "rotate_rate": float((rot != 0).mean()),
        "offset_x_when_shifted": summary(offset[shifted, 0]), "offset_y_when_shifted": summary(offset[shifted, 1]),
        "scale": summary(scale[:, 0]), "rotation_when_rotated": summary(rot[rot != 0]),
    }
    hb = RandomHalfBody()
    data = json.loads(ANN.read_text())
    anns = [a for a in data["annotations"] if a["num_keypoints"] > 0 and not a.get("iscrowd", 0)]
    draws = 4000
    instances = []
    for a in anns:
        kp = np.asarray(a["keypoints"], dtype=np.float32).reshape(-1, 3)
        vis = np.minimum(1, kp[:, 2])
        ids = hb._random_select_half_body.__wrapped__(hb, np.tile(vis, (draws, 1)), UPPER, LOWER) \
            if hasattr(hb._random_select_half_body, "__wrapped__") else \
            hb._random_select_half_body(np.tile(vis, (draws, 1)), UPPER, LOWER)
        kinds = ["none" if i is None else ("upper" if set(i) <= set(UPPER) else "lower") for i in ids]
        boxes = {}
        for i, k in zip(ids, kinds):
            if i is not None and k not in boxes:
                c, s = hb._get_half_body_bbox(kp[:, :2], i)
                boxes[k] = {"center": [float(v) for v in c], "scale": [float(v) for v in s]}
        instances.append({"ann_id": a["id"], "visible": [int(v) for v in vis], "keypoints": kp[:, :2].round(2).tolist(),
                          "rates": {k: kinds.count(k) / draws for k in ("none", "upper", "lower")}, "boxes": boxes})
    out = {"mmpose": "1.3.2", "generated_by": "tests/data/mmpose_ref/make_augment_reference.py",
           "quantile_levels": QS, "bbox_transform": bbox,
           "half_body": {"draws_per_instance": draws, "params": {
               "min_total_keypoints": hb.min_total_keypoints, "min_upper_keypoints": hb.min_upper_keypoints,
               "min_lower_keypoints": hb.min_lower_keypoints, "padding": hb.padding, "prob": hb.prob,
               "upper_prioritized_prob": hb.upper_prioritized_prob}, "upper_body_ids": UPPER,
               "lower_body_ids": LOWER, "instances": instances}}
    OUT.write_text(json.dumps(out) + "\n")
    print(f"{OUT}: {len(instances)} instances, shift rate {bbox['shift_rate']:.4f}, rotate rate {bbox['rotate_rate']:.4f}")


if __name__ == "__main__":
    main()
