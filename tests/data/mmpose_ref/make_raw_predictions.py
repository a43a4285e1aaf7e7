"""Make the raw prediction files of this folder from the shared samples (run with the project venv).

Variants per sample set: ``gt`` (GT keypoints, scores = visibility), ``noise<s>`` (three noisy
near-duplicates per person, the third with every keypoint score < 0.2, plus one exact duplicate),
``det`` (one prediction per detection: the best-overlapping person's keypoints + noise).
Then run ``make_cocometric_reference.py`` under an interpreter with mmpose 1.3.2.
"""
import json
from pathlib import Path

import numpy as np

import harness.data as d
from harness.data.transforms import bbox_xywh_to_cs

HERE = Path(__file__).resolve().parent
S = HERE.parents[2].parent / "shared" / "data"
SETS = {"coco-samples": ("coco", S / "coco-samples/test_coco.json", S / "coco-samples/test_coco_det_AP_H_56.json"),
        "coco-mini": ("coco", S / "coco-mini/annotations/person_keypoints_val2017.json", None),
        "ochuman": ("ochuman", S / "ochuman-samples/test_ochuman.json", None),
        "crowdpose": ("crowdpose", S / "crowdpose-samples/test_crowdpose.json",
                      S / "crowdpose-samples/test_crowdpose_det_AP_40.json")}


def iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    i = max(0, x2 - x1) * max(0, y2 - y1)
    return i / (a[2] * a[3] + b[2] * b[3] - i)


def main():
    rng = np.random.default_rng(0)
    for key, (name, ann, det) in SETS.items():
        coco = d.CocoKeypoints(ann, ann.parent, d.get_meta(name))
        gts = coco.gt_instances()

        def mk(inst, kp, ks, bs, bbox):
            _, s = bbox_xywh_to_cs(np.asarray(bbox)[None], 192 / 256)
            return dict(image_id=inst.image_id, category_id=1, bbox=list(map(float, bbox)), bbox_score=float(bs),
                        area=float(np.prod(s)), keypoints=kp.tolist(), keypoint_scores=list(map(float, ks)))

        variants = {"gt": [mk(g, g.keypoints, g.visible, 1.0, g.bbox) for g in gts]}
        for sig in (0.02, 0.08):
            p = []
            for g in gts:
                sc = np.sqrt(g.bbox[2] * g.bbox[3])
                for rep in range(3):
                    kp = g.keypoints + rng.normal(0, sig * sc * (1 + rep), g.keypoints.shape)
                    ks = rng.uniform(0, 1, len(kp))
                    if rep == 2:
                        ks = ks * 0.2
                    p.append(mk(g, kp, ks, rng.uniform(0.5, 1), g.bbox))
            p.append(dict(p[0]))
            variants[f"noise{sig}"] = p
        if det:
            p = []
            for dd in coco.det_instances(det):
                same = [g for g in gts if g.image_id == dd.image_id]
                if same:
                    g = max(same, key=lambda g: iou(g.bbox, dd.bbox))
                    kp = g.keypoints + rng.normal(0, 3, g.keypoints.shape)
                else:
                    kp = rng.uniform(0, 300, (coco.meta.num_keypoints, 2))
                p.append(mk(dd, kp, rng.uniform(0, 1, len(kp)), dd.bbox_score, dd.bbox))
            variants["det"] = p
        for v, p in variants.items():
            (HERE / f"{key}__{v}.json").write_text(json.dumps(p))


if __name__ == "__main__":
    main()
