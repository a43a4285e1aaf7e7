"""The augmentation samplers against their sources.

mmpose 1.x: statistics of mmpose 1.3.2's own ``RandomBBoxTransform`` / ``RandomHalfBody`` (200000 box
draws; 4000 half-body draws on each of the 86 real COCO instances of coco-mini), stored in
``tests/fixtures/mmpose_ref/augment_reference.json`` by ``make_augment_reference.py``; ours must match within
sampling error. mmpose 0.x (and the HRNet authors' code): the formulas, replayed draw by draw.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from harness.data import COCO_META
from harness.data.transforms import (AUGMENT_PRESETS, AugmentConfig, half_body_box, instance_shifts_0x,
                                     sample_augmentation, sample_box_shift_1x, sample_scale_rotation,
                                     select_half_body_1x, truncated_normal)
from support.paths import MMPOSE_REF

REF = json.loads((MMPOSE_REF / "augment_reference.json").read_text())
QS = REF["quantile_levels"]
MM1 = AUGMENT_PRESETS["mmpose1x"]


def _close_quantiles(x, ref, tol):
    got = np.quantile(x, QS)
    assert np.abs(got - np.asarray(ref["quantiles"])).max() < tol, (got, ref["quantiles"])
    assert abs(x.mean() - ref["mean"]) < tol and abs(x.std() - ref["std"]) < tol


def test_preset_parameters_are_mmposes_defaults():
    p, h = REF["bbox_transform"]["params"], REF["half_body"]["params"]
    assert (MM1.shift_factor, MM1.shift_prob, MM1.rot_factor, MM1.rot_prob) == (
        p["shift_factor"], p["shift_prob"], p["rotate_factor"], p["rotate_prob"])
    assert (1 - MM1.scale_factor, 1 + MM1.scale_factor) == tuple(p["scale_factor"])
    assert (MM1.half_body_min_kpts + 1, MM1.half_body_min_upper, MM1.half_body_min_lower, MM1.half_body_padding,
            MM1.half_body_prob, MM1.half_body_upper_prob) == (
        h["min_total_keypoints"], h["min_upper_keypoints"], h["min_lower_keypoints"], h["padding"], h["prob"],
        h["upper_prioritized_prob"])
    assert (list(COCO_META.upper_body_ids), list(COCO_META.lower_body_ids)) == (
        REF["half_body"]["upper_body_ids"], REF["half_body"]["lower_body_ids"])


def test_truncated_normal_gives_mmposes_offset_scale_and_rotation_distributions():
    ref = REF["bbox_transform"]
    t = truncated_normal(np.random.default_rng(0), 200_000)
    assert np.abs(t).max() <= 1.0
    # About 4 standard errors of the quantiles (the fixture has 2e5 draws, 6e4 of them shifted).
    _close_quantiles(t * MM1.shift_factor, ref["offset_x_when_shifted"], 0.003)
    _close_quantiles(t * MM1.shift_factor, ref["offset_y_when_shifted"], 0.003)
    _close_quantiles(1.0 + MM1.scale_factor * t, ref["scale"], 0.006)
    _close_quantiles(MM1.rot_factor * t, ref["rotation_when_rotated"], 0.9)


def test_box_shift_scale_rotation_samplers_match_mmposes_rates_and_moments():
    ref = REF["bbox_transform"]
    rng = np.random.default_rng(1)
    n = 20_000
    shifts = np.array([sample_box_shift_1x(rng, MM1, np.array([1.0, 1.0])) for _ in range(n)])
    sr = np.array([sample_scale_rotation(rng, MM1) for _ in range(n)])
    se = lambda p: 4 * np.sqrt(p * (1 - p) / n)  # noqa: E731
    shifted = np.any(shifts != 0, axis=1)
    assert abs(shifted.mean() - ref["shift_rate"]) < se(0.3)
    assert abs((sr[:, 1] != 0).mean() - ref["rotate_rate"]) < se(0.6)
    assert abs(sr[:, 0].mean() - ref["scale"]["mean"]) < 0.01 and abs(sr[:, 0].std() - ref["scale"]["std"]) < 0.01
    rot = sr[sr[:, 1] != 0, 1]
    assert abs(rot.std() - ref["rotation_when_rotated"]["std"]) < 1.5 and np.abs(rot).max() <= 80
    assert abs(shifts[shifted, 0].std() - ref["offset_x_when_shifted"]["std"]) < 0.004


def test_half_body_choice_rates_on_real_coco_instances_match_mmposes():
    ref = REF["half_body"]
    rng = np.random.default_rng(2)
    n = 1000
    pooled_ours, pooled_ref = np.zeros(3), np.zeros(3)
    for inst in ref["instances"]:
        vis = np.asarray(inst["visible"], dtype=np.float32)
        kps = np.asarray(inst["keypoints"], dtype=np.float64)
        counts = {"none": 0, "upper": 0, "lower": 0}
        for _ in range(n):
            ids = select_half_body_1x(rng, MM1, vis, COCO_META.upper_body_ids, COCO_META.lower_body_ids)
            kind = "none" if ids is None else ("upper" if set(ids) <= set(COCO_META.upper_body_ids) else "lower")
            counts[kind] += 1
            if ids is not None and kind in inst["boxes"]:  # the box of a choice is deterministic: equal it
                box = inst["boxes"][kind]
                pts = kps[ids]
                assert np.allclose(pts.mean(axis=0), box["center"], atol=0.02)
                assert np.allclose((pts.max(axis=0) - pts.min(axis=0)) * MM1.half_body_padding, box["scale"], atol=0.05)
        for k, kind in enumerate(("none", "upper", "lower")):
            p, q = counts[kind] / n, inst["rates"][kind]
            tol = 5 * np.sqrt(max(q * (1 - q), 1e-4) * (1 / n + 1 / ref["draws_per_instance"]))
            assert abs(p - q) < tol, (inst["ann_id"], kind, p, q)
            pooled_ours[k] += p
            pooled_ref[k] += q
    pooled_ours, pooled_ref = pooled_ours / len(ref["instances"]), pooled_ref / len(ref["instances"])
    assert np.abs(pooled_ours - pooled_ref).max() < 0.006, (pooled_ours, pooled_ref)
    assert pooled_ref[0] < 0.95  # the fixture exercises the half-body path


# ---------------------------------------------------------------------------------------- mmpose 0.x
@pytest.mark.parametrize("preset, sf, rf", [("mmpose0x", 0.5, 40.0), ("hrnet", 0.35, 45.0)])
def test_0x_scale_rotation_is_the_clip_normal_formula(preset, sf, rf):
    """TopDownGetRandomScaleRotation / JointsDataset: s = clip(1 + sf N, 1 - sf, 1 + sf), r = clip(rf N, -2rf, 2rf)
    with p 0.6, replayed on the same generator stream."""
    cfg = AUGMENT_PRESETS[preset]
    assert (cfg.convention, cfg.scale_factor, cfg.rot_factor, cfg.rot_prob) == ("mmpose0x", sf, rf, 0.6)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(2000):
        s, r = sample_scale_rotation(a, cfg)
        s_ref = np.clip(b.standard_normal() * sf + 1, 1 - sf, 1 + sf)
        r_ref = np.clip(b.standard_normal() * rf, -2 * rf, 2 * rf) if b.random() < 0.6 else 0.0
        assert (s, r) == (s_ref, r_ref)


def test_0x_half_body_rule_replayed():
    """TopDownHalfBodyTransform: upper if N < 0.5 and > 2 upper visible, elif > 2 lower, else upper; >= 2 needed."""
    rng_kp = np.random.default_rng(4)
    upper, lower = COCO_META.upper_body_ids, COCO_META.lower_body_ids
    for trial in range(300):
        kps = rng_kp.uniform(0, 300, (17, 2))
        vis = (rng_kp.random(17) < rng_kp.uniform(0.1, 1.0)).astype(np.float32)
        a, b = np.random.default_rng(trial), np.random.default_rng(trial)
        got = half_body_box(kps, vis, upper, lower, a, 0.75)
        up = [i for i in upper if vis[i] > 0]
        lo = [i for i in lower if vis[i] > 0]
        sel = up if (b.standard_normal() < 0.5 and len(up) > 2) else (lo if len(lo) > 2 else up)
        if len(sel) < 2:
            assert got is None
            continue
        pts = kps[sel]
        w, h = pts.max(0) - pts.min(0)
        w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
        assert np.allclose(got[0], pts.mean(0)) and np.allclose(got[1], np.array([w, h]) * 1.5)


def test_0x_box_shift_is_fixed_per_instance_and_within_the_formula():
    """_xywh2cs: with p 0.3 the centre moves by 0.4 (U(0,1) - 0.5) [w, h], once per instance (fixed for the run)."""
    cfg = AUGMENT_PRESETS["mmpose0x"]
    wh = np.tile([[100.0, 200.0]], (20_000, 1))
    off = instance_shifts_0x(7, wh, cfg)
    moved = np.any(off != 0, axis=1)
    assert abs(moved.mean() - 0.3) < 4 * np.sqrt(0.21 / len(wh))
    assert np.abs(off[:, 0]).max() <= 20.0 and np.abs(off[:, 1]).max() <= 40.0
    assert abs(np.abs(off[moved, 0]).mean() - 10.0) < 0.3  # U(-0.2, 0.2) * 100 has mean |x| 10
    assert np.array_equal(off[[5, 9]], instance_shifts_0x(7, wh[:2], cfg, indices=[5, 9]))  # a function of (seed, i)
    assert not instance_shifts_0x(7, wh, AUGMENT_PRESETS["hrnet"]).any()  # the HRNet authors: no shift


def test_dataset_applies_the_shift_in_training_only_and_the_same_every_epoch():
    from harness.data.coco import Instance
    from harness.data.dataset import TopDownDataset

    class _Coco:
        meta = COCO_META
        ann_file = None

    kps = np.zeros((17, 2), np.float32)
    insts = [Instance(image_id=i, file=Path("x.jpg"), width=640, height=480, bbox=np.array([100.0, 50, 80, 160]),
                      bbox_score=1.0, keypoints=kps, visible=np.zeros(17, np.float32), ann_id=i, area=1.0,
                      crowd_index=None) for i in range(200)]
    shift_only = dataclasses.replace(AUGMENT_PRESETS["mmpose0x"], flip_prob=0.0, half_body_prob=0.0,
                                     scale_factor=0.0, rot_prob=0.0)
    train = TopDownDataset(_Coco(), insts, train=True, augment=shift_only, seed=3)
    val = TopDownDataset(_Coco(), insts, train=False, augment=shift_only, seed=3)
    c0 = np.array([train.crop_params(i)["center"] for i in range(200)])
    train.set_epoch(5)
    c5 = np.array([train.crop_params(i)["center"] for i in range(200)])
    assert np.array_equal(c0, c5) and 0.15 < np.any(c0 != [140.0, 130.0], axis=1).mean() < 0.45
    assert np.array_equal(np.array([val.crop_params(i)["center"] for i in range(200)]), np.tile([140.0, 130.0], (200, 1)))
    # mmpose 1.x: per sample, relative to the padded box (w, h) * 1.25 before the aspect-ratio fix.
    per_sample = dataclasses.replace(MM1, flip_prob=0.0, half_body_prob=0.0, scale_factor=0.0, rot_prob=0.0)
    ds = TopDownDataset(_Coco(), insts, train=True, augment=per_sample, seed=3)
    off = np.array([ds.crop_params(i)["center"] for i in range(200)]) - [140.0, 130.0]
    assert np.abs(off[:, 0]).max() <= 0.16 * 100 + 1e-9 and np.abs(off[:, 1]).max() <= 0.16 * 200 + 1e-9
    ds.set_epoch(1)
    assert not np.array_equal(off, np.array([ds.crop_params(i)["center"] for i in range(200)]) - [140.0, 130.0])


def test_1x_scale_is_aspect_fixed_after_the_draw():
    cfg = dataclasses.replace(MM1, flip_prob=0.0, half_body_prob=0.0, shift_prob=0.0, rot_prob=0.0)
    rng = np.random.default_rng(0)
    c, s, rot, *_ = sample_augmentation(rng, cfg, np.zeros((17, 2)), np.zeros(17), np.array([0.0, 0.0]),
                                        np.array([100.0, 100.0]), 640, COCO_META.flip_indices,
                                        COCO_META.upper_body_ids, COCO_META.lower_body_ids, 0.75)
    assert s[0] / s[1] == pytest.approx(0.75) and 0.5 * 133.3 <= s[1] <= 1.5 * 133.4 and rot == 0.0


def test_augment_config_names_the_bad_field():
    with pytest.raises(ValueError, match="convention"):
        AugmentConfig(convention="mmpose2x")
    with pytest.raises(ValueError, match="shift_mode"):
        AugmentConfig(shift_mode="sometimes")
