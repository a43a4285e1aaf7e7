"""Top-down geometry: box -> (centre, scale), random flip / half body / box shift / scale / rotation, warp.

Geometry conventions (mmpose 1.x's top-down pipeline; the 0.x code the HRNet, HRFormer and HRNeXt
authors ran computes the same crops in "pixel_std = 200" units):

* Pixel coordinates: pixel ``i`` covers ``[i - 0.5, i + 0.5]``; a horizontal flip maps
  ``x -> width - 1 - x``.
* ``center`` (2,) is the box centre in image pixels and ``scale`` (2,) the box (w, h) in pixels
  after ``padding`` (1.25) and after widening/heightening it to the network's input aspect ratio
  (w/h = 192/256). No "pixel_std = 200" units.
* The standard warp maps ``center`` to the input centre ``(W/2, H/2)`` and ``scale`` onto ``(W, H)``
  (``get_affine_matrix``); the UDP warp (Huang et al., CVPR 2020) maps ``center - scale/2`` to 0
  and ``center + scale/2`` to ``W - 1`` so that the transform is unbiased in the discrete domain.
* Random augmentation (``AugmentConfig``, ``AUGMENT_PRESETS``) comes in two sampling conventions,
  each as small pieces: ``"mmpose0x"`` (clip-normal scale/rotation, the 0.x half-body rule, the box
  shift of 0.x's ``_xywh2cs`` fixed per instance at dataset build; the HRNeXt and HRFormer authors'
  code, and with other factors the HRNet authors') and ``"mmpose1x"`` (``RandomHalfBody`` and
  ``RandomBBoxTransform``: truncated normals, a box shift drawn per sample). Presets: ``mmpose0x``,
  ``mmpose1x``, ``hrnet`` (the sources' values) and ``light`` / ``flip-only`` for short CPU runs.

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
    "select_half_body_1x",
    "truncated_normal",
    "sample_scale_rotation",
    "sample_box_shift_1x",
    "instance_shifts_0x",
    "sample_augmentation",
    "AUGMENT_PRESETS",
    "CONVENTIONS",
    "AugParams",
    "warp_image",
]


#: Sampling conventions of the random box transforms (``AugmentConfig.convention``).
CONVENTIONS = ("mmpose0x", "mmpose1x")
#: Box-centre shift modes (``AugmentConfig.shift_mode``).
SHIFT_MODES = ("none", "per_sample", "per_instance")


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation: random flip, half body, box shift, scale and rotation.

    ``convention`` says how the random pieces are drawn; each field keeps the meaning it has in
    that convention's source (so a config can be compared with its source field by field):

    * ``"mmpose0x"`` (mmpose 0.x ``TopDownHalfBodyTransform`` / ``TopDownGetRandomScaleRotation``,
      used by the HRNeXt and HRFormer authors; the HRNet authors' ``JointsDataset`` draws the same
      way): scale ``clip(1 + f N, 1 - f, 1 + f)`` with ``f = scale_factor``; rotation
      ``clip(r N, -2r, 2r)`` degrees with ``r = rot_factor``, applied with ``rot_prob``; half body
      upper if ``N < 0.5`` (probability 0.69) and more than 2 upper keypoints are visible, else the
      lower body if it has more than 2, else the upper body, and never with fewer than 2.
    * ``"mmpose1x"`` (mmpose 1.x ``RandomHalfBody`` / ``RandomBBoxTransform``): scale
      ``1 + f T`` and rotation ``r T`` with ``T`` a standard normal truncated to [-1, 1] (so
      ``scale_factor=0.5`` is mmpose's ``scale_factor=(0.5, 1.5)`` and ``rot_factor=80`` its
      ``rotate_factor=80``); half body with ``half_body_upper_prob`` for the upper body, needing
      ``half_body_min_upper`` upper / ``half_body_min_lower`` lower keypoints.

    Attributes:
        flip_prob: probability of a horizontal flip.
        half_body_prob: probability of the half-body crop (when enough keypoints are visible).
        half_body_min_kpts: the half-body crop needs strictly more visible keypoints than this
            (mmpose 0.x ``num_joints_half_body``; mmpose 1.x ``min_total_keypoints - 1``).
        half_body_min_upper / half_body_min_lower / half_body_upper_prob: mmpose 1.x only.
        half_body_padding: padding of the half-body box (1.5 in every source).
        scale_factor, rot_factor, rot_prob: see ``convention``.
        shift_mode: box-centre shift: ``"none"``; ``"per_sample"`` (mmpose 1.x: with
            ``shift_prob`` the centre moves by ``shift_factor * T * scale``, ``T`` truncated normal
            per axis, ``scale`` the padded box (w, h) before the aspect-ratio fix, drawn anew every
            epoch); ``"per_instance"`` (mmpose 0.x ``_xywh2cs``: with ``shift_prob`` the centre moves
            by ``shift_factor * U(-1, 1) * (w, h)`` of the unpadded box, drawn once per instance when
            the dataset is built and fixed for the whole run; 0.x writes it ``0.4 * (U(0,1) - 0.5)``,
            i.e. ``shift_factor=0.2``).
        shift_factor / shift_prob: see ``shift_mode``.
    """

    convention: str = "mmpose0x"
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_kpts: int = 8
    half_body_min_upper: int = 2
    half_body_min_lower: int = 3
    half_body_upper_prob: float = 0.7
    half_body_padding: float = 1.5
    scale_factor: float = 0.5
    rot_factor: float = 40.0
    rot_prob: float = 0.6
    shift_mode: str = "per_instance"
    shift_factor: float = 0.2
    shift_prob: float = 0.3

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"AugmentConfig.convention: {self.convention!r} is not one of {list(CONVENTIONS)}")
        if self.shift_mode not in SHIFT_MODES:
            raise ValueError(f"AugmentConfig.shift_mode: {self.shift_mode!r} is not one of {list(SHIFT_MODES)}")
        for name in ("flip_prob", "half_body_prob", "half_body_upper_prob", "rot_prob", "shift_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentConfig.{name}: {v} is not a probability in [0, 1]")
        if not 0.0 <= self.scale_factor < 1.0:
            raise ValueError(f"AugmentConfig.scale_factor: {self.scale_factor} must be in [0, 1)")
        for name in ("rot_factor", "shift_factor", "half_body_padding"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name}: must be >= 0")
        for name in ("half_body_min_kpts", "half_body_min_upper", "half_body_min_lower"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name}: must be >= 0")


#: Named augmentations (``DataCfg.augment``); ``python -m harness train --list`` experiments use the
#: first three, the others are for short CPU runs (the demo), where heavy rotation/half-body crops slow
#: early learning.
AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    # mmpose 0.x as the HRNeXt (mmpose 0.23) and HRFormer authors run it: flip 0.5, half body (8, 0.3),
    # TopDownGetRandomScaleRotation(rot_factor=40, scale_factor=0.5), rot_prob 0.6, _xywh2cs shift.
    "mmpose0x": AugmentConfig(),
    # mmpose 1.x model zoo: RandomFlip, RandomHalfBody(), RandomBBoxTransform() with their defaults.
    "mmpose1x": AugmentConfig(convention="mmpose1x", half_body_min_kpts=8, scale_factor=0.5, rot_factor=80.0,
                              shift_mode="per_sample", shift_factor=0.16, shift_prob=0.3),
    # The HRNet authors' JointsDataset (SCALE_FACTOR 0.35, ROT_FACTOR 45, rotation p 0.6, no box shift).
    "hrnet": AugmentConfig(scale_factor=0.35, rot_factor=45.0, shift_mode="none"),
    "light": AugmentConfig(half_body_prob=0.0, scale_factor=0.25, rot_factor=15.0, rot_prob=0.3, shift_mode="none"),
    "flip-only": AugmentConfig(half_body_prob=0.0, scale_factor=0.0, rot_factor=0.0, rot_prob=0.0, shift_mode="none"),
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
    """mmpose 0.x half body: centre/scale of the upper- or lower-body keypoints' box, or None.

    Same rule as mmpose 0.x's ``TopDownHalfBodyTransform.half_body_transform`` and the HRNet
    authors' ``JointsDataset.half_body_transform``: the upper body when ``N(0, 1) < 0.5``
    (probability 0.69) and it has more than 2 visible keypoints, otherwise the lower body if it has
    more than 2, otherwise the upper body; at least 2 keypoints are needed. keypoints (K, 2),
    visible (K,); returns centre (2,), aspect-fixed scale (2,) times ``padding``.
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


def select_half_body_1x(
    rng: np.random.Generator, cfg: AugmentConfig, visible: np.ndarray,
    upper_ids: tuple[int, ...], lower_ids: tuple[int, ...],
) -> list[int] | None:
    """mmpose 1.x ``RandomHalfBody._random_select_half_body`` for one instance: the keypoint ids
    whose box replaces the person box, or None (no half body). visible: (K,)."""
    vis = np.asarray(visible) > 0
    if vis.sum() <= cfg.half_body_min_kpts or rng.random() > cfg.half_body_prob:
        return None
    upper = [i for i in upper_ids if vis[i]]
    lower = [i for i in lower_ids if vis[i]]
    prefer_upper = rng.random() < cfg.half_body_upper_prob
    few_upper, few_lower = len(upper) < cfg.half_body_min_upper, len(lower) < cfg.half_body_min_lower
    if few_upper and few_lower:
        return None
    if few_lower:
        return upper
    if few_upper:
        return lower
    return upper if prefer_upper else lower


def truncated_normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size,) draws of a standard normal truncated to [-1, 1] (scipy's ``truncnorm(-1, 1)``, which
    mmpose 1.x's ``RandomBBoxTransform`` uses), by rejection from ``rng.standard_normal``."""
    out = np.empty(0)
    while out.size < size:
        z = rng.standard_normal(2 * size + 4)
        out = np.concatenate([out, z[np.abs(z) <= 1.0]])
    return out[:size]


def sample_scale_rotation(rng: np.random.Generator, cfg: AugmentConfig) -> tuple[float, float]:
    """(scale multiplier, rotation in degrees) of one sample under ``cfg.convention``."""
    sf, rf = cfg.scale_factor, cfg.rot_factor
    if cfg.convention == "mmpose0x":
        mult = float(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
        rot = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf)) if rng.random() < cfg.rot_prob else 0.0
        return mult, rot
    t_scale, t_rot = truncated_normal(rng, 2)
    mult = 1.0 + sf * float(t_scale)  # mmpose 1.x scale_prob is 1.0 in every config we follow
    rot = rf * float(t_rot) if rng.random() < cfg.rot_prob else 0.0
    return mult, rot


def sample_box_shift_1x(rng: np.random.Generator, cfg: AugmentConfig, scale: np.ndarray) -> np.ndarray:
    """mmpose 1.x per-sample centre offset (2,): ``shift_factor * T * scale`` with ``shift_prob``,
    ``scale`` the (w, h) box before the aspect-ratio fix."""
    t = truncated_normal(rng, 2)
    if rng.random() < cfg.shift_prob:
        return t * cfg.shift_factor * np.asarray(scale, dtype=np.float64)
    return np.zeros(2)


def instance_shifts_0x(seed: int, bbox_wh: np.ndarray, cfg: AugmentConfig,
                       indices: list[int] | np.ndarray | None = None) -> np.ndarray:
    """mmpose 0.x ``_xywh2cs`` training shift, fixed per instance for the whole run: (N, 2) offsets.

    0.x draws it once when the dataset is built; here instance ``i`` draws from
    ``default_rng([seed, i, 0x5348, 1])`` (a stream no epoch uses), so the offset is the same in
    every epoch and after a resume. bbox_wh: (N, 2) unpadded box sizes; indices: (N,) instance
    indices (default ``0..N-1``).
    """
    bbox_wh = np.asarray(bbox_wh, dtype=np.float64).reshape(-1, 2)
    out = np.zeros_like(bbox_wh)
    if cfg.shift_mode != "per_instance" or cfg.shift_prob == 0:
        return out
    indices = np.arange(len(bbox_wh)) if indices is None else np.asarray(indices)
    for row, i in enumerate(indices):
        rng = np.random.default_rng([int(seed), int(i), 0x5348, 1])
        if rng.random() < cfg.shift_prob:
            out[row] = cfg.shift_factor * rng.uniform(-1.0, 1.0, size=2) * bbox_wh[row]
    return out


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
    """Draw flip, half body, box shift (mmpose 1.x), scale, rotation (the sources' order) for one instance.

    Args:
        keypoints: (K, 2) image coordinates; visible: (K,) 0/1.
        center, scale: (2,) the padded box (its aspect ratio need not be fixed yet; mmpose 1.x
            shifts relative to the box before the fix).
    Returns:
        (center, scale, rot, flipped, keypoints, visible), ``scale`` with the input's aspect
        ratio; the keypoints/visibility flipped and centre mirrored when ``flipped``; the image
        itself is flipped later inside the warp (``flip_matrix``), which avoids copying it.
    """
    center = np.asarray(center, dtype=np.float64).copy()
    scale = np.asarray(scale, dtype=np.float64).copy()
    flipped = bool(rng.random() < cfg.flip_prob)
    if flipped:
        keypoints, visible = flip_keypoints(keypoints, visible, image_width, flip_indices)
        center[0] = image_width - 1 - center[0]
    if cfg.convention == "mmpose0x":
        if (visible > 0).sum() > cfg.half_body_min_kpts and rng.random() < cfg.half_body_prob:
            hb = half_body_box(keypoints, visible, upper_ids, lower_ids, rng, aspect_ratio, cfg.half_body_padding)
            if hb is not None:
                center, scale = hb
    else:
        ids = select_half_body_1x(rng, cfg, visible, upper_ids, lower_ids)
        if ids is not None:
            pts = np.asarray(keypoints, dtype=np.float64)[ids]
            center, scale = pts.mean(axis=0), (pts.max(axis=0) - pts.min(axis=0)) * cfg.half_body_padding
    if cfg.shift_mode == "per_sample":
        center = center + sample_box_shift_1x(rng, cfg, scale)
    mult, rot = sample_scale_rotation(rng, cfg)
    scale = fix_aspect_ratio(scale * mult, aspect_ratio)
    return center, scale, rot, flipped, keypoints, visible


def warp_image(img: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Bilinear affine warp (H, W, C) -> (out_h, out_w, C), zero border (as mmpose)."""
    return cv2.warpAffine(img, matrix.astype(np.float64), (int(output_size[0]), int(output_size[1])),
                          flags=cv2.INTER_LINEAR)
