"""Heatmap codecs: MSRA / DARK / UDP encode-decode, weights, flip-back; checked against values
produced by mmpose 1.3.2's codecs on the same inputs (tests/fixtures/mmpose_ref/codec_reference.npz)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.data import COCO_META
from harness.data.codecs import HeatmapCodec, flip_heatmaps, get_heatmap_maximum
from harness.data.transforms import get_affine_matrix, get_udp_affine_matrix
from support.paths import MMPOSE_REF

REF = MMPOSE_REF / "codec_reference.npz"


def test_msra_target_values():
    codec = HeatmapCodec()  # 256x192 -> 64x48, sigma 2
    hm, w = codec.encode(np.array([[[40.0, 80.0], [1000.0, 10.0], [8.0, 8.0]]]), np.array([[1, 1, 0]]))
    assert hm.shape == (3, 64, 48) and hm.dtype == np.float32
    assert hm[0, 20, 10] == 1.0  # 40/4, 80/4
    assert hm[0, 20, 11] == pytest.approx(math.exp(-1 / 8))
    assert hm[0, 20, 16] == pytest.approx(math.exp(-36 / 8)) and hm[0, 20, 17] == 0  # 3-sigma window
    assert w.tolist() == [[1, 0, 0]]  # out of the map / invisible -> weight 0
    assert hm[1].max() == 0 and hm[2].max() == 0


@pytest.mark.parametrize("kw,tol", [({}, 2.0 + 1e-5), ({"dark": True}, 0.01), ({"udp": True}, 0.01)])
def test_encode_decode_round_trip(kw, tol):
    codec = HeatmapCodec(**kw)
    rng = np.random.default_rng(0)
    # away from the borders, where the zero-padded DARK blur is biased
    kps = np.stack([rng.uniform(32, 160, (20, 17)), rng.uniform(32, 224, (20, 17))], -1).astype(np.float32)
    hms = np.stack([codec.encode(k[None], np.ones((1, 17)))[0] for k in kps])
    dec, scores = codec.decode(hms)
    assert dec.shape == (20, 17, 2) and scores.shape == (20, 17)
    # MSRA: the Gaussian sits on the nearest heatmap pixel (symmetric, so no quarter offset) ->
    # within half a heatmap pixel = 2 input pixels; DARK / UDP recover sub-pixel positions
    assert np.abs(dec - kps).max() <= tol
    assert scores.min() > 0.7


def test_quarter_offset_direction():
    codec = HeatmapCodec()
    hm, _ = codec.encode(np.array([[[40.0, 80.0]]]), np.ones((1, 1)))
    hm = hm.copy()
    hm[0, 20, 11] += 0.01  # right neighbour higher -> +0.25 heatmap px in x
    kp, _ = codec.decode(hm[None])
    assert np.allclose(kp[0, 0], [(10 + 0.25) * 4, 80.0])


def test_nonpositive_heatmap_decodes_to_minus_one():
    locs, vals = get_heatmap_maximum(np.zeros((1, 2, 8, 6), np.float32))
    assert (locs == -1).all() and (vals == 0).all()


def test_matches_mmpose_codecs():
    ref = np.load(REF)
    rng = np.random.default_rng(1)  # the same stream mmpose's reference was made from
    kps = rng.uniform(-20, 210, (50, 1, 17, 2)).astype(np.float32)
    kps[:5, 0, :, 0] *= 1.2
    vis = (rng.uniform(0, 1, (50, 1, 17)) > 0.2).astype(np.float32)
    codecs = {"msra": HeatmapCodec(), "dark": HeatmapCodec(dark=True), "udp": HeatmapCodec(udp=True),
              "msra3": HeatmapCodec.for_input((384, 288))}
    for name, codec in codecs.items():
        k = kps * (1.5 if name == "msra3" else 1)
        enc = [codec.encode(kk, v) for kk, v in zip(k, vis)]
        hm = np.stack([e[0] for e in enc])
        w = np.stack([e[1][0] for e in enc])
        assert np.array_equal(w, ref[f"{name}_w"]), name
        assert np.allclose(hm.sum(axis=(2, 3)), ref[f"{name}_hmsum"], atol=1e-4), name
        assert np.array_equal(hm.reshape(50, 17, -1).argmax(-1), ref[f"{name}_hmargmax"]), name
        noisy = hm + rng.uniform(0, 0.05, hm.shape).astype(np.float32)
        dec, sc = codec.decode(noisy)
        assert np.abs(dec - ref[f"{name}_deckp"]).max() < 1e-3, name
        assert np.abs(sc - ref[f"{name}_decsc"]).max() < 1e-6, name
    for c, s, r, m, u in zip(ref["warp_c"], ref["warp_s"], ref["warp_r"], ref["warp_m"], ref["warp_udp"]):
        # mmpose builds the matrix in float32; ours is float64
        assert np.allclose(get_affine_matrix(c, s, r, (192, 256)), m, atol=2e-3, rtol=1e-5)
        assert np.allclose(get_udp_affine_matrix(c, s, r, (192, 256)), u, atol=2e-3, rtol=1e-5)


def test_flip_heatmaps_numpy_torch_and_shift():
    rng = np.random.default_rng(2)
    h = rng.uniform(size=(2, 17, 64, 48)).astype(np.float32)
    fn = flip_heatmaps(h, COCO_META.flip_indices)
    ft = flip_heatmaps(torch.from_numpy(h), COCO_META.flip_indices).numpy()
    assert np.array_equal(fn, ft)
    # channel 1 (left eye) of the flipped-back map is channel 2 mirrored, shifted right by one
    assert np.array_equal(fn[:, 1, :, 1:], h[:, 2, :, ::-1][:, :, :-1])
    unshifted = flip_heatmaps(h, COCO_META.flip_indices, shift=False)
    assert np.array_equal(flip_heatmaps(unshifted, COCO_META.flip_indices, shift=False), h)


@pytest.mark.parametrize("kw,match", [({"sigma": 0}, "sigma"), ({"heatmap_size": (1, 64)}, "heatmap_size"),
                                      ({"udp": True, "dark": True}, "one of udp / dark"),
                                      ({"blur_kernel_size": 10}, "odd")])
def test_codec_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        HeatmapCodec(**kw)
