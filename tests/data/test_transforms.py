"""Geometry: box -> centre/scale, affine warps and their inverses, flips, augmentation, reproducibility."""
from __future__ import annotations

import numpy as np
import pytest

from harness.data import COCO_META, AugmentConfig, build_dataset
from harness.data.coco import load_image
from harness.data.transforms import (apply_affine, bbox_xywh_to_cs, compose_affine, fix_aspect_ratio, flip_keypoints,
                                     flip_matrix, get_affine_matrix, get_udp_affine_matrix, half_body_box,
                                     invert_affine, sample_augmentation, warp_image)
from support.paths import SHARED_DATA as DATA

COCO_MINI = DATA / "coco-mini"


def test_bbox_to_center_scale():
    c, s = bbox_xywh_to_cs(np.array([[10, 20, 30, 100], [0, 0, 300, 100]]), aspect_ratio=192 / 256)
    assert np.allclose(c, [[25, 70], [150, 50]])
    # padding 1.25, then widened/heightened to w/h = 0.75
    assert np.allclose(s, [[125 * 0.75, 125], [375, 500]])
    assert np.allclose(fix_aspect_ratio(np.array([3.0, 1.0]), 1.0), [3, 3])


def test_affine_maps_box_onto_input():
    m = get_affine_matrix(np.array([100.0, 200.0]), np.array([150.0, 200.0]), 0.0, (192, 256))
    pts = apply_affine(np.array([[100.0, 200.0], [25.0, 100.0], [175.0, 300.0]]), m)
    assert np.allclose(pts, [[96, 128], [0, 0], [192, 256]])
    u = get_udp_affine_matrix(np.array([100.0, 200.0]), np.array([150.0, 200.0]), 0.0, (192, 256))
    assert np.allclose(apply_affine(np.array([[25.0, 100.0], [175.0, 300.0]]), u), [[0, 0], [191, 255]])
    # rotation by +90 deg: the box's "up" direction (-y) becomes the input's "left"... a point
    # above the centre lands to the side of the input centre, at the same distance.
    r = get_affine_matrix(np.array([0.0, 0.0]), np.array([192.0, 256.0]), 90.0, (192, 256))
    p = apply_affine(np.array([[0.0, -10.0]]), r)[0]
    assert np.allclose(np.abs(p - [96, 128]), [10, 0], atol=1e-9)


@pytest.mark.parametrize("udp", [False, True])
def test_warp_and_back_projection_round_trip(udp):
    rng = np.random.default_rng(0)
    make = get_udp_affine_matrix if udp else get_affine_matrix
    for _ in range(50):
        c, s, r = rng.uniform(0, 640, 2), rng.uniform(20, 800, 2), rng.uniform(-80, 80)
        m = make(c, s, r, (192, 256))
        kps = rng.uniform(-50, 700, (17, 2))
        back = apply_affine(apply_affine(kps, m), invert_affine(m))
        assert np.abs(back - kps).max() < 1e-3
        mf = compose_affine(m, flip_matrix(640))
        assert np.abs(apply_affine(apply_affine(kps, mf), invert_affine(mf)) - kps).max() < 1e-3


def test_flip_twice_is_identity_and_pairs_swap():
    rng = np.random.default_rng(1)
    kps = np.round(rng.uniform(0, 500, (17, 2)) * 4) / 4  # exactly representable: flips are exact
    vis = (rng.uniform(size=17) > 0.3).astype(np.float32)
    f1, v1 = flip_keypoints(kps, vis, 640, COCO_META.flip_indices)
    f2, v2 = flip_keypoints(f1, v1, 640, COCO_META.flip_indices)
    assert np.array_equal(f2, kps) and np.array_equal(v2, vis)
    # left wrist (9) of the flipped set is the mirrored right wrist (10)
    assert f1[9, 0] == 639 - kps[10, 0] and f1[9, 1] == kps[10, 1] and v1[9] == vis[10]
    assert f1[0, 0] == 639 - kps[0, 0]  # the nose has no partner
    fm = flip_matrix(640)
    assert np.allclose(compose_affine(fm, fm), [[1, 0, 0], [0, 1, 0]])


def test_flip_in_warp_equals_warping_the_flipped_image():
    img = load_image(COCO_MINI / "val2017" / "000000397133.jpg")
    m = get_affine_matrix(np.array([300.0, 200.0]), np.array([240.0, 320.0]), 17.0, (192, 256))
    a = warp_image(img[:, ::-1].copy(), m, (192, 256))
    b = warp_image(img, compose_affine(m, flip_matrix(img.shape[1])), (192, 256))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_dataset_flip_mirrors_crop_and_swaps_targets():
    base = dict(half_body_prob=0.0, scale_factor=0.0, rot_prob=0.0)
    plain = build_dataset("coco", COCO_MINI, "train", train=True, augment=AugmentConfig(flip_prob=0.0, **base))
    flip = build_dataset("coco", COCO_MINI, "train", train=True, augment=AugmentConfig(flip_prob=1.0, **base))
    for i in (0, 5, 11):
        a, b = plain[i], flip[i]
        assert b["flipped"] and not a["flipped"]
        # the flipped crop is the mirror image of the plain crop (up to the 1-px flip convention)
        diff = (a["img"].numpy()[:, :, ::-1][:, :, :-1] - b["img"].numpy()[:, :, 1:])
        assert np.abs(diff).mean() < 0.05
        # targets: left/right channels swapped and mirrored
        ha, hb = a["heatmaps"].numpy(), b["heatmaps"].numpy()
        for k, j in enumerate(COCO_META.flip_indices):
            assert a["target_weight"][j] == b["target_weight"][k]
            if a["target_weight"][j] > 0:
                ya, xa = np.unravel_index(ha[j].argmax(), ha[j].shape)
                yb, xb = np.unravel_index(hb[k].argmax(), hb[k].shape)
                assert ya == yb and abs((47 - xa) - xb) <= 1


def test_keypoints_follow_the_image_through_augmentation():
    """The target keypoints land where the warped image puts the annotated pixels."""
    ds = build_dataset("coco", COCO_MINI, "train", train=True, seed=7)
    for i in range(0, len(ds), 9):
        p = ds.crop_params(i)
        inst = ds.instances[i]
        kp_img = inst.keypoints.astype(np.float64)
        # map the original-image keypoints through the full image->input matrix (incl. flip)...
        via_image = apply_affine(kp_img, p["img_matrix"])
        # ...and the (flipped, permuted) target keypoints through the crop matrix: same points
        via_target = apply_affine(p["keypoints"], p["matrix"])
        perm = np.asarray(ds.meta.flip_indices) if p["flipped"] else np.arange(17)
        assert np.abs(via_image[perm] - via_target).max() < 1e-6


def test_augmentation_ranges_and_reproducibility():
    ds = build_dataset("coco", COCO_MINI, "train", train=True, seed=11)
    rots, flips = [], []
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            p = ds.crop_params(i)
            rots.append(p["rot"])
            flips.append(p["flipped"])
    rots, flips = np.array(rots), np.array(flips)
    assert np.abs(rots).max() <= 80 and 0.5 < (rots != 0).mean() < 0.7  # rotation prob 0.6
    assert 0.4 < flips.mean() < 0.6
    ds.set_epoch(2)
    a = ds[3]
    ds2 = build_dataset("coco", COCO_MINI, "train", train=True, seed=11)
    ds2.set_epoch(2)
    b = ds2[3]
    for k in ("img", "heatmaps", "target_weight", "center", "scale"):
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    ds2.set_epoch(3)
    assert not np.array_equal(ds2.crop_params(3)["scale"], ds.crop_params(3)["scale"])


def test_half_body_box():
    rng = np.random.default_rng(0)
    kps = np.array([[x, y] for x, y in zip(range(17), range(0, 170, 10))], dtype=np.float64)
    vis = np.ones(17)
    c, s = half_body_box(kps, vis, COCO_META.upper_body_ids, COCO_META.lower_body_ids, rng, 0.75)
    assert s[0] / s[1] == pytest.approx(0.75)
    vis_none = np.zeros(17)
    vis_none[0] = 1
    assert half_body_box(kps, vis_none, COCO_META.upper_body_ids, COCO_META.lower_body_ids, rng, 0.75) is None
    cfg = AugmentConfig(flip_prob=0, half_body_prob=1.0, scale_factor=0, rot_prob=0)
    c2, s2, rot, flipped, *_ = sample_augmentation(rng, cfg, kps, vis, np.array([8.0, 80.0]), np.array([300.0, 400.0]),
                                                   640, COCO_META.flip_indices, COCO_META.upper_body_ids,
                                                   COCO_META.lower_body_ids, 0.75)
    assert s2[1] < 400 and rot == 0 and not flipped


@pytest.mark.parametrize("kw,match", [({"flip_prob": 1.5}, "flip_prob"), ({"scale_factor": 1.0}, "scale_factor"),
                                      ({"rot_factor": -1}, "rot_factor")])
def test_augment_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kw)


def test_dataset_argument_validation():
    with pytest.raises(ValueError, match="divisible by 4"):
        build_dataset("coco", COCO_MINI, "val", train=False, input_size=(255, 192))


def test_same_batches_with_and_without_workers():
    """Augmentation depends only on (seed, epoch, index): worker processes reproduce it."""
    from torch.utils.data import DataLoader, Subset

    ds = build_dataset("coco", COCO_MINI, "train", train=True, seed=5)
    ds.set_epoch(4)
    sub = Subset(ds, list(range(8)))
    a = [b["heatmaps"] for b in DataLoader(sub, batch_size=4, num_workers=0)]
    b = [b["heatmaps"] for b in DataLoader(sub, batch_size=4, num_workers=2)]
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))
