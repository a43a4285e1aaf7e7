"""End-to-end inference: predict() over TopDownDatasets, back-projection, flip test, results file."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import harness.data as hd
from harness.data.codecs import flip_heatmaps
from harness.data.transforms import apply_affine
from harness.eval import METRIC_NAMES, evaluate, predict
from support.paths import SHARED_DATA as DATA

COCO_SAMPLES = DATA / "coco-samples"
COCO_MINI = DATA / "coco-mini"


class OracleModel(nn.Module):
    """Returns the GT heatmaps of each crop in dataset order (the loader is sequential); on the
    flip-test call it returns their mirror image with channels swapped."""

    def __init__(self, heatmaps: torch.Tensor, flip_indices, flip_test: bool):
        super().__init__()
        self.h, self.flip_indices, self.flip_test = heatmaps, flip_indices, flip_test
        self.pos, self.calls = 0, 0
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n = x.shape[0]
        out = self.h[self.pos:self.pos + n]
        self.calls += 1
        if self.flip_test and self.calls % 2 == 0:
            self.pos += n
            return flip_heatmaps(out, self.flip_indices, shift=False)
        if not self.flip_test:
            self.pos += n
        return out


def gt_heatmaps(ds) -> tuple[torch.Tensor, np.ndarray]:
    """(N, K, h, w) GT heatmaps of every crop and (N, K) weights (0: unlabelled or outside the crop)."""
    maps, weights = [], []
    for i, inst in enumerate(ds.instances):
        p = ds.crop_params(i)
        kp_in = apply_affine(inst.keypoints, p["matrix"])
        hm, w = ds.codec.encode(kp_in[None], inst.visible[None])
        maps.append(hm)
        h, wd = ds.input_size
        # 3 heatmap pixels from the border: the DARK/UDP Taylor step needs its neighbourhood
        m = 12
        inside = (kp_in[:, 0] >= m) & (kp_in[:, 0] < wd - m) & (kp_in[:, 1] >= m) & (kp_in[:, 1] < h - m)
        weights.append(w[0] * inside)
    return torch.from_numpy(np.stack(maps)), np.stack(weights)


@pytest.mark.parametrize("flip_test,codec_kw,min_ap,tol", [
    (False, {}, 0.9, 0.02), (True, {}, 0.9, 0.02),  # MSRA: half a heatmap px = 1/96 of the crop side
    (False, {"udp": True}, 0.97, 0.002), (False, {"dark": True}, 0.97, 0.005),  # sub-pixel
])
def test_oracle_heatmaps_back_project_to_gt(flip_test, codec_kw, min_ap, tol):
    ann = COCO_MINI / "annotations" / "person_keypoints_val2017.json"
    codec = hd.HeatmapCodec(**codec_kw)
    ds = hd.build_dataset("coco", COCO_MINI, "val", train=False, codec=codec, use_udp=codec.udp)
    maps, weights = gt_heatmaps(ds)
    model = OracleModel(maps, ds.meta.flip_indices, flip_test)
    preds = predict(model, ds, batch_size=16, flip_test=flip_test, progress=False)
    assert len(preds) == len(ds) == 68
    # labelled keypoints come back to their annotated image position
    err = []
    for i, (p, inst) in enumerate(zip(preds, ds.instances)):
        vis = weights[i] > 0
        err.append(np.abs(np.asarray(p["keypoints"])[vis] - inst.keypoints[vis]).max(axis=1)
                   / (np.prod(ds.scales[i]) ** 0.5))
    rel = np.concatenate(err)
    assert rel.max() < tol
    m = evaluate(preds, ann, ds.meta)
    assert m["AP"] >= min_ap, m


def test_predict_rejects_training_dataset_and_bad_model():
    ds = hd.build_dataset("coco", COCO_MINI, "val", train=True)
    with pytest.raises(ValueError, match="training mode"):
        predict(nn.Identity(), ds, progress=False)
    ds = hd.build_dataset("coco", COCO_MINI, "val", train=False)
    with pytest.raises(ValueError, match=r"model output must be heatmaps \(N, 17"):
        predict(nn.Conv2d(3, 5, 1), ds, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"codec expects \(64, 48\)"):
        predict(nn.Conv2d(3, 17, 1, stride=2), ds, batch_size=4, progress=False)


def test_end_to_end_pose_model_with_detection_file(tmp_path):
    """A real pose model over coco-samples with its detection file -> valid results + metrics."""
    from harness import create_pose_model

    torch.manual_seed(0)
    model = create_pose_model("hrnet-demo")
    ds = hd.build_dataset("coco", COCO_SAMPLES, "val", train=False, ann_file=COCO_SAMPLES / "test_coco.json",
                          img_dir=COCO_SAMPLES, det_file=COCO_SAMPLES / "test_coco_det_AP_H_56.json",
                          det_score_thr=0.999)  # 7 detections over the 4 images keep the CPU test short
    assert len(ds) == 7 and len({i.image_id for i in ds.instances}) == 4
    preds = predict(model, ds, batch_size=4, flip_test=True, progress=False)
    assert len(preds) == 7
    for i, (p, inst) in enumerate(zip(preds, ds.instances)):
        assert set(p) == {"image_id", "category_id", "bbox", "bbox_score", "area", "keypoints", "keypoint_scores"}
        kp = np.asarray(p["keypoints"])
        assert kp.shape == (17, 2) and np.isfinite(kp).all() and len(p["keypoint_scores"]) == 17
        assert p["image_id"] == inst.image_id and p["bbox_score"] == pytest.approx(inst.bbox_score)
        # predictions lie inside the crop window (centre +- scale/2)
        c, s = ds.centers[i], ds.scales[i]
        assert (np.abs(kp - c) <= s / 2 + 1e-3).all()
        assert p["area"] == pytest.approx(float(np.prod(s)))
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(preds))
    m = evaluate(preds, COCO_SAMPLES / "test_coco.json", ds.meta, outfile_prefix=tmp_path / "res")
    assert list(m) == list(METRIC_NAMES)
    assert all((0.0 <= v <= 1.0) or v == -1 for v in m.values())
    results = json.loads((tmp_path / "res.keypoints.json").read_text())
    assert 1 <= len(results) <= 7
    assert all(len(r["keypoints"]) == 51 and math.isfinite(r["score"]) for r in results)
    # the stable command gives the same numbers from the written RAW file
    from harness.commands import evaluate_predictions

    parser = argparse.ArgumentParser()
    evaluate_predictions.add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate-predictions", "--ann", str(COCO_SAMPLES / "test_coco.json"), "--preds",
                              str(raw), "--json", str(tmp_path / "m.json")])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "m.json").read_text()) == pytest.approx(m)
