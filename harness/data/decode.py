"""Decode no more of a JPEG than a top-down crop reads: its region, and its resolution.

Two independent savings, both chosen per sample from the crop's warp matrix ``A`` (image pixels ->
input pixels), which ``TopDownDataset.crop_params`` gives before decoding (so the choice is exact
for the sample's random scale, rotation and half-body box, not a worst case over their range):

**Region** (``decode="roi"``). Baseline JPEG data can only be entropy-decoded from the start of the
scan or from a restart marker. A file whose restart interval divides the MCUs of a row (written
losslessly by libjpeg-turbo's ``jpegtran -restart 1`` for one interval per MCU row, or
``-restart NB`` for N MCUs, N dividing the row's MCU count) is indexed by its markers
(:class:`_RestartIndex`) and the intervals covering the box the crop reads (:func:`crop_region`:
the output rectangle mapped back through ``A``, plus 1 pixel for the bilinear neighbour and 2 for
the chroma upsampling context) are re-packed into a smaller JPEG with renumbered markers. Its
pixels are the full decode's (4:2:0 files differ only within 2 pixels of the region's inner
edges, which the margin keeps out of the crop); crops agree with full-decode crops to 1 grey level,
the warp's fixed-point rounding of the shifted coordinates. Files without such markers (COCO as
distributed), progressive, arithmetic-coded or multi-scan files are decoded whole.

**Resolution** (``decode="scaled"``, which also uses the region). libjpeg-turbo decodes at 1/k
(k = 2, 4, 8) by an inverse DCT of each block's lowest (8/k)^2 coefficients, skipping most of
the IDCT, upsampling and colour conversion (not the entropy decoding). The rule
(:func:`decode_factor`): 1/k only if ``k * sigma_max(A) <= 1``, i.e. the reduced image still has
at least one pixel per output pixel in every direction, so the crop never upsamples it. Pixel ``j``
of the 1/k image covers original pixels ``[k j, k j + k)``, centre ``k j + (k - 1)/2``
(:func:`reduced_matrix`). What changes in the pixels (the antialiasing consequence): after a full
decode, the bilinear warp of a k-fold shrink reads 2x2 neighbourhoods k pixels apart and ignores
the pixels between them (it aliases, as mmpose's and the papers' pipelines do); the reduced decode
low-passes each block first (close to a k x k average), so the crop has the same geometry but is
smoother at edges and fine texture. On coco-mini val the reduced crops differ from full-decode
crops by 0.039 (median) and at most 0.085 in mean absolute normalised value (0.05 is about 3
grey levels), ``tests/data/test_decode.py``. ``decode="full"`` keeps the reference's pixels exactly.

PNGs and other formats, and JPEGs with an EXIF orientation other than "normal" (whose decoded grid
is rotated against the file's blocks), are decoded whole at full size.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import cv2
import numpy as np

from harness.data.coco import ImageError, is_jpeg, read_image_bytes
from harness.data.transforms import compose_affine

__all__ = ["DECODE_MODES", "decode_factor", "reduced_matrix", "exif_orientation", "crop_region", "load_image_for_crop"]

#: ``DataCfg.decode`` / ``TopDownDataset(decode=...)``: "full" decodes every image at full size;
#: "roi" decodes only the part a crop reads from JPEGs with restart markers (the same pixels, up to
#: the warp's rounding); "scaled" does that and decodes large crops at 1/2, 1/4 or 1/8.
DECODE_MODES = ("full", "roi", "scaled")

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


def load_image_for_crop(path: str | Path, matrix: np.ndarray, output_size: tuple[int, int],
                        expect_hw: tuple[int, int] | None = None, *, max_factor: int = 8,
                        roi: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode no more of ``path`` than the warp ``matrix`` to ``output_size`` (W, H) reads.

    Args:
        path: image file; errors (missing, empty, truncated, corrupt, wrong size) are ``ImageError``
            naming it, as from ``load_image``.
        matrix: (2, 3) image -> input matrix of the crop.
        output_size: (W, H) of the crop.
        expect_hw: (H, W) of the full image from the annotation file.
        max_factor: largest DCT-domain reduction tried (1: none).
        roi: decode only the region the crop reads when the JPEG has restart markers that allow it.
    Returns:
        ``(img, matrix_k, k)``: the BGR uint8 image (or region of it) decoded at 1/k, the (2, 3)
        matrix from it to the crop, and k (1 for non-JPEG files, EXIF-rotated JPEGs and crops that
        need every pixel).
    """
    path = Path(path)
    buf = read_image_bytes(path)
    k = decode_factor(matrix, max_factor)
    jpeg = is_jpeg(buf) and exif_orientation(buf) == 1
    if not jpeg:
        k = 1
    matrix = np.asarray(matrix, dtype=np.float64)
    index = _RestartIndex.parse(buf) if (roi and jpeg) else None
    if index is not None:
        if expect_hw is not None and (index.height, index.width) != tuple(int(v) for v in expect_hw):
            raise ImageError(f"image {path}: size {index.width}x{index.height} disagrees with the annotation file "
                             f"({expect_hw[1]}x{expect_hw[0]})")
        x0, y0, x1, y1 = crop_region(matrix, output_size, index.width, index.height)
        if x1 > x0 and y1 > y0:
            sub, ox, oy = index.region(x0, y0, x1, y1)
            img = cv2.imdecode(sub, _REDUCED_FLAGS[k])
            if img is not None:
                shifted = np.concatenate([matrix[:, :2], (matrix[:, 2] + matrix[:, :2] @ (ox, oy))[:, None]], 1)
                return img, reduced_matrix(shifted, k), k
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


# ------------------------------------------------------------------------------------------------
# Region-of-interest decoding of JPEGs with restart markers


class _RestartIndex:
    """Where each restart interval of a baseline JPEG's entropy-coded data starts and ends.

    Only built for the files it applies to: one interleaved (or single-component) sequential
    Huffman scan, a restart interval that divides the MCUs of a row, as many intervals as the image
    has. ``None`` from :meth:`parse` otherwise (the caller decodes the whole file).
    """

    __slots__ = ("header", "sof_at", "height", "width", "mcu_w", "mcu_h", "per_row", "scan", "starts", "ends",
                 "markers")

    @classmethod
    def parse(cls, buf: np.ndarray) -> "_RestartIndex | None":
        data = buf.tobytes()
        n, i = len(data), 2
        sof = dri = None
        while True:
            if i + 4 > n or data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            length = (data[i + 2] << 8) | data[i + 3]
            if marker in (0xC0, 0xC1):
                if i + 10 > n:
                    return None
                h, w, nf = struct.unpack_from(">HHB", data, i + 5)
                samp = [data[i + 11 + 3 * c] for c in range(nf)]
                sof = (i, h, w, nf, max(s >> 4 for s in samp), max(s & 15 for s in samp))
            elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return None  # progressive, lossless or arithmetic-coded
            elif marker == 0xDD:
                (dri,) = struct.unpack_from(">H", data, i + 4)
            elif marker == 0xDA:
                ns = data[i + 4]
                start = i + 2 + length
                break
            i += 2 + length
        if sof is None or not dri or start >= n:
            return None
        sof_at, h, w, nf, hmax, vmax = sof
        if ns != nf:
            return None  # non-interleaved multi-scan file
        mcu_w, mcu_h = (8, 8) if nf == 1 else (8 * hmax, 8 * vmax)
        per_row_mcus = -(-w // mcu_w)
        if h == 0 or per_row_mcus % dri:
            return None
        arr = np.frombuffer(data, np.uint8)
        scan = arr[start:]
        ff = np.flatnonzero(scan[:-1] == 0xFF)  # 0xFF bytes are rare in entropy-coded data (stuffed as FF 00)
        nxt = scan[ff + 1]
        is_rst = (nxt & 0xF8) == 0xD0
        rst = ff[is_rst]
        other = ff[~is_rst & (nxt != 0x00) & (nxt != 0xFF)]
        if other.size == 0 or scan[other[0] + 1] != 0xD9:
            return None  # no end of image right after the scan (e.g. a second scan)
        end = int(other[0])
        rst = rst[rst < end]
        rows = -(-h // mcu_h)
        per_row = per_row_mcus // dri
        if rst.size + 1 != rows * per_row:
            return None
        self = cls()
        self.header = arr[:start]
        self.sof_at, self.height, self.width = sof_at, h, w
        self.mcu_w, self.mcu_h, self.per_row = mcu_w * dri, mcu_h, per_row
        self.scan = scan[:end]
        self.starts = np.concatenate([[0], rst + 2])
        self.ends = np.concatenate([rst, [end]])
        self.markers = rst
        return self

    def region(self, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, int, int]:
        """JPEG bytes of the restart-interval-aligned region covering pixels [x0, x1) x [y0, y1),
        and the region's top-left pixel (ox, oy) in the full image."""
        r0, r1 = y0 // self.mcu_h, (y1 - 1) // self.mcu_h
        c0, c1 = x0 // self.mcu_w, (x1 - 1) // self.mcu_w
        h = min(self.height, (r1 + 1) * self.mcu_h) - r0 * self.mcu_h
        w = min(self.width, (c1 + 1) * self.mcu_w) - c0 * self.mcu_w
        header = self.header.copy()
        header[self.sof_at + 5:self.sof_at + 9] = np.frombuffer(struct.pack(">HH", h, w), np.uint8)
        # Row r contributes the bytes of its intervals c0..c1 and (except the last row) the restart
        # marker after them; all markers are then renumbered RST0, RST1, ..., RST7, RST0, ... as
        # the decoder expects.
        q0 = np.arange(r0, r1 + 1) * self.per_row + c0
        q1 = q0 + (c1 - c0)
        begin = self.starts[q0]
        end = self.ends[q1] + 2
        end[-1] -= 2
        lens = end - begin
        out_start = np.concatenate([[0], np.cumsum(lens)[:-1]])
        body = self.scan[np.arange(int(lens.sum())) + np.repeat(begin - out_start, lens)]
        per_row = c1 - c0 + 1  # markers in a row's run, the trailing one included
        mk = (q0[:, None] + np.arange(per_row)[None, :]).ravel()[:-1]  # the last row has no trailing marker
        row_of = np.repeat(np.arange(q0.size), per_row)[:-1]
        at = self.markers[mk] - begin[row_of] + out_start[row_of] + 1
        body[at] = 0xD0 + (np.arange(at.size) & 7)
        return np.concatenate([header, body, np.array([0xFF, 0xD9], np.uint8)]), c0 * self.mcu_w, r0 * self.mcu_h


#: Pixels kept around the area a crop samples: 1 for the bilinear neighbour, 2 for the chroma
#: upsampling context (h2v1/h2v2 "fancy" upsampling reads the neighbouring chroma sample).
_ROI_MARGIN = 3


def crop_region(matrix: np.ndarray, output_size: tuple[int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box ``[x0, x1) x [y0, y1)`` of a ``width`` x ``height`` image that the warp ``matrix``
    (image -> output of ``output_size`` (W, H)) reads, with a margin; clipped to the image."""
    from harness.data.transforms import apply_affine, invert_affine

    w_out, h_out = output_size
    corners = np.array([[-0.5, -0.5], [w_out - 0.5, -0.5], [-0.5, h_out - 0.5], [w_out - 0.5, h_out - 0.5]])
    src = apply_affine(corners, invert_affine(matrix))
    x0 = max(0, int(math.floor(src[:, 0].min())) - _ROI_MARGIN)
    y0 = max(0, int(math.floor(src[:, 1].min())) - _ROI_MARGIN)
    x1 = min(width, int(math.ceil(src[:, 0].max())) + 1 + _ROI_MARGIN)
    y1 = min(height, int(math.ceil(src[:, 1].max())) + 1 + _ROI_MARGIN)
    return x0, y0, x1, y1
