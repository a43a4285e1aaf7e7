"""Compute mmpose 1.3.2 CocoMetric numbers on this folder's raw prediction files -> expected.json.

Run with an interpreter that has mmpose 1.3.2 (a scratch venv; mmpose is not a project
dependency). Each raw prediction becomes one mmpose data sample (``id`` = list index, so
mmpose's sort-by-id keeps the list order) with pred_instances keypoints / keypoint_scores /
bboxes (xyxy) / bbox_scores and gt_instances.bbox_scales whose product is ``area``.
"""
import contextlib
import io
import json
import runpy
from pathlib import Path

import numpy as np
from mmpose.evaluation.metrics import CocoMetric
import mmpose

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2].parent / "shared"
CFG = Path(mmpose.__file__).parent / ".mim" / "configs" / "_base_" / "datasets"
ANN = {"coco-samples": ("coco", "data/coco-samples/test_coco.json"),
       "coco-mini": ("coco", "data/coco-mini/annotations/person_keypoints_val2017.json"),
       "ochuman": ("ochuman", "data/ochuman-samples/test_ochuman.json"),
       "crowdpose": ("crowdpose", "data/crowdpose-samples/test_crowdpose.json")}


def main():
    out = {}
    for f in sorted(HERE.glob("*__*.json")):
        name, ann = ANN[f.name.split("__")[0]]
        info = runpy.run_path(str(CFG / f"{name}.py"))["dataset_info"]
        meta = dict(dataset_name=name, num_keypoints=len(info["keypoint_info"]), sigmas=np.array(info["sigmas"]))
        entry = {"dataset": name, "ann": ann}
        for nms in ("oks_nms", "none"):
            kw = dict(iou_type="keypoints_crowd", use_area=False) if name == "crowdpose" else {}
            m = CocoMetric(ann_file=str(SHARED / ann), score_mode="bbox_keypoint", keypoint_score_thr=0.2,
                           nms_mode=nms, nms_thr=0.9, **kw)
            m.dataset_meta = meta
            samples = []
            for i, p in enumerate(json.loads(f.read_text())):
                x, y, w, h = p["bbox"]
                samples.append(dict(
                    id=i, img_id=p["image_id"], category_id=p.get("category_id", 1),
                    pred_instances=dict(keypoints=np.array([p["keypoints"]], np.float32),
                                        keypoint_scores=np.array([p["keypoint_scores"]], np.float32),
                                        bboxes=np.array([[x, y, x + w, y + h]], np.float32),
                                        bbox_scores=np.array([p["bbox_score"]], np.float32)),
                    gt_instances=dict(bbox_scales=np.array([[p["area"], 1.0]], np.float32))))
            m.process([], samples)
            with contextlib.redirect_stdout(io.StringIO()):
                entry[nms] = {k: float(v) for k, v in m.compute_metrics(m.results).items()}
        out[f.name] = entry
    about = ("Metrics computed by mmpose 1.3.2 CocoMetric(score_mode=bbox_keypoint, keypoint_score_thr=0.2, "
             "nms_mode=oks_nms|none, nms_thr=0.9; CrowdPose: iou_type=keypoints_crowd, use_area=False) on the raw "
             "prediction files in this folder (made from the shared samples: GT, GT + noise with near-duplicates, "
             "detections). ann paths are relative to the shared folder.")
    (HERE / "expected.json").write_text(json.dumps({"_about": about, "expected": out}, indent=1))


if __name__ == "__main__":
    main()
