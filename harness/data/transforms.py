"""Top-down geometry: box -> (centre, scale), random flip / half-body / scale / rotation, affine warp.

Conventions (the same as mmpose 1.x's top-down pipeline, which the HRNet, HRFormer and HRNeXt
configs use):

* Pixel coordinates: pixel ``i`` covers ``[i - 0.5, i + 0.5]``; a horizontal flip maps
  ``x -> width - 1 - x``.
* ``center`` (2,) is the box centre in image pixels and ``scale`` (2,) the box (w, h) in pixels
  after ``padding`` (1.25) and after widening/heightening it to the network's input aspect ratio
  (w/h = 192/256). No "pixel_std = 200" units.
* The standard warp maps ``center`` to the input centre ``(W/2, H/2)`` and ``scale`` onto ``(W, H)``
  (``get_affine_matrix``); the UDP warp (Huang et al., CVPR 2020) maps ``center - scale/2`` to 0
  and ``center + scale/2`` to ``W - 1`` so that the transform is unbiased in the discrete domain.
* Random scale and rotation follow the mmpose 0.x / HRNeXt config convention
  (``TopDownGetRandomScaleRotation(rot_factor=40, scale_factor=0.5)``, rotation probability 0.6):
  ``scale *= clip(1 + 0.5 * N(0,1), 0.5, 1.5)`` and ``rot = clip(40 * N(0,1), -80, 80)`` degrees
  with probability 0.6. This is the same range as mmpose 1.x's
  ``RandomBBoxTransform(scale_factor=(0.5, 1.5), rotate_factor=80)`` (which draws from a normal
  truncated to one ``factor`` instead of clipping at two standard deviations); the 1.x shift
  (``shift_factor=0.16, shift_prob=0.3``) is available through ``AugmentConfig.shift_prob``, off by
  default as in the HRNet/HRFormer/HRNeXt papers' configs.
* Half body: if more than 8 keypoints are visible, with probability 0.3 the box is replaced by
  the box of the visible upper-body (probability ~0.69) or lower-body keypoints, padded by 1.5.

Every random draw goes through an explicit ``np.random.Generator``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "AugmentConfig",
    "bbox_xywh_to_cs",
    "fix_aspect_ratio",
    "get_affine_matrix",
    "get_udp_affine_matrix",
    "flip_matrix",
    "invert_affine",
    "apply_affine",
    "flip_keypoints",
    "half_body_box",
    "sample_augmentation",
    "AugParams",
    "warp_image",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation parameters (defaults: HRNet/HRFormer/HRNeXt COCO configs).

    Attributes:
        flip_prob: probability of a horizontal flip.
        half_body_prob: probability of the half-body crop (when enough keypoints are visible).
        half_body_min_kpts: the half-body crop needs strictly more visible keypoints than this.
        half_body_padding: padding of the half-body box.
        scale_factor: random scale ``clip(1 + f*N(0,1), 1-f, 1+f)``.
        rot_factor: rotation ``clip(r*N(0,1), -2r, 2r)`` degrees.
        rot_prob: probability of rotating.
        shift_factor / shift_prob: mmpose 1.x box shift (fraction of the box size); off by default.
    """

    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_kpts: int = 8
    half_body_padding: float = 1.5
    scale_factor: float = 0.5
    rot_factor: float = 40.0
    rot_prob: float = 0.6
    shift_factor: float = 0.16
    shift_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flip_prob", "half_body_prob", "rot_prob", "shift_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentConfig.{name}: {v} is not a probability in [0, 1]")
        if not 0.0 <= self.scale_factor < 1.0:
            raise ValueError(f"AugmentConfig.scale_factor: {self.scale_factor} must be in [0, 1)")
        for name in ("rot_factor", "shift_factor", "half_body_padding"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name}: must be >= 0")
        if self.half_body_min_kpts < 0:
            raise ValueError("AugmentConfig.half_body_min_kpts: must be >= 0")


#: Named augmentation strengths (``DataCfg.augment``): the papers' settings, and gentler ones for short
#: CPU runs (the demo), where heavy rotation/half-body crops slow early learning.
AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "standard": AugmentConfig(),
    "light": AugmentConfig(half_body_prob=0.0, scale_factor=0.25, rot_factor=15.0, rot_prob=0.3),
    "flip-only": AugmentConfig(half_body_prob=0.0, scale_factor=0.0, rot_factor=0.0, rot_prob=0.0),
}


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow (w, h) so that w / h == aspect_ratio. scale: (..., 2) -> (..., 2)."""
    scale = np.asarray(scale, dtype=np.float64)
    w, h = scale[..., 0], scale[..., 1]
    wide = w > h * aspect_ratio
    return np.stack([np.where(wide, w, h * aspect_ratio), np.where(wide, w / aspect_ratio, h)], axis=-1)


def bbox_xywh_to_cs(
    bbox: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """COCO boxes (N, 4) [x, y, w, h] -> centre (N, 2), scale (N, 2) (padded, aspect fixed)."""
    bbox = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    center = bbox[:, :2] + bbox[:, 2:] * 0.5
    scale = fix_aspect_ratio(bbox[:, 2:] * padding, aspect_ratio)
    return center, scale


def get_affine_matrix(
    center: np.ndarray, scale: np.ndarray, rot: float, output_size: tuple[int, int]
) -> np.ndarray:
    """(2, 3) matrix mapping image -> input pixels (standard top-down warp).

    ``center`` goes to ``(W/2, H/2)``, a horizontal span of ``scale[0]`` pixels to ``W`` pixels,
    the box rotated by ``rot`` degrees (counter-clockwise in the image) is made upright.
    ``output_size`` is (W, H). The aspect ratio is taken from the width (scale is expected to
    have the input's aspect ratio already, see ``fix_aspect_ratio``).
    """
    w_out, h_out = output_size
    s = w_out / float(scale[0])
    r = math.radians(rot)
    c, sn = math.cos(r), math.sin(r)
    # x_in = s * R(-rot) (x - center) + (W/2, H/2)
    a = np.array([[s * c, s * sn], [-s * sn, s * c]])
    t = np.array([w_out * 0.5, h_out * 0.5]) - a @ np.asarray(center, dtype=np.float64)
    return np.concatenate([a, t[:, None]], axis=1)


def get_udp_affine_matrix(
    center: np.ndarray, scale: np.ndarray, rot: float, output_size: tuple[int, int]
) -> np.ndarray:
    """(2, 3) UDP warp: ``center +- scale/2`` -> ``0 .. output_size - 1`` (Huang et al. 2020)."""
    w_out, h_out = output_size
    sx = (w_out - 1.0) / float(scale[0])
    sy = (h_out - 1.0) / float(scale[1])
    r = math.radians(rot)
    c, sn = math.cos(r), math.sin(r)
    a = np.array([[c * sx, -sn * sx], [sn * sy, c * sy]])
    t = np.array([(w_out - 1.0) * 0.5, (h_out - 1.0) * 0.5]) - a @ np.asarray(center, dtype=np.float64)
    return np.concatenate([a, t[:, None]], axis=1)


def flip_matrix(width: int) -> np.ndarray:
    """(2, 3) horizontal flip of an image ``width`` pixels wide: x -> width - 1 - x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(m2: np.ndarray, m1: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of ``m2 after m1``."""
    a = m2[:, :2] @ m1[:, :2]
    t = m2[:, :2] @ m1[:, 2] + m2[:, 2]
    return np.concatenate([a, t[:, None]], axis=1)


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix (or a batch (N, 2, 3))."""
    m = np.asarray(m, dtype=np.float64)
    a_inv = np.linalg.inv(m[..., :2])
    t = -np.einsum("...ij,...j->...i", a_inv, m[..., 2])
    return np.concatenate([a_inv, t[..., None]], axis=-1)


def apply_affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply (2, 3) ``m`` to points (..., 2); or a batch: points (N, K, 2) with m (N, 2, 3)."""
    points = np.asarray(points, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if m.ndim == 3:
        return np.einsum("nij,nkj->nki", m[:, :, :2], points) + m[:, None, :, 2]
    return points @ m[:, :2].T + m[:, 2]


def flip_keypoints(
    keypoints: np.ndarray, visible: np.ndarray, width: int, flip_indices: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror keypoints (K, 2) / visibility (K,) of an image ``width`` wide and swap left/right."""
    idx = np.asarray(flip_indices)
    kp = keypoints[idx].copy()
    kp[:, 0] = width - 1 - kp[:, 0]
    return kp, visible[idx].copy()


def half_body_box(
    keypoints: np.ndarray,
    visible: np.ndarray,
    upper_ids: tuple[int, ...],
    lower_ids: tuple[int, ...],
    rng: np.random.Generator,
    aspect_ratio: float,
    padding: float = 1.5,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre/scale of the upper- or lower-body keypoints' box, or None if too few are visible.

    Same rule as mmpose 0.x's ``TopDownHalfBodyTransform`` (and HRNet's original code): the upper
    body when ``N(0, 1) < 0.5`` (probability 0.69, which mmpose 1.x rounds to its
    ``upper_prioritized_prob=0.7``) and it has more than 2 visible keypoints, otherwise the lower
    body if it has more than 2, otherwise the upper body; at least 2 keypoints are needed.
    """
    vis = visible > 0
    upper = [i for i in upper_ids if vis[i]]
    lower = [i for i in lower_ids if vis[i]]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        sel = upper
    else:
        sel = lower if len(lower) > 2 else upper
    if len(sel) < 2:
        return None
    pts = keypoints[sel]
    center = pts.mean(axis=0)
    wh = pts.max(axis=0) - pts.min(axis=0)
    scale = fix_aspect_ratio(wh, aspect_ratio) * padding
    return center, scale


@dataclass(frozen=True)
class AugParams:
    """One sample's random augmentation draw."""

    flip: bool
    half_body: bool
    scale_mult: float
    rot: float
    shift: tuple[float, float]


def sample_augmentation(
    rng: np.random.Generator,
    cfg: AugmentConfig,
    keypoints: np.ndarray,
    visible: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    image_width: int,
    flip_indices: tuple[int, ...],
    upper_ids: tuple[int, ...],
    lower_ids: tuple[int, ...],
    aspect_ratio: float,
) -> tuple[np.ndarray, np.ndarray, float, bool, np.ndarray, np.ndarray]:
    """Draw flip, half-body, scale, rotation (in that order, as in the configs) for one instance.

    Args:
        keypoints: (K, 2) image coordinates; visible: (K,) 0/1.
        center, scale: (2,) the padded, aspect-fixed box.
    Returns:
        (center, scale, rot, flipped, keypoints, visible), the keypoints/visibility flipped and
        centre mirrored when ``flipped``; the image itself is flipped later inside the warp
        (``flip_matrix``), which avoids copying the full image.
    """
    center = np.asarray(center, dtype=np.float64).copy()
    scale = np.asarray(scale, dtype=np.float64).copy()
    flipped = bool(rng.random() < cfg.flip_prob)
    if flipped:
        keypoints, visible = flip_keypoints(keypoints, visible, image_width, flip_indices)
        center[0] = image_width - 1 - center[0]
    if (visible > 0).sum() > cfg.half_body_min_kpts and rng.random() < cfg.half_body_prob:
        hb = half_body_box(keypoints, visible, upper_ids, lower_ids, rng, aspect_ratio,
                           cfg.half_body_padding)
        if hb is not None:
            center, scale = hb
    if cfg.shift_prob > 0 and rng.random() < cfg.shift_prob:
        center = center + rng.uniform(-1.0, 1.0, size=2) * cfg.shift_factor * scale
    sf, rf = cfg.scale_factor, cfg.rot_factor
    scale = scale * float(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
    rot = 0.0
    if rng.random() < cfg.rot_prob:
        rot = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf))
    return center, scale, rot, flipped, keypoints, visible


def warp_image(img: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Bilinear affine warp (H, W, C) -> (out_h, out_w, C), zero border (as mmpose)."""
    return cv2.warpAffine(img, matrix.astype(np.float64), (int(output_size[0]), int(output_size[1])),
                          flags=cv2.INTER_LINEAR)
