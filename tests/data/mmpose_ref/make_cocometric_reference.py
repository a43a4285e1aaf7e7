"""Compute mmpose 1.3.2 CocoMetric numbers on this folder's raw prediction files -> expected.json.

Run with an interpreter that has mmpose 1.3.2 (a scratch venv; mmpose is not a project
dependency). Each raw prediction becomes one mmpose data sample (``id`` = list index, so
mmpose's sort-by-id keeps the list order) with pred_instances keypoints / keypoint_scores /
bboxes (xyxy) / bbox_scores and gt_instances.bbox_scales whose product is ``area``.
Every file is evaluated under each setting of ``SETTINGS`` (score_mode, keypoint_score_thr,
nms_mode, nms_thr): the three score modes x the three NMS modes at mmpose's default thresholds,
plus other thresholds.
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


SETTINGS = ([(s, 0.2, n, 0.9) for s in ("bbox_keypoint", "bbox", "keypoint")
             for n in ("oks_nms", "soft_oks_nms", "none")]
            + [("bbox_keypoint", 0.5, "oks_nms", 0.9), ("bbox_keypoint", 0.0, "none", 0.9),
               ("bbox_keypoint", 0.2, "oks_nms", 0.5), ("bbox_keypoint", 0.2, "soft_oks_nms", 0.3),
               ("bbox", 0.2, "soft_oks_nms", 0.6)])


def setting_key(score_mode, keypoint_score_thr, nms_mode, nms_thr) -> str:
    return f"{score_mode}/{keypoint_score_thr:g}/{nms_mode}/{nms_thr:g}"


def main():
    out = {}
    for f in sorted(HERE.glob("*__*.json")):
        name, ann = ANN[f.name.split("__")[0]]
        info = runpy.run_path(str(CFG / f"{name}.py"))["dataset_info"]
        meta = dict(dataset_name=name, num_keypoints=len(info["keypoint_info"]), sigmas=np.array(info["sigmas"]))
        entry = {"dataset": name, "ann": ann, "metrics": {}}
        for score_mode, kthr, nms, nms_thr in SETTINGS:
            kw = dict(iou_type="keypoints_crowd", use_area=False) if name == "crowdpose" else {}
            m = CocoMetric(ann_file=str(SHARED / ann), score_mode=score_mode, keypoint_score_thr=kthr,
                           nms_mode=nms, nms_thr=nms_thr, **kw)
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
                metrics = m.compute_metrics(m.results)
            entry["metrics"][setting_key(score_mode, kthr, nms, nms_thr)] = {k: float(v) for k, v in metrics.items()}
        out[f.name] = entry
    about = ("Metrics computed by mmpose 1.3.2 CocoMetric(score_mode, keypoint_score_thr, nms_mode, nms_thr; "
             "CrowdPose: iou_type=keypoints_crowd, use_area=False) on the raw prediction files in this folder "
             "(made from the shared samples: GT, GT + noise with near-duplicates, detections), one entry per "
             "setting 'score_mode/keypoint_score_thr/nms_mode/nms_thr'. ann paths are relative to the shared "
             "folder. Made by make_cocometric_reference.py.")
    payload = {"_about": about, "settings": [list(x) for x in SETTINGS], "expected": out}
    (HERE / "expected.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
