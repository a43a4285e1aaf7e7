"""mmpose 1.3.2's OKS, OKS-NMS and soft-OKS-NMS on small random images -> nms_reference.json.

Run with an interpreter that has mmpose 1.3.2 (the reference kit; not a project dependency). Each case:
keypoints (n, K, 2) and areas (n,) as little-endian float32 hex (any float32 values, so the
rounding of every step shows), float32 instance scores (coarse, so some tie), the CocoMetric
threshold; stored results: mmpose's ``oks_iou`` of every instance against all (n, n) as float32
hex, and the indices
``oks_nms`` and ``soft_oks_nms`` (CocoMetric's calls: ``nms(instances, thr, sigmas=...)``) keep.
"""
import json
import runpy
from pathlib import Path

import mmpose
import numpy as np
from mmpose.evaluation.functional.nms import oks_iou, oks_nms, soft_oks_nms

HERE = Path(__file__).resolve().parent
CFG = Path(mmpose.__file__).parent / ".mim" / "configs" / "_base_" / "datasets"


def main():
    rng = np.random.default_rng(0)
    cases = []
    for t in range(24):
        dataset = ("coco", "crowdpose")[t % 2]
        sigmas = np.array(runpy.run_path(str(CFG / f"{dataset}.py"))["dataset_info"]["sigmas"])
        k = len(sigmas)
        n = int(rng.integers(1, 30)) if t else 1
        people = rng.uniform(0, 400, (int(rng.integers(1, 4)), k, 2))
        kp = people[rng.integers(0, len(people), n)] + rng.normal(0, rng.uniform(0.5, 20), (n, k, 2))
        kp = kp.astype(np.float32)
        area = rng.uniform(500, 30000, n).astype(np.float32)
        score = (np.round(rng.uniform(0, 1, n) * 64) / 64).astype(np.float32)  # coarse: ties happen
        thr = float(rng.choice([0.3, 0.5, 0.9]))
        db = [dict(keypoints=np.concatenate([kp[i], np.ones((k, 1), np.float32)], -1), score=score[i], area=area[i])
              for i in range(n)]
        flat = np.array([d["keypoints"].flatten() for d in db])
        oks = np.stack([oks_iou(flat[i], flat, area[i], area, sigmas) for i in range(n)]).astype("<f4")
        cases.append(dict(dataset=dataset, thr=thr, keypoints_f32_hex=kp.astype("<f4").tobytes().hex(),
                          areas_f32_hex=area.astype("<f4").tobytes().hex(), scores=score.tolist(),
                          oks_f32_hex=oks.tobytes().hex(),
                          oks_nms=np.asarray(oks_nms(db, thr, sigmas=sigmas)).tolist(),
                          soft_oks_nms=np.asarray(soft_oks_nms(db, thr, sigmas=sigmas)).tolist()))
    about = (f"mmpose {mmpose.__version__} oks_iou / oks_nms / soft_oks_nms (max_dets 20, CocoMetric's call) on random "
             "images; made by make_nms_reference.py")
    (HERE / "nms_reference.json").write_text(json.dumps({"_about": about, "cases": cases}))


if __name__ == "__main__":
    main()
