"""Scaled JPEG decoding (``harness.data.decode``): the decode-factor rule, the reduced-image geometry,
crops against the full decode, and the fall-backs (PNG, EXIF-rotated JPEGs) and errors."""
from __future__ import annotations

import math
import struct

import cv2
import numpy as np
import pytest
import torch

from harness.config import DataCfg
from harness.data import ImageError, build_dataset, load_image
from harness.data.decode import (DECODE_MODES, _REDUCED_FLAGS, _RestartIndex, decode_factor, exif_orientation,
                                 load_image_for_crop, reduced_matrix)
from harness.data.transforms import compose_affine, get_affine_matrix, get_udp_affine_matrix, warp_image
from support.coco_mini import COCO_MINI
from support.paths import FIXTURES as _FIXTURES

IMG = COCO_MINI / "val2017" / "000000397133.jpg"  # 640x427


def _scale(s: float, rot: float = 0.0) -> np.ndarray:
    return get_affine_matrix(np.array([300.0, 200.0]), np.array([192.0 / s, 256.0 / s]), rot, (192, 256))


@pytest.mark.parametrize("s, rot, expected", [
    (1.0, 0.0, 1), (0.51, 0.0, 1), (0.5, 0.0, 2), (0.3, 37.0, 2), (0.25, 0.0, 4), (0.2, -80.0, 4),
    (0.125, 0.0, 8), (0.05, 12.0, 8), (2.0, 0.0, 1),
])
def test_decode_factor_is_the_largest_k_with_one_decoded_pixel_per_output_pixel(s, rot, expected):
    assert decode_factor(_scale(s, rot)) == expected


def test_decode_factor_uses_the_densest_direction_and_the_cap():
    # UDP scales x and y separately: the larger one decides
    m = get_udp_affine_matrix(np.array([300.0, 200.0]), np.array([191.0 / 0.5, 255.0 / 0.6]), 30.0, (192, 256))
    assert decode_factor(m) == 1
    m = get_udp_affine_matrix(np.array([300.0, 200.0]), np.array([191.0 / 0.45, 255.0 / 0.5]), 30.0, (192, 256))
    assert decode_factor(m) == 2
    flipped = compose_affine(_scale(0.2), np.array([[-1.0, 0.0, 639.0], [0.0, 1.0, 0.0]]))
    assert decode_factor(flipped) == 4  # a mirror does not change the scale
    assert decode_factor(_scale(0.1), max_factor=2) == 2 and decode_factor(_scale(0.1), max_factor=1) == 1
    shear = np.array([[0.3, 0.3, 0.0], [0.0, 0.3, 0.0]])  # singular values 0.485, 0.185
    assert decode_factor(shear) == 2 and decode_factor(shear * 1.05) == 1


def test_reduced_matrix_maps_decoded_pixel_centres():
    m = _scale(0.2, 15.0)
    for k in (1, 2, 4, 8):
        mk = reduced_matrix(m, k)
        j = np.array([3.0, 7.0])  # reduced pixel (3, 7) is the centre of original pixels [3k, 3k+k) x [7k, 7k+k)
        centre = j * k + (k - 1) / 2
        assert np.allclose(mk[:, :2] @ j + mk[:, 2], m[:, :2] @ centre + m[:, 2])


def test_reduced_grid_offset_matches_libjpeg():
    """Crops from the 1/k decode line up with full-decode crops best at the (k-1)/2 offset."""
    full = load_image(IMG)
    m = _scale(0.24, 10.0)  # k = 4 ... and 2
    for k in (2, 4):
        img = cv2.imdecode(np.fromfile(IMG, np.uint8), _REDUCED_FLAGS[k])
        ref = warp_image(full, m, (192, 256)).astype(float)
        err = {}
        for off in (0.0, (k - 1) / 2, k / 2):
            up = np.array([[k, 0.0, off], [0.0, k, off]])
            err[off] = np.abs(warp_image(img, compose_affine(m, up), (192, 256)) - ref).mean()
        assert min(err, key=err.get) == (k - 1) / 2, err


def test_scaled_dataset_crops_match_full_decode_within_tolerance():
    """Every crop that decodes smaller, over three epochs of training augmentation and the eval crops:
    the same geometry (targets identical), pixels within the crop tests' tolerance on average."""
    means = []
    for train, epochs in ((True, 3), (False, 1)):
        full = build_dataset("coco", COCO_MINI, "val", train=train, seed=0)
        scaled = build_dataset("coco", COCO_MINI, "val", train=train, seed=0, decode="scaled")
        for epoch in range(epochs):
            full.set_epoch(epoch)
            scaled.set_epoch(epoch)
            for i in range(len(full)):
                if decode_factor(full.crop_params(i)["img_matrix"]) == 1:
                    continue
                a, b = full[i], scaled[i]
                for key in ("center", "scale", "target_weight") + (("heatmaps",) if train else ()):
                    assert np.array_equal(a[key].numpy(), b[key].numpy()), key
                d = np.abs(a["img"].numpy() - b["img"].numpy())
                means.append(float(d.mean()))
    # Measured on coco-mini val: 41 reduced crops, median 0.039, max 0.085 (normalised units; 0.05 is
    # about 3 grey levels). The aliasing the full-size bilinear warp keeps and the DCT-domain
    # reduction removes is the difference; it is concentrated at edges.
    assert len(means) >= 20
    assert np.median(means) < 0.05 and max(means) < 0.1


def test_png_and_exif_rotated_jpegs_decode_full(tmp_path):
    full = load_image(IMG)
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), full)
    img, m, k = load_image_for_crop(png, _scale(0.2), (192, 256), expect_hw=full.shape[:2])
    assert k == 1 and np.array_equal(img, full) and np.allclose(m, _scale(0.2))
    # the same JPEG with an EXIF orientation tag (6: rotate 90 degrees) spliced in after SOI
    raw = IMG.read_bytes()
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) \
        + struct.pack("<I", 0)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\0\0" + tiff
    rotated = tmp_path / "r.jpg"
    rotated.write_bytes(raw[:2] + app1 + raw[2:])
    assert exif_orientation(np.fromfile(rotated, np.uint8)) == 6
    assert exif_orientation(np.fromfile(IMG, np.uint8)) == 1
    img, _, k = load_image_for_crop(rotated, _scale(0.2), (192, 256))
    assert k == 1 and np.array_equal(img, load_image(rotated))
    _, _, k = load_image_for_crop(IMG, _scale(0.2), (192, 256), expect_hw=full.shape[:2])
    assert k == 4


def test_errors_name_the_file(tmp_path):
    m = _scale(0.2)
    with pytest.raises(ImageError, match=r"missing\.jpg: file not found"):
        load_image_for_crop(tmp_path / "missing.jpg", m, (192, 256))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8" + b"garbage" * 50 + b"\xff\xd9")
    with pytest.raises(ImageError, match=r"bad\.jpg: cannot decode"):
        load_image_for_crop(bad, m, (192, 256))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(IMG.read_bytes()[:5000])
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated JPEG"):
        load_image_for_crop(cut, m, (192, 256))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg: empty file"):
        load_image_for_crop(empty, m, (192, 256))
    with pytest.raises(ImageError, match=r"000000397133\.jpg: size about 640x428 disagrees with the annotation "
                                         r"file \(600x427\)"):
        load_image_for_crop(IMG, m, (192, 256), expect_hw=(427, 600))
    with pytest.raises(ImageError, match=r"size 640x427 disagrees"):
        load_image_for_crop(IMG, _scale(1.0), (192, 256), expect_hw=(427, 600))


def test_decode_modes_in_config_and_dataset():
    assert DECODE_MODES == ("full", "roi", "scaled")
    for mode in DECODE_MODES:
        assert DataCfg(dataset="coco", decode=mode).decode == mode
    assert DataCfg(dataset="coco").decode == "full"
    with pytest.raises(ValueError, match="data.decode"):
        DataCfg(dataset="coco", decode="half")
    with pytest.raises(ValueError, match="decode: 'half'"):
        build_dataset("coco", COCO_MINI, "val", train=False, decode="half")
    assert math.isclose(decode_factor(np.eye(2, 3)), 1)


# ------------------------------------------------------------------------------------ region decoding
# Fixtures: lossless crops of coco-mini 000000397133.jpg (4:4:4) and OCHuman 000817.jpg (4:2:0) with
# restart markers, made with libjpeg-turbo's jpegtran: `-crop 320x256+160+96 -restart 4B`
# (rst444_blocks), `-crop 333x261+160+96 -restart 1` (rst444_rows: one interval per MCU row, partial
# last row and column), `-crop 344x283+96+160 -restart 2B` (rst420_blocks).
FIXTURES = _FIXTURES / "jpeg"
RST = ["rst444_blocks.jpg", "rst444_rows.jpg", "rst420_blocks.jpg"]


def _random_crops(rng, w, h, n, out=(48, 64)):
    for _ in range(n):
        c = rng.uniform([0, 0], [w, h])
        s = rng.uniform(20, 400)
        yield get_affine_matrix(c, np.array([s * 0.75, s]), rng.uniform(-80, 80), out)


def test_restart_index_only_for_files_it_applies_to(tmp_path):
    assert _RestartIndex.parse(np.fromfile(IMG, np.uint8)) is None  # no restart markers
    idx = {name: _RestartIndex.parse(np.fromfile(FIXTURES / name, np.uint8)) for name in RST}
    # (interval width in pixels, MCU height, intervals per row)
    assert [(i.mcu_w, i.mcu_h, i.per_row) for i in idx.values()] == [(32, 8, 10), (336, 8, 1), (32, 16, 11)]
    raw = (FIXTURES / RST[0]).read_bytes()
    k = raw.rfind(b"\xff\xd3")  # drop one restart interval: the count no longer matches the image
    j = raw.rfind(b"\xff\xd2", 0, k)
    broken = raw[:j] + raw[k:]
    assert _RestartIndex.parse(np.frombuffer(broken, np.uint8)) is None
    progressive = tmp_path / "p.jpg"
    cv2.imwrite(str(progressive), load_image(FIXTURES / RST[0]), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert _RestartIndex.parse(np.fromfile(progressive, np.uint8)) is None


@pytest.mark.parametrize("name", RST)
def test_region_decode_matches_full_decode(name):
    """Crops from the decoded region equal crops from the full decode up to 1 grey level (the warp's
    fixed-point rounding of the shifted coordinates), and the region's pixels are the full decode's."""
    path = FIXTURES / name
    full = load_image(path)
    h, w = full.shape[:2]
    rng = np.random.default_rng(0)
    smaller = 0
    for m in _random_crops(rng, w, h, 150):
        img, mk, k = load_image_for_crop(path, m, (48, 64), (h, w), max_factor=1)
        assert k == 1
        a, b = warp_image(full, m, (48, 64)), warp_image(img, mk, (48, 64))
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        ox, oy = (int(round(v)) for v in np.linalg.solve(m[:, :2], mk[:, 2] - m[:, 2]))  # the region's origin
        rh, rw = img.shape[:2]
        region = full[oy:oy + rh, ox:ox + rw].astype(int)
        if name.startswith("rst444"):
            assert np.array_equal(img, region)
        else:  # chroma upsampling at the region's own edges sees replicated, not real, neighbours
            inner = (slice(2 if oy else 0, rh - 2 if oy + rh < h else rh),
                     slice(2 if ox else 0, rw - 2 if ox + rw < w else rw))
            assert np.array_equal(img[inner], region[inner])
        smaller += img.size < full.size
    assert smaller > 100  # most crops decode only part of the image


def test_region_and_scale_combine():
    path = FIXTURES / RST[0]
    full = load_image(path)
    m = get_affine_matrix(np.array([150.0, 120.0]), np.array([150.0, 200.0]), 20.0, (48, 64))  # shrinks 3x
    img, mk, k = load_image_for_crop(path, m, (48, 64), full.shape[:2])
    assert k == 2 and img.shape[0] < full.shape[0] / 2
    whole, mw, kw = load_image_for_crop(path, m, (48, 64), full.shape[:2], roi=False)
    assert kw == 2 and whole.shape[:2] == (128, 160)
    a, b = warp_image(whole, mw, (48, 64)), warp_image(img, mk, (48, 64))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    with pytest.raises(ImageError, match=r"rst444_blocks\.jpg: size 320x256 disagrees with the annotation file"):
        load_image_for_crop(path, m, (48, 64), (256, 300))


def test_roi_dataset_without_restart_markers_is_the_full_decode():
    full = build_dataset("coco", COCO_MINI, "val", train=True, seed=0)
    roi = build_dataset("coco", COCO_MINI, "val", train=True, seed=0, decode="roi")
    for i in range(0, len(full), 7):
        assert torch.equal(full[i]["img"], roi[i]["img"])
