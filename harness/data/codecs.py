"""Heatmap targets and heatmap decoding: MSRA Gaussian heatmaps (Xiao et al. 2018), DARK
(Zhang et al., CVPR 2020) and UDP (Huang et al., CVPR 2020).

Semantics follow mmpose 1.x's ``MSRAHeatmap`` / ``UDPHeatmap`` codecs exactly (same Gaussian
window, same rounding, same quarter-pixel rule, same out-of-bounds weights) but every step is
vectorised over keypoints (and instances): the Gaussian is separable, so a heatmap is an outer
product of a row and a column profile.

Shapes: keypoints (N, K, 2) in input-image pixels, visibility (N, K), heatmaps (N, K, H, W).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["HeatmapCodec", "get_heatmap_maximum", "refine_quarter_offset", "refine_dark",
           "refine_dark_udp", "flip_heatmaps"]


def _trunc_int(x: np.ndarray) -> np.ndarray:
    # mmpose uses ``ndarray.astype(np.int64)``, which truncates towards zero (not floor).
    return np.trunc(x).astype(np.int64)


def default_sigma(input_size_hw: tuple[int, int]) -> float:
    """The sources' heatmap sigma for a (H, W) input: 2 up to 256x192, 3 above (384x288)."""
    return 2.0 if input_size_hw[0] <= 256 else 3.0


@dataclass(frozen=True)
class HeatmapCodec:
    """Encode keypoints to Gaussian heatmaps and decode heatmaps back to keypoints.

    Attributes:
        input_size: (W, H) of the network input, e.g. (192, 256).
        heatmap_size: (W, H) of the heatmaps, e.g. (48, 64).
        sigma: Gaussian sigma in heatmap pixels (2 at 256x192, 3 at 384x288).
        udp: use UDP's unbiased encoding/decoding (scale (input-1)/(heatmap-1), sub-pixel
            Gaussian centre, DARK-UDP refinement).
        dark: decode with DARK's Taylor refinement (encode with the unbiased Gaussian).
        blur_kernel_size: Gaussian modulation kernel for DARK/UDP decoding (11 for sigma 2,
            17 for sigma 3).
    """

    input_size: tuple[int, int] = (192, 256)
    heatmap_size: tuple[int, int] = (48, 64)
    sigma: float = 2.0
    udp: bool = False
    dark: bool = False
    blur_kernel_size: int = 11

    def __post_init__(self) -> None:
        for name in ("input_size", "heatmap_size"):
            v = getattr(self, name)
            if len(v) != 2 or any(int(x) <= 1 for x in v):
                raise ValueError(f"HeatmapCodec.{name}: {v!r} must be (W, H) with W, H > 1")
        if not self.sigma > 0:
            raise ValueError(f"HeatmapCodec.sigma: {self.sigma} must be > 0")
        if self.blur_kernel_size % 2 != 1 or self.blur_kernel_size < 1:
            raise ValueError(f"HeatmapCodec.blur_kernel_size: {self.blur_kernel_size} must be odd")
        if self.udp and self.dark:
            raise ValueError("HeatmapCodec: choose one of udp / dark (UDP decoding is DARK-based)")

    @classmethod
    def for_input(cls, input_size_hw: tuple[int, int], *, sigma: float | None = None, udp: bool = False,
                  dark: bool = False) -> "HeatmapCodec":
        """Codec for a (H, W) input: heatmaps at 1/4, ``sigma`` (default :func:`default_sigma`), the
        modulation kernel of that sigma (11 up to sigma 2, else 17, as the sources pair them)."""
        h, w = input_size_hw
        sigma = default_sigma(input_size_hw) if sigma is None else float(sigma)
        return cls(input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=sigma, udp=udp,
                   dark=dark, blur_kernel_size=11 if sigma <= 2 else 17)

    @property
    def scale_factor(self) -> np.ndarray:
        """(2,) input pixels per heatmap pixel.

        For UDP this is (input - 1) / (heatmap - 1) both ways, so decoded keypoints are true
        input pixels and the inverse UDP warp maps them to the image. (mmpose 1.x's UDP decoder
        returns ``x_hm / (W_hm - 1) * W_in`` instead and compensates in its back-projection
        ``x / W_in * scale``; the image coordinates are the same.)
        """
        i, h = np.asarray(self.input_size, np.float32), np.asarray(self.heatmap_size, np.float32)
        return ((i - 1) / (h - 1)) if self.udp else (i / h)

    # ---------------------------------------------------------------- encode
    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, K, 2) in input pixels, visibility (N, K) -> heatmaps (K, H, W) float32,
        weights (N, K) float32.

        Instances are merged with max (as mmpose); top-down training uses N = 1. A keypoint whose
        visibility is < 0.5 or whose Gaussian window misses the heatmap gets weight 0.
        """
        kp = np.asarray(keypoints, dtype=np.float32)
        if kp.ndim == 2:
            kp = kp[None]
        vis = np.asarray(visible, dtype=np.float32).reshape(kp.shape[:2])
        n, k = kp.shape[:2]
        wd, ht = self.heatmap_size
        kp = kp / self.scale_factor
        sigma = float(self.sigma)
        radius = sigma * 3
        weights = vis.copy()
        use = vis >= 0.5
        if self.dark:
            # unbiased: Gaussian centred on the exact location over the whole map; window only
            # used for the out-of-bounds test.
            left, top = kp[..., 0] - radius, kp[..., 1] - radius
            right, bottom = kp[..., 0] + radius + 1, kp[..., 1] + radius + 1
            inside = ~((left >= wd) | (top >= ht) | (right < 0) | (bottom < 0))
            cx, cy = kp[..., 0], kp[..., 1]
            xs = np.arange(wd, dtype=np.float32)
            ys = np.arange(ht, dtype=np.float32)
            gx = np.exp(-((xs - cx[..., None]) ** 2) / (2 * sigma ** 2))
            gy = np.exp(-((ys - cy[..., None]) ** 2) / (2 * sigma ** 2))
        else:
            mu = _trunc_int(kp + 0.5)
            left, top = _trunc_int(mu[..., 0] - radius), _trunc_int(mu[..., 1] - radius)
            right, bottom = _trunc_int(mu[..., 0] + radius + 1), _trunc_int(mu[..., 1] + radius + 1)
            inside = ~((left >= wd) | (top >= ht) | (right < 0) | (bottom < 0))
            x0 = float((2 * radius + 1) // 2)
            if self.udp:
                # sub-pixel centre inside the integer window
                ox = x0 + (kp[..., 0] - mu[..., 0])
                oy = x0 + (kp[..., 1] - mu[..., 1])
            else:
                ox = np.full(kp.shape[:2], x0, np.float32)
                oy = ox
            xs = np.arange(wd)
            ys = np.arange(ht)
            # offset of pixel x inside the Gaussian patch that starts at ``left``
            dx = (xs - left[..., None]).astype(np.float32) - ox[..., None]
            dy = (ys - top[..., None]).astype(np.float32) - oy[..., None]
            gx = np.exp(-(dx ** 2) / (2 * sigma ** 2))
            gy = np.exp(-(dy ** 2) / (2 * sigma ** 2))
            gx *= (xs >= left[..., None]) & (xs < right[..., None])
            gy *= (ys >= top[..., None]) & (ys < bottom[..., None])
        weights[use & ~inside] = 0.0
        active = (use & inside).astype(np.float32)
        gy = gy * active[..., None]
        heat = gy[..., :, None] * gx[..., None, :]  # (N, K, H, W)
        heatmaps = heat.max(axis=0) if n > 1 else heat[0]
        return heatmaps.astype(np.float32, copy=False), weights

    # ---------------------------------------------------------------- decode
    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (N, K, H, W) -> keypoints (N, K, 2) in input pixels, scores (N, K)."""
        hm = np.asarray(heatmaps, dtype=np.float32)
        squeeze = hm.ndim == 3
        if squeeze:
            hm = hm[None]
        if hm.ndim != 4:
            raise ValueError(f"HeatmapCodec.decode: heatmaps must be (N, K, H, W), got {hm.shape}")
        locs, vals = get_heatmap_maximum(hm)
        if self.udp:
            locs = refine_dark_udp(locs, hm, self.blur_kernel_size)
        elif self.dark:
            locs = refine_dark(locs, hm, self.blur_kernel_size)
        else:
            locs = refine_quarter_offset(locs, hm)
        locs = locs * self.scale_factor
        if squeeze:
            return locs[0], vals[0]
        return locs, vals


def get_heatmap_maximum(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, H, W) -> argmax locations (N, K, 2) float32 (x, y), max values (N, K).

    Locations of maps whose maximum is <= 0 are set to -1 (as mmpose).
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = flat.argmax(axis=2)
    vals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    locs = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    locs[vals <= 0] = -1
    return locs, vals


def refine_quarter_offset(locs: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Move each maximum 0.25 px towards its higher neighbour (Newell et al. / SimpleBaseline).

    Border rule identical to mmpose 1.x ``refine_keypoints``: the x step needs ``1 < x < W-1``
    and ``0 < y < H``; the y step needs ``1 < y < H-1`` and ``0 < x < W``.
    """
    n, k, h, w = heatmaps.shape
    x = locs[..., 0].astype(np.int64)
    y = locs[..., 1].astype(np.int64)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    okx = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    oky = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    xc, yc = np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
    yx = np.clip(y, 0, h - 1)
    xy = np.clip(x, 0, w - 1)
    dx = np.where(okx, heatmaps[ni, ki, yx, xc + 1] - heatmaps[ni, ki, yx, xc - 1], 0.0)
    dy = np.where(oky, heatmaps[ni, ki, yc + 1, xy] - heatmaps[ni, ki, yc - 1, xy], 0.0)
    out = locs.astype(np.float32).copy()
    out[..., 0] += np.sign(dx).astype(np.float32) * 0.25
    out[..., 1] += np.sign(dy).astype(np.float32) * 0.25
    return out


def _modulate(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """Gaussian-blur every map with a zero border and restore its maximum (DARK modulation)."""
    n, k, h, w = heatmaps.shape
    b = (kernel - 1) // 2
    maps = heatmaps.reshape(n * k, h, w).astype(np.float32)
    out = np.empty_like(maps)
    padded = np.zeros((h + 2 * b, w + 2 * b), np.float32)
    for i in range(n * k):  # cv2 blurs one 2-D map per call; maps are tiny (64x48)
        padded[b:-b, b:-b] = maps[i]
        out[i] = cv2.GaussianBlur(padded, (kernel, kernel), 0)[b:-b, b:-b]
    orig_max = maps.reshape(n * k, -1).max(axis=1)
    new_max = out.reshape(n * k, -1).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out *= (orig_max / new_max)[:, None, None]
    return out.reshape(n, k, h, w)


def refine_dark(locs: np.ndarray, heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK: second-order Taylor expansion of the log-heatmap around the maximum."""
    n, k, h, w = heatmaps.shape
    hm = np.log(np.maximum(_modulate(heatmaps, kernel), 1e-10))
    x = locs[..., 0].astype(np.int64)
    y = locs[..., 1].astype(np.int64)
    ok = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)
    xc, yc = np.clip(x, 2, w - 3), np.clip(y, 2, h - 3)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")

    def at(dy: int, dx: int) -> np.ndarray:
        return hm[ni, ki, yc + dy, xc + dx].astype(np.float64)

    c = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    det = dxx * dyy - dxy ** 2
    ok &= det != 0
    safe = np.where(ok, det, 1.0)
    # offset = -H^-1 g with H^-1 = [[dyy, -dxy], [-dxy, dxx]] / det
    ox = -(dyy * dx - dxy * dy) / safe
    oy = -(-dxy * dx + dxx * dy) / safe
    out = locs.astype(np.float32).copy()
    out[..., 0] += np.where(ok, ox, 0.0).astype(np.float32)
    out[..., 1] += np.where(ok, oy, 0.0).astype(np.float32)
    return out


def refine_dark_udp(locs: np.ndarray, heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """UDP's DARK variant: log of the clipped, blurred map, edge-padded finite differences."""
    n, k, h, w = heatmaps.shape
    hm = np.log(np.clip(_modulate(heatmaps, kernel), 1e-3, 50.0))
    pad = np.pad(hm, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    # mmpose indexes the flattened padded map, so out-of-range locations (-1) wrap the same way.
    flat = pad.reshape(n, -1)
    wp, hp = w + 2, h + 2
    idx = (locs[..., 0] + 1 + (locs[..., 1] + 1) * wp).astype(np.int64) + (wp * hp) * np.arange(k)
    ni = np.arange(n)[:, None]

    def at(off: int) -> np.ndarray:
        return flat[ni, idx + off].astype(np.float64)

    i_ = at(0)
    ix1, ix1_ = at(1), at(-1)
    iy1, iy1_ = at(wp), at(-wp)
    ix1y1, ix1_y1_ = at(wp + 1), at(-wp - 1)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    eps = float(np.finfo(np.float32).eps)
    a, d = dxx + eps, dyy + eps
    det = a * d - dxy * dxy
    with np.errstate(divide="ignore", invalid="ignore"):
        ox = (d * dx - dxy * dy) / det
        oy = (-dxy * dx + a * dy) / det
    # maps without a positive maximum (location -1) and singular Hessians keep the argmax
    ok = (locs[..., 0] >= 0) & np.isfinite(ox) & np.isfinite(oy)
    out = locs.astype(np.float64).copy()
    out[..., 0] -= np.where(ok, ox, 0.0)
    out[..., 1] -= np.where(ok, oy, 0.0)
    return out.astype(np.float32)


def flip_heatmaps(heatmaps, flip_indices, shift: bool = True):
    """Undo a horizontal input flip on heatmaps (N, K, H, W) (numpy or torch).

    Mirror along W, swap left/right channels and (for the standard, non-UDP codec) shift one
    pixel right: the flipped image's pixel grid is offset by one heatmap pixel's worth of the
    ``x -> W - 1 - x`` convention at 1/4 resolution (mmpose's ``shift_heatmap``).
    """
    idx = list(flip_indices)
    try:
        import torch

        if isinstance(heatmaps, torch.Tensor):
            out = heatmaps.flip(-1)[:, idx]
            if shift:
                out = out.clone()
                out[..., 1:] = out[..., :-1].clone()
            return out
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    out = np.ascontiguousarray(np.asarray(heatmaps)[..., ::-1][:, idx])
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out
