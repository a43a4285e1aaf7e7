"""Decode only the resolution a crop needs: libjpeg-turbo's DCT-domain scaling (1/2, 1/4, 1/8).

A top-down crop of a large person shrinks the image: the warp matrix ``A`` (image pixels -> input
pixels) has singular values below 1. libjpeg-turbo can decode a JPEG at 1/k of its size (k = 2, 4,
8) by running a k-times smaller inverse DCT on each block's low-frequency coefficients, which skips
most of the IDCT, upsampling and colour-conversion work (the entropy decoding stays).

The rule (:func:`decode_factor`): decode at 1/k only if ``k * sigma_max(A) <= 1``, i.e. the
reduced image still has at least one pixel per output pixel in every direction, so the crop never
upsamples the reduced image. ``sigma_max`` is taken from the sample's actual warp (after its random
scale, rotation and half-body box), which is known before decoding (``TopDownDataset.crop_params``),
so the choice is exact per sample rather than a worst case over the augmentation range.

What changes in the pixels (the antialiasing consequence): with the full decode, the bilinear warp
of a k-fold shrink samples 2x2 neighbourhoods k pixels apart and ignores the pixels in between
(it aliases, as mmpose's and the papers' pipelines do). A reduced decode first low-passes each 8x8
block (its output pixel is the inverse DCT of the block's lowest (8/k)^2 frequencies, close to a
k x k average), so the crop is the same geometry but slightly smoother: differences are confined to
edges and fine texture (``tests/test_decode.py`` measures them against the full decode under the
tolerance the crop tests use). ``decode="full"`` keeps the reference's pixels exactly.

Pixel ``j`` of the 1/k image covers original pixels ``[k j, k j + k)``, centre ``k j + (k - 1)/2``
(:func:`reduced_matrix` folds that into the warp). PNGs and other formats, and JPEGs with an EXIF
orientation other than "normal" (whose reduced grid would be mirrored against a partial edge
block), are decoded in full.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import cv2
import numpy as np

from harness.data.coco import ImageError, is_jpeg, read_image_bytes
from harness.data.transforms import compose_affine

__all__ = ["DECODE_MODES", "decode_factor", "reduced_matrix", "exif_orientation", "load_image_for_crop"]

#: ``DataCfg.decode`` / ``TopDownDataset(decode=...)``: "full" decodes every image at full size,
#: "scaled" lets large crops decode at 1/2, 1/4 or 1/8 (see the module docstring).
DECODE_MODES = ("full", "scaled")

_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}


def _sigma_max(a: np.ndarray) -> float:
    """Largest singular value of a 2x2 matrix (closed form)."""
    t = float((a * a).sum())
    d = float(a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0])
    return math.sqrt(max(0.0, 0.5 * (t + math.sqrt(max(0.0, t * t - 4.0 * d * d)))))


def decode_factor(matrix: np.ndarray, max_factor: int = 8) -> int:
    """The largest k in (1, 2, 4, 8), at most ``max_factor``, with ``k * sigma_max(A) <= 1``.

    Args:
        matrix: (2, 3) image -> input affine matrix (``crop_params(i)["img_matrix"]``).
    """
    s = _sigma_max(np.asarray(matrix, dtype=np.float64)[:, :2])
    for k in (8, 4, 2):
        if k <= max_factor and k * s <= 1.0 + 1e-9:
            return k
    return 1


def reduced_matrix(matrix: np.ndarray, k: int) -> np.ndarray:
    """(2, 3) matrix from the 1/k-decoded image to the input: ``matrix`` after x = k x' + (k-1)/2."""
    if k == 1:
        return np.asarray(matrix, dtype=np.float64)
    up = np.array([[k, 0.0, (k - 1) / 2.0], [0.0, k, (k - 1) / 2.0]])
    return compose_affine(np.asarray(matrix, dtype=np.float64), up)


def exif_orientation(buf: np.ndarray) -> int:
    """The EXIF orientation tag (1..8) of JPEG bytes ``buf``; 1 when there is none."""
    data = buf.tobytes()
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return 1  # not a marker: malformed header; the decoder will complain if it matters
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no EXIF before the data
            return 1
        length = (data[i + 2] << 8) | data[i + 3]
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\0\0":
            return _tiff_orientation(data[i + 10:i + 2 + length])
        i += 2 + length
    return 1


def _tiff_orientation(t: bytes) -> int:
    if len(t) < 8 or t[:2] not in (b"II", b"MM"):
        return 1
    e = "<" if t[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(e + "I", t, 4)
    if ifd + 2 > len(t):
        return 1
    (count,) = struct.unpack_from(e + "H", t, ifd)
    for j in range(count):
        off = ifd + 2 + 12 * j
        if off + 12 > len(t):
            return 1
        tag, _typ, _cnt = struct.unpack_from(e + "HHI", t, off)
        if tag == 0x0112:
            (value,) = struct.unpack_from(e + "H", t, off + 8)
            return int(value)
    return 1


def load_image_for_crop(path: str | Path, matrix: np.ndarray, expect_hw: tuple[int, int] | None = None,
                        *, max_factor: int = 8) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode ``path`` at the smallest resolution the warp ``matrix`` allows.

    Args:
        path: image file; errors (missing, empty, truncated, corrupt, wrong size) are ``ImageError``
            naming it, as from ``load_image``.
        matrix: (2, 3) image -> input matrix of the crop.
        expect_hw: (H, W) of the full image from the annotation file.
        max_factor: largest reduction tried (1 disables it).
    Returns:
        ``(img, matrix_k, k)``: the BGR uint8 image decoded at 1/k, the (2, 3) matrix from it to the
        input, and k (1 for non-JPEG files, EXIF-rotated JPEGs and crops that need every pixel).
    """
    path = Path(path)
    buf = read_image_bytes(path)
    k = decode_factor(matrix, max_factor)
    if k > 1 and (not is_jpeg(buf) or exif_orientation(buf) != 1):
        k = 1
    img = cv2.imdecode(buf, _REDUCED_FLAGS[k])
    if img is None:
        raise ImageError(f"image {path}: cannot decode (corrupt or not an image)")
    if expect_hw is not None:
        h, w = expect_hw
        want = (-(-int(h) // k), -(-int(w) // k))  # libjpeg: ceil(size / k)
        if tuple(img.shape[:2]) != want:
            got_h, got_w = img.shape[0] * k, img.shape[1] * k
            raise ImageError(f"image {path}: size {'about ' if k > 1 else ''}{got_w}x{got_h} disagrees with "
                             f"the annotation file ({w}x{h})")
    return img, reduced_matrix(matrix, k), k
