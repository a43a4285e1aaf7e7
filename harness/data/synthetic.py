"""Procedural synthetic crowds: COCO-format person-keypoint data that needs no download and no GPU.

Every image is drawn from its own random generator seeded by ``(seed, split, index)``, so the data is
bit-identical for a given config whatever the worker count or generation order. Figures are articulated
2D stick-people with the 17 COCO keypoints (human limb proportions, sampled joint angles, body yaw that
decides which side faces the camera), drawn over textured clutter, several per image and overlapping.

On-disk layout (a contract: the COCO loaders read it as they read COCO)::

    <root>/annotations/person_keypoints_<split>.json   COCO keypoints annotation file
    <root>/<split>/<image_id:012d>.jpg                  the images
    <root>/detections/val_person_dets.json              COCO detection results for `val` (jittered GT + FPs)
    <root>/meta.json                                    generator version + config: the cache key, written last

Visibility rule (COCO semantics, made exact here):

* ``v=2`` (visible): the keypoint's pixel is owned by the person itself in the final per-pixel owner map
  (people are rendered back to front; the owner of a pixel is the last person drawn over it).
* ``v=1`` (labeled, occluded): the pixel is owned by a person drawn later, *and* some visible pixel of the
  person lies within ``hidden_radius * person height`` of it, so an annotator could still infer it.
* ``v=0``, ``(x, y) = (0, 0)`` (unlabeled): outside the image; occluded with no visible own pixel within
  that radius (buried deep under others); or a face keypoint (nose/eyes/ears) on the far side of the head
  (self-occlusion: nobody labels the eyes of a person seen from behind).

Boxes are the person's full drawn (amodal) extent clipped to the image, so they enclose every labeled
keypoint; ``area`` is the pixel count of the person's *visible* mask and ``segmentation`` its outline
polygons. A person none of whose pixels stays visible is not annotated at all.
"""
from __future__ import annotations

import colorsys
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import cv2
import numpy as np

from harness.data.metainfo import COCO_META
from harness.io import atomic_write_bytes, atomic_write_png, read_marker, write_marker
from harness.report.poses import draw_skeletons

log = logging.getLogger(__name__)

#: Bump whenever the drawing or annotation logic changes: it is part of the cache key.
GENERATOR_VERSION = 1

SPLITS: tuple[str, ...] = ("train", "val", "occluded")
#: Image ids are ``base + index`` so that ids never collide across splits.
SPLIT_ID_BASE: dict[str, int] = {"train": 1_000_000, "val": 2_000_000, "occluded": 3_000_000}
MAX_IMAGES_PER_SPLIT = 999_999
MAX_PEOPLE_PER_IMAGE = 20  # annotation id = image_id * 100 + person slot

KEYPOINT_NAMES: tuple[str, ...] = COCO_META.keypoint_names
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
#: COCO person skeleton, 1-based keypoint indices as in the COCO annotation files.
SKELETON: list[list[int]] = [[a + 1, b + 1] for a, b in COCO_META.skeleton]
PERSON_CATEGORY: dict[str, Any] = {
    "supercategory": "person", "id": 1, "name": "person",
    "keypoints": list(KEYPOINT_NAMES), "skeleton": SKELETON,
}

_NOSE, _LEYE, _REYE, _LEAR, _REAR = 0, 1, 2, 3, 4
_LSHO, _RSHO, _LELB, _RELB, _LWRI, _RWRI = 5, 6, 7, 8, 9, 10
_LHIP, _RHIP, _LKNE, _RKNE, _LANK, _RANK = 11, 12, 13, 14, 15, 16

# Body proportions in units of the person's standing height (head top to ankle), close to the usual
# artist's canon (head ~1/7.5 of height, legs ~half): plausible limb lengths for the keypoint model.
_HEAD_R = 0.065
_NECK = 0.03
_TORSO = 0.30
_SHOULDER_HALF = 0.11
_HIP_HALF = 0.075
_UPPER_ARM = 0.17
_FOREARM = 0.15
_THIGH = 0.245
_SHIN = 0.245
# Face points as (lateral, forward, up) in head radii: lateral > 0 is the person's left.
_FACE = {
    _NOSE: (0.0, 1.0, -0.15),
    _LEYE: (0.38, 0.88, 0.2), _REYE: (-0.38, 0.88, 0.2),
    _LEAR: (0.95, -0.05, 0.05), _REAR: (-0.95, -0.05, 0.05),
}
# A face point is self-occluded once it turns this far (in head radii) behind the head's centre plane.
_FACE_HIDDEN_DEPTH = -0.2
# |cos(yaw)| stays above cos(1.2) ~ 0.36: pure profiles make left/right shoulders coincide, which no
# model (and no annotator) can resolve, so they would only add label noise to a tiny demo.
_MAX_YAW_OFFSET = 1.2


def _as_pair(value: Any, name: str, kind: type) -> tuple:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"SynthConfig.{name} must be a pair (a, b), got {value!r}") from None
    if kind is int:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (a, b)):
            raise ValueError(f"SynthConfig.{name} must hold integers, got {value!r}")
        return int(a), int(b)
    if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in (a, b)):
        raise ValueError(f"SynthConfig.{name} must hold numbers, got {value!r}")
    return float(a), float(b)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the generated data (the whole object is the cache key).

    Sizes are (H, W) in pixels; ranges are inclusive ``(min, max)``; person heights are fractions of the
    image height. Invalid values raise ``ValueError`` naming the field.
    """

    seed: int = 0
    image_size: tuple[int, int] = (256, 256)
    num_images: Mapping[str, int] = field(
        default_factory=lambda: {"train": 1000, "val": 200, "occluded": 100})
    #: people per image in `train`/`val` (COCO-like: moderate overlap)
    people_per_image: tuple[int, int] = (2, 5)
    #: people per image in `occluded` (OCHuman-like: heavy overlap)
    occluded_people_per_image: tuple[int, int] = (2, 4)
    person_height: tuple[float, float] = (0.45, 0.9)
    occluded_person_height: tuple[float, float] = (0.55, 0.95)
    #: train/val: a new person is re-placed while its box IoU with anyone placed exceeds this
    max_overlap_iou: float = 0.3
    #: occluded: each new person is placed to overlap an earlier one with at least this box IoU
    min_occluded_iou: float = 0.5
    #: occluded joints with no visible own pixel within this fraction of body height are unlabeled
    hidden_radius: float = 0.12
    jpeg_quality: int = 90
    #: detection file: std of box centre/log-size jitter, relative to the box size
    det_jitter: float = 0.08
    #: detection file: mean number of false-positive boxes per image
    det_false_positives: float = 0.5

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass normalisation
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"SynthConfig.seed must be a non-negative integer, got {self.seed!r}")
        set_("seed", int(self.seed))
        h, w = _as_pair(self.image_size, "image_size", int)
        if not (64 <= h <= 4096 and 64 <= w <= 4096):
            raise ValueError(f"SynthConfig.image_size must be (H, W) with both sides in [64, 4096], "
                             f"got {self.image_size!r}")
        set_("image_size", (h, w))
        if not isinstance(self.num_images, Mapping):
            raise ValueError(f"SynthConfig.num_images must be a mapping split -> count, got {self.num_images!r}")
        unknown = sorted(set(self.num_images) - set(SPLITS))
        if unknown:
            raise ValueError(f"SynthConfig.num_images has unknown split(s) {unknown}; known: {list(SPLITS)}")
        counts = {}
        for split in SPLITS:
            n = self.num_images.get(split, 0)
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n <= MAX_IMAGES_PER_SPLIT:
                raise ValueError(f"SynthConfig.num_images[{split!r}] must be an integer in "
                                 f"[0, {MAX_IMAGES_PER_SPLIT}], got {n!r}")
            counts[split] = int(n)
        if not any(counts.values()):
            raise ValueError("SynthConfig.num_images must ask for at least one image")
        set_("num_images", counts)
        for name in ("people_per_image", "occluded_people_per_image"):
            lo, hi = _as_pair(getattr(self, name), name, int)
            if not 1 <= lo <= hi <= MAX_PEOPLE_PER_IMAGE:
                raise ValueError(f"SynthConfig.{name} must satisfy 1 <= min <= max <= "
                                 f"{MAX_PEOPLE_PER_IMAGE}, got {(lo, hi)!r}")
            set_(name, (lo, hi))
        for name in ("person_height", "occluded_person_height"):
            lo, hi = _as_pair(getattr(self, name), name, float)
            if not 0.1 <= lo <= hi <= 1.5:
                raise ValueError(f"SynthConfig.{name} must satisfy 0.1 <= min <= max <= 1.5 "
                                 f"(fractions of image height), got {(lo, hi)!r}")
            set_(name, (lo, hi))
        if min(h, w) * self.person_height[0] < 48 or min(h, w) * self.occluded_person_height[0] < 48:
            raise ValueError(f"SynthConfig.person_height: the smallest person would be under 48 px tall at "
                             f"image_size={self.image_size}; figures that small cannot show their joints")
        for name, lo, hi in (("max_overlap_iou", 0.0, 1.0), ("min_occluded_iou", 0.0, 1.0),
                             ("hidden_radius", 0.0, 1.0), ("det_jitter", 0.0, 0.5),
                             ("det_false_positives", 0.0, 10.0)):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.number)) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"SynthConfig.{name} must be a number in [{lo}, {hi}], got {v!r}")
            set_(name, float(v))
        q = self.jpeg_quality
        if not isinstance(q, (int, np.integer)) or isinstance(q, bool) or not 50 <= q <= 100:
            raise ValueError(f"SynthConfig.jpeg_quality must be an integer in [50, 100], got {q!r}")
        set_("jpeg_quality", int(q))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists) that round-trips through :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        d["num_images"] = dict(self.num_images)
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SynthConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SynthConfig: unknown field(s) {unknown}")
        return cls(**dict(d))


# ----------------------------------------------------------------------------------------------------
# Rendering one image
# ----------------------------------------------------------------------------------------------------

@dataclass
class SynthPerson:
    """One rendered person. ``keypoints`` is (17, 3) int64 ``x, y, v`` exactly as written to COCO."""

    keypoints: np.ndarray
    bbox: tuple[float, float, float, float]
    area: int
    amodal_area: int
    height_px: float
    #: (17,) bool: unlabeled because the face point is on the far side of the head
    self_hidden: np.ndarray
    segmentation: list[list[float]]
    #: slot in drawing order among *all* people drawn (the value used in the owner map)
    slot: int


@dataclass
class SynthImage:
    """A rendered image: ``image`` (H, W, 3) uint8 BGR; ``owner`` (H, W) int16, the draw slot of the person
    that owns each pixel or -1 for background; ``people`` in drawing order (back to front)."""

    image: np.ndarray
    owner: np.ndarray
    people: list[SynthPerson]


def _rng(seed: int, tag: str, index: int) -> np.random.Generator:
    # crc32 of the tag: a stable split code (Python's hash() is salted per process).
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(tag.encode()), index]))


def _unit(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from image-up, turning clockwise on screen (y points down)."""
    return np.array([math.sin(angle), -math.cos(angle)])


def _rot(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


@dataclass
class _Figure:
    """A posed figure in person-local pixel coordinates (mid-hip at the origin) plus how to draw it."""

    kp: np.ndarray            # (17, 2) float
    self_hidden: np.ndarray   # (17,) bool
    head_c: np.ndarray        # (2,)
    head_r: float
    height: float
    yaw: float
    thickness: int
    colours: dict[str, tuple[int, int, int]]

    def __post_init__(self) -> None:
        pad = self.thickness
        pts = np.vstack([self.kp, self.head_c - self.head_r, self.head_c + self.head_r])
        lo, hi = pts.min(0) - pad, pts.max(0) + pad
        self._extent = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    def extent(self) -> tuple[float, float, float, float]:
        """Approximate (x0, y0, x1, y1) of the drawing, used for placement before rendering."""
        return self._extent


def _random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.35, 1.0),
                   val: tuple[float, float] = (0.3, 0.95)) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*sat), rng.uniform(*val))
    return np.array([b * 255, g * 255, r * 255])  # OpenCV order


def _tint(c: np.ndarray, towards: float, amount: float) -> tuple[int, int, int]:
    return tuple(int(round(x)) for x in (c * (1 - amount) + towards * amount))


def _sample_figure(rng: np.random.Generator, height: float) -> _Figure:
    """Sample a plausible pose: torso lean, yaw (front/back/three-quarter), arm and leg angles."""
    u = rng.uniform
    prop = rng.normal(1.0, 0.05, size=9).clip(0.85, 1.15)  # per-person body proportions
    width = u(0.85, 1.2)
    H = height

    # Yaw: cos > 0 faces the camera (person's left appears on the image right), cos < 0 shows the back.
    facing_back = u() < 0.4
    yaw = (math.pi if facing_back else 0.0) + u(-_MAX_YAW_OFFSET, _MAX_YAW_OFFSET)
    cy, sy = math.cos(yaw), math.sin(yaw)

    lean = rng.normal(0.0, 0.12) if u() < 0.85 else u(-0.9, 0.9)
    up_t = _unit(lean)
    lat_t = np.array([-up_t[1], up_t[0]])  # image-right for an upright torso
    down_t = -up_t

    kp = np.zeros((NUM_KEYPOINTS, 2))
    neck = up_t * _TORSO * prop[0] * H
    for side, (sho, hip) in ((1.0, (_LSHO, _LHIP)), (-1.0, (_RSHO, _RHIP))):
        kp[sho] = neck + lat_t * side * cy * _SHOULDER_HALF * width * H
        kp[hip] = lat_t * side * cy * _HIP_HALF * width * H

    def limb(start: np.ndarray, outward: np.ndarray, abduct: float, bend: float,
             l1: float, l2: float) -> tuple[np.ndarray, np.ndarray]:
        d1 = math.cos(abduct) * down_t + math.sin(abduct) * outward
        # Out-of-plane limbs look shorter: foreshorten some of them.
        f1 = u(0.7, 1.0) if u() < 0.3 else 1.0
        f2 = u(0.7, 1.0) if u() < 0.3 else 1.0
        mid = start + d1 * l1 * f1
        return mid, mid + _rot(d1, bend) * l2 * f2

    sgn = 1.0 if cy >= 0 else -1.0
    for i, (side, sho, elb, wri) in enumerate(((1.0, _LSHO, _LELB, _LWRI), (-1.0, _RSHO, _RELB, _RWRI))):
        outward = lat_t * side * sgn
        abduct = u(0.05, 0.8) if u() < 0.6 else u(0.8, 2.8)
        bend = u(0.0, 2.3) * (1 if u() < 0.5 else -1)
        kp[elb], kp[wri] = limb(kp[sho], outward, abduct, bend,
                                _UPPER_ARM * prop[1 + i] * H, _FOREARM * prop[3 + i] * H)
    for i, (side, hip, kne, ank) in enumerate(((1.0, _LHIP, _LKNE, _LANK), (-1.0, _RHIP, _RKNE, _RANK))):
        outward = lat_t * side * sgn
        abduct = rng.normal(0.12, 0.12) if u() < 0.75 else u(-0.5, 1.0)
        bend = (u(0.0, 0.3) if u() < 0.7 else u(0.3, 1.8)) * (1 if u() < 0.5 else -1)
        kp[kne], kp[ank] = limb(kp[hip], outward, abduct, bend,
                                _THIGH * prop[5 + i] * H, _SHIN * prop[7 + i] * H)

    # Head: a sphere on the neck; face points are rotated by yaw and hidden once behind the head.
    up_h = _rot(up_t, rng.normal(0.0, 0.2))
    lat_h = np.array([-up_h[1], up_h[0]])
    head_r = _HEAD_R * H
    head_c = neck + up_h * (_NECK * H + head_r)
    self_hidden = np.zeros(NUM_KEYPOINTS, bool)
    for j, (lat, fwd, vert) in _FACE.items():
        x = lat * cy + fwd * sy
        depth = -lat * sy + fwd * cy
        kp[j] = head_c + head_r * (x * lat_h + vert * up_h)
        self_hidden[j] = depth < _FACE_HIDDEN_DEPTH

    colours = {
        "shirt": _random_colour(rng), "pants": _random_colour(rng),
        "skin": _random_colour(rng, sat=(0.2, 0.6), val=(0.45, 0.95)),
        "hair": _random_colour(rng, sat=(0.2, 0.8), val=(0.05, 0.35)),
    }
    thickness = max(2, int(round(H * u(0.035, 0.06))))
    return _Figure(kp, self_hidden, head_c, head_r, H, yaw, thickness, colours)


def _draw_figure(fig: _Figure, offset: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Draw ``fig`` shifted by ``offset`` onto ``image`` (colour) and ``mask`` (1 = drawn).

    Returns the (17, 2) int keypoints actually used. Every non-self-hidden keypoint gets a joint marker
    drawn at exactly its pixel, so a labeled keypoint always lies on the person's own mask.
    """
    kp = np.rint(fig.kp + offset).astype(np.int64)
    head_c = tuple(int(v) for v in np.rint(fig.head_c + offset))
    head_r = max(3, int(round(fig.head_r)))
    t = fig.thickness
    jr = max(2, int(round(t * 0.6)))
    col = fig.colours
    # Left limbs lighter, right limbs darker: the cue that makes left/right learnable under flips.
    shades = {"L": (255.0, 0.45), "R": (0.0, 0.3)}

    def line(a: int, b: int, c: tuple[int, int, int], w: int) -> None:
        p, q = tuple(map(int, kp[a])), tuple(map(int, kp[b]))
        cv2.line(image, p, q, c, w, cv2.LINE_AA)
        cv2.line(mask, p, q, 1, w, cv2.LINE_8)

    def circle(centre: tuple[int, int], r: int, c: tuple[int, int, int]) -> None:
        cv2.circle(image, centre, r, c, -1, cv2.LINE_AA)
        cv2.circle(mask, centre, r, 1, -1, cv2.LINE_8)

    def side(s: str) -> None:
        towards, amount = shades[s]
        arm_c, leg_c = _tint(col["shirt"], towards, amount), _tint(col["pants"], towards, amount)
        fore_c = _tint(col["skin"], towards, amount * 0.6)
        joint_c = _tint(col["pants"], towards, amount * 0.5)
        sho, elb, wri, hip, kne, ank = ((_LSHO, _LELB, _LWRI, _LHIP, _LKNE, _LANK) if s == "L"
                                        else (_RSHO, _RELB, _RWRI, _RHIP, _RKNE, _RANK))
        line(hip, kne, leg_c, t + 1)
        line(kne, ank, leg_c, t)
        line(sho, elb, arm_c, t)
        line(elb, wri, fore_c, max(2, t - 1))
        for j in (sho, elb, wri, hip, kne, ank):
            circle(tuple(map(int, kp[j])), jr, joint_c)

    # Depth order: the side turned away from the camera first, then torso and head, then the near side.
    far, near = ("L", "R") if math.sin(fig.yaw) > 0 else ("R", "L")
    side(far)
    torso = kp[[_LSHO, _RSHO, _RHIP, _LHIP]].astype(np.int32)
    centre = torso.mean(0)
    torso = np.rint(centre + (torso - centre) * 1.12).astype(np.int32)  # a bit of flesh around the joints
    cv2.fillConvexPoly(image, torso, _tint(col["shirt"], 0.0, 0.0), cv2.LINE_AA)
    cv2.fillConvexPoly(mask, torso, 1, cv2.LINE_8)
    neck_pt = tuple(int(v) for v in np.rint((kp[_LSHO] + kp[_RSHO]) / 2))
    cv2.line(image, neck_pt, head_c, _tint(col["skin"], 0.0, 0.15), max(2, t), cv2.LINE_AA)
    cv2.line(mask, neck_pt, head_c, 1, max(2, t), cv2.LINE_8)
    circle(head_c, head_r, _tint(col["skin"], 0.0, 0.0))
    if math.cos(fig.yaw) < 0:  # seen from behind: the back of the head is hair
        cv2.circle(image, head_c, max(2, head_r - 1), _tint(col["hair"], 0.0, 0.0), -1, cv2.LINE_AA)
    ear_c, eye_r = _tint(col["skin"], 0.0, 0.2), max(1, head_r // 6)
    face = {_NOSE: ((40, 40, 160), max(1, head_r // 5)), _LEYE: ((30, 30, 30), eye_r),
            _REYE: ((30, 30, 30), eye_r), _LEAR: (ear_c, max(2, head_r // 3)), _REAR: (ear_c, max(2, head_r // 3))}
    for j, (c, r) in face.items():
        if not fig.self_hidden[j]:
            circle(tuple(map(int, kp[j])), r, c)
    side(near)
    return kp


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes ``a`` (N, 4) and ``b`` (M, 4) in (x0, y0, x1, y1) -> (N, M)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _place_people(rng: np.random.Generator, cfg: SynthConfig, split: str) -> list[tuple[_Figure, np.ndarray]]:
    """Choose figures and their offsets. Returns [(figure, offset (2,))] in drawing order."""
    H, W = cfg.image_size
    occluded = split == "occluded"
    lo, hi = cfg.occluded_people_per_image if occluded else cfg.people_per_image
    h_lo, h_hi = cfg.occluded_person_height if occluded else cfg.person_height
    n = int(rng.integers(lo, hi + 1))
    placed: list[tuple[_Figure, np.ndarray]] = []
    boxes: list[np.ndarray] = []

    def random_offset(fig: _Figure) -> np.ndarray:
        x0, y0, x1, y1 = fig.extent()
        w, h = x1 - x0, y1 - y0
        # Keep the box centre inside the image with some margin: truncated people, but not mostly gone.
        cx = rng.uniform(min(0.3 * w, W / 2), max(W - 0.3 * w, W / 2))
        cy = rng.uniform(min(0.3 * h, H / 2), max(H - 0.3 * h, H / 2))
        return np.array([cx - (x0 + x1) / 2, cy - (y0 + y1) / 2])

    def box_at(fig: _Figure, off: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = fig.extent()
        return np.array([x0 + off[0], y0 + off[1], x1 + off[0], y1 + off[1]])

    for _ in range(n):
        if occluded and placed:
            # OCHuman-like: stand next to / in front of someone already there, at a similar scale.
            k = int(rng.integers(len(placed)))
            anchor = boxes[k]
            height = min(max(placed[k][0].height * rng.uniform(0.85, 1.15), h_lo * H), h_hi * H)
            fig = _sample_figure(rng, height)
            best, best_iou = None, -1.0
            for _attempt in range(12):
                aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
                x0, y0, x1, y1 = fig.extent()
                cx = (anchor[0] + anchor[2]) / 2 + rng.uniform(-0.3, 0.3) * aw
                cy = (anchor[1] + anchor[3]) / 2 + rng.uniform(-0.15, 0.15) * ah
                cx, cy = min(max(cx, 0.0), W - 1.0), min(max(cy, 0.0), H - 1.0)
                off = np.array([cx - (x0 + x1) / 2, cy - (y0 + y1) / 2])
                iou = float(_box_iou(box_at(fig, off), anchor)[0, 0])
                if iou > best_iou:
                    best, best_iou = off, iou
                if iou >= cfg.min_occluded_iou:
                    break
            off = best
        else:
            fig = _sample_figure(rng, rng.uniform(h_lo, h_hi) * H)
            off = None
            for _attempt in range(15):
                cand = random_offset(fig)
                if not boxes or (_box_iou(box_at(fig, cand), np.array(boxes)).max() <= cfg.max_overlap_iou
                                 or occluded):
                    off = cand
                    break
            if off is None:  # crowded already: drop this person rather than break the overlap target
                continue
        placed.append((fig, off))
        boxes.append(box_at(fig, off))
    return placed


def _background(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """Textured clutter (H, W, 3) uint8: smooth colour noise, optional stripes, blobs and stray lines."""
    u = rng.uniform
    gh, gw = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    base = _random_colour(rng, sat=(0.0, 0.7), val=(0.2, 0.9))
    grid = np.clip(base + rng.normal(0, u(15, 60), size=(gh, gw, 3)), 0, 255).astype(np.uint8)
    # Upsampling a tiny uint8 grid is the cheap way to smooth colour noise (float cubic is 25x slower).
    img = cv2.resize(grid, (W, H), interpolation=cv2.INTER_CUBIC)
    if u() < 0.5:
        ang, period = u(0, math.pi), u(6, 40)
        f = 2 * math.pi / period
        phase = (np.arange(W, dtype=np.float32)[None, :] * (f * math.cos(ang))
                 + np.arange(H, dtype=np.float32)[:, None] * (f * math.sin(ang)))
        stripes = np.sin(phase)[..., None] * rng.normal(0, 25, size=3).astype(np.float32)
        img = cv2.add(img, stripes, dtype=cv2.CV_8U)  # saturating
    for _ in range(int(rng.integers(2, 10))):
        c = tuple(int(v) for v in _random_colour(rng, sat=(0.0, 0.8), val=(0.1, 0.95)))
        centre = (int(u(0, W)), int(u(0, H)))
        axes = (int(u(4, W / 4)), int(u(4, H / 4)))
        if u() < 0.5:
            cv2.ellipse(img, centre, axes, u(0, 180), 0, 360, c, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (centre[0] - axes[0], centre[1] - axes[1]),
                          (centre[0] + axes[0], centre[1] + axes[1]), c, -1)
    # Stray limb-like strokes, so "any thick line" is not a reliable cue for a limb.
    for _ in range(int(rng.integers(0, 4))):
        c = tuple(int(v) for v in _random_colour(rng))
        p = (int(u(0, W)), int(u(0, H)))
        q = (int(p[0] + u(-W / 4, W / 4)), int(p[1] + u(-H / 4, H / 4)))
        cv2.line(img, p, q, c, int(rng.integers(1, 6)), cv2.LINE_AA)
    return img


def render_image(cfg: SynthConfig, split: str, index: int) -> SynthImage:
    """Render image ``index`` of ``split``: deterministic in (cfg, split, index) only."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    H, W = cfg.image_size
    rng = _rng(cfg.seed, split, index)
    image = _background(rng, H, W)
    owner = np.full((H, W), -1, np.int16)
    mask = np.zeros((H, W), np.uint8)
    drawn = []
    for slot, (fig, off) in enumerate(_place_people(rng, cfg, split)):
        mask.fill(0)
        kp = _draw_figure(fig, off, image, mask)
        x, y, w, h = cv2.boundingRect(mask)  # amodal extent, already clipped to the image
        if w == 0:
            continue
        roi = (slice(y, y + h), slice(x, x + w))
        owner[roi][mask[roi].view(bool)] = slot
        drawn.append((fig, kp, slot, cv2.countNonZero(mask[roi]), (x, y, w, h)))

    # Global contrast/brightness, grey sensor noise and occasional blur over the whole frame, people
    # included (uniform noise through saturating uint8 adds: a fraction of the cost of float noise).
    image = cv2.convertScaleAbs(image, alpha=rng.uniform(0.8, 1.15), beta=rng.uniform(-20, 20))
    k = int(rng.integers(2, 12))
    noise = cv2.cvtColor(rng.integers(0, 2 * k + 1, (H, W), dtype=np.uint8), cv2.COLOR_GRAY2BGR)
    image = cv2.subtract(cv2.add(image, noise), (k, k, k, 0))
    if rng.uniform() < 0.3:
        image = cv2.GaussianBlur(image, (3, 3), 0)

    people = []
    for fig, kp, slot, amodal_area, (x, y, w, h) in drawn:
        # Everything below is local to the person's box (plus the hidden-joint radius): every labeled
        # keypoint lies inside it, and whole-image passes per person would dominate the run time.
        rad = cfg.hidden_radius * fig.height
        pad = int(math.ceil(rad)) + 1
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(W, x + w + pad), min(H, y + h + pad)
        visible = (owner[y0:y1, x0:x1] == slot).view(np.uint8)
        area = cv2.countNonZero(visible)
        if area == 0:
            continue
        inside = (kp[:, 0] >= 0) & (kp[:, 0] < W) & (kp[:, 1] >= 0) & (kp[:, 1] < H)
        xc, yc = np.clip(kp[:, 0], 0, W - 1), np.clip(kp[:, 1], 0, H - 1)
        own = owner[yc, xc] == slot
        v = np.zeros(NUM_KEYPOINTS, np.int64)
        v[inside & own & ~fig.self_hidden] = 2
        occl = inside & ~own & ~fig.self_hidden
        if occl.any():
            # Distance from each pixel to the nearest visible pixel of this person (0 on them).
            dist = cv2.distanceTransform(1 - visible, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            near = dist[np.clip(yc - y0, 0, y1 - y0 - 1), np.clip(xc - x0, 0, x1 - x0 - 1)] <= rad
            v[occl & near] = 1
        out = np.zeros((NUM_KEYPOINTS, 3), np.int64)
        out[:, :2] = np.where((v > 0)[:, None], kp, 0)
        out[:, 2] = v
        contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                       offset=(x0, y0))
        seg = [c.reshape(-1).astype(float).tolist() for c in
               (cv2.approxPolyDP(c, 1.0, True) for c in contours) if len(c) >= 3]
        people.append(SynthPerson(
            keypoints=out, bbox=(float(x), float(y), float(w), float(h)),
            area=area, amodal_area=amodal_area, height_px=float(fig.height),
            self_hidden=fig.self_hidden.copy(), segmentation=seg, slot=slot))
    return SynthImage(image=image, owner=owner, people=people)


def _detections(cfg: SynthConfig, index: int, image_id: int, people: Sequence[SynthPerson]) -> list[dict]:
    """Detector-like boxes for one `val` image: every GT box jittered (score drops with occlusion) plus a
    Poisson number of low-score false positives. Own RNG stream, so the image pixels do not depend on it."""
    rng = _rng(cfg.seed, "val-dets", index)
    H, W = cfg.image_size
    dets = []
    j = cfg.det_jitter

    def clip_box(cx: float, cy: float, w: float, h: float) -> list[float]:
        x0, y0 = max(0.0, cx - w / 2), max(0.0, cy - h / 2)
        x1, y1 = min(float(W), cx + w / 2), min(float(H), cy + h / 2)
        return [round(x0, 2), round(y0, 2), round(max(1.0, x1 - x0), 2), round(max(1.0, y1 - y0), 2)]

    for p in people:
        x, y, w, h = p.bbox
        cx = x + w / 2 + rng.normal(0, j) * w
        cy = y + h / 2 + rng.normal(0, j) * h
        w2, h2 = w * math.exp(rng.normal(0, j)), h * math.exp(rng.normal(0, j))
        vis = p.area / max(p.amodal_area, 1)
        score = float(np.clip(0.98 - 0.5 * (1 - vis) + rng.normal(0, 0.03), 0.35, 0.999))
        dets.append({"image_id": image_id, "category_id": 1, "bbox": clip_box(cx, cy, w2, h2),
                     "score": round(score, 4)})
    for _ in range(int(rng.poisson(cfg.det_false_positives))):
        h = rng.uniform(0.2, 0.8) * H
        w = h * rng.uniform(0.3, 0.8)
        dets.append({"image_id": image_id, "category_id": 1,
                     "bbox": clip_box(rng.uniform(0, W), rng.uniform(0, H), w, h),
                     "score": round(float(rng.uniform(0.02, 0.3)), 4)})
    return dets


# ----------------------------------------------------------------------------------------------------
# Writing a dataset
# ----------------------------------------------------------------------------------------------------

_IMAGE_NAME = re.compile(r"^\d{12}\.jpg$")


def _atomic_write_json(path: Path, obj: Any, *, indent: int | None = None) -> None:
    sep = (",", ":") if indent is None else (",", ": ")
    atomic_write_bytes(path, json.dumps(obj, indent=indent, separators=sep).encode())


def image_id_for(split: str, index: int) -> int:
    return SPLIT_ID_BASE[split] + index


def _make_sample(cfg: SynthConfig, root: str, split: str, index: int) -> dict[str, Any]:
    """Render, encode and write one image; return its COCO records and statistics (worker entry point)."""
    H, W = cfg.image_size
    image_id = image_id_for(split, index)
    sample = render_image(cfg, split, index)
    ok, buf = cv2.imencode(".jpg", sample.image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {split} image {index}")
    file_name = f"{image_id:012d}.jpg"
    atomic_write_bytes(Path(root) / split / file_name, buf.tobytes(), durable=False)
    anns = []
    for k, p in enumerate(sample.people):
        anns.append({
            "id": image_id * 100 + k, "image_id": image_id, "category_id": 1,
            "bbox": list(p.bbox), "area": float(p.area), "iscrowd": 0,
            "segmentation": p.segmentation,
            "keypoints": [int(v) for v in p.keypoints.reshape(-1)],
            "num_keypoints": int((p.keypoints[:, 2] > 0).sum()),
        })
    v = np.array([p.keypoints[:, 2] for p in sample.people]).reshape(-1, NUM_KEYPOINTS)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (p.bbox for p in sample.people)]).reshape(-1, 4)
    if len(boxes) > 1:
        iou = _box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0)
        max_iou = float(iou.max(1).mean())
    else:
        max_iou = 0.0
    return {
        "image": {"id": image_id, "file_name": file_name, "width": W, "height": H},
        "annotations": anns,
        "detections": _detections(cfg, index, image_id, sample.people) if split == "val" else [],
        "stats": {"people": len(anns), "v2": int((v == 2).sum()), "v1": int((v == 1).sum()),
                  "max_iou": max_iou},
    }


def _sample_star(args: tuple) -> dict[str, Any]:
    return _make_sample(*args)


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core already; nested threads would only oversubscribe


def annotation_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / "annotations" / f"person_keypoints_{split}.json"


def detections_path(root: str | os.PathLike) -> Path:
    return Path(root) / "detections" / "val_person_dets.json"


def _meta_key(cfg: SynthConfig) -> dict[str, Any]:
    return {"generator": __name__, "version": GENERATOR_VERSION, "config": cfg.to_dict()}


def is_cached(root: str | os.PathLike, cfg: SynthConfig) -> bool:
    """True when ``root`` holds a complete dataset generated with exactly ``cfg`` by this generator version."""
    root = Path(root)
    if read_marker(root / "meta.json", _meta_key(cfg)) is None:  # the harness's one done-marker rule
        return False
    for split, n in cfg.num_images.items():
        if n == 0:
            continue
        if not annotation_path(root, split).is_file():
            return False
        try:
            found = sum(1 for e in os.scandir(root / split) if _IMAGE_NAME.match(e.name))
        except (FileNotFoundError, NotADirectoryError):
            return False
        if found != n:  # images deleted or added by hand since generation
            return False
    return cfg.num_images["val"] == 0 or detections_path(root).is_file()


def _iter_samples(cfg: SynthConfig, root: Path, split: str,
                  pool: ProcessPoolExecutor | None) -> Iterator[dict[str, Any]]:
    jobs = ((cfg, str(root), split, i) for i in range(cfg.num_images[split]))
    if pool is None:
        return map(_sample_star, jobs)
    return pool.map(_sample_star, jobs, chunksize=16)  # map() keeps index order: deterministic files


def _pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp
    # spawn, not fork: the parent may hold torch/OpenMP threads that a forked child would inherit broken.
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)


def _generate_split(cfg: SynthConfig, root: Path, split: str, pool: ProcessPoolExecutor | None,
                    progress: bool) -> dict[str, Any] | None:
    """(Re)write one split's images and annotation file; return its statistics (None if it is empty)."""
    from tqdm import tqdm

    split_dir = root / split
    annotation_path(root, split).unlink(missing_ok=True)
    if split_dir.is_dir():  # stale images of an older config; only names this generator writes
        for e in os.scandir(split_dir):
            if _IMAGE_NAME.match(e.name):
                os.unlink(e.path)
    n = cfg.num_images[split]
    if n == 0:
        return None
    split_dir.mkdir(exist_ok=True)
    images, anns, dets, stats = [], [], [], []
    for rec in tqdm(_iter_samples(cfg, root, split, pool), total=n, desc=f"synth {split}", unit="img",
                    disable=not progress, leave=False):
        images.append(rec["image"])
        anns.extend(rec["annotations"])
        dets.extend(rec["detections"])
        stats.append(rec["stats"])
    coco = {
        "info": {"description": f"hrbench synthetic crowds, split '{split}'",
                 "version": str(GENERATOR_VERSION), "seed": cfg.seed},
        "licenses": [], "images": images, "annotations": anns, "categories": [PERSON_CATEGORY],
    }
    _atomic_write_json(annotation_path(root, split), coco)
    if split == "val":
        _atomic_write_json(detections_path(root), dets)
    counts = {
        "images": n, "people": sum(s["people"] for s in stats),
        "v2": sum(s["v2"] for s in stats), "v1": sum(s["v1"] for s in stats),
        "mean_max_iou": round(float(np.mean([s["max_iou"] for s in stats])), 4),
    }
    log.info("synth %-8s %5d images, %5d people, visible joints %d, occluded joints %d, mean max-IoU %.3f",
             split, n, counts["people"], counts["v2"], counts["v1"], counts["mean_max_iou"])
    return counts


def generate(root: str | os.PathLike, cfg: SynthConfig | None = None, *, force: bool = False,
             progress: bool = True, workers: int = 1) -> dict[str, Any]:
    """Generate the dataset under ``root`` (reusing it when ``meta.json`` matches ``cfg`` unless ``force``).

    Returns ``{"root", "cached", "seconds", "images_per_second", "annotations": {split: path},
    "detections": path | None, "counts": {split: {"images", "people", "v2", "v1", "mean_max_iou"}}}``.
    Regeneration deletes ``meta.json`` first, so an interrupted run is never mistaken for a complete one,
    and removes only files that follow this generator's naming scheme.
    """
    cfg = cfg if cfg is not None else SynthConfig()
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    root = Path(root)
    ann_paths = {s: str(annotation_path(root, s)) for s in SPLITS if cfg.num_images[s]}
    det = str(detections_path(root)) if cfg.num_images["val"] else None
    if not force and is_cached(root, cfg):
        meta = json.loads((root / "meta.json").read_text())
        log.info("synthetic data in %s is up to date (seed %d); reusing it", root, cfg.seed)
        return {"root": str(root), "cached": True, "seconds": 0.0, "images_per_second": None,
                "annotations": ann_paths, "detections": det, "counts": meta.get("counts", {})}

    root.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").unlink(missing_ok=True)
    for sub in ("annotations", "detections"):
        (root / sub).mkdir(exist_ok=True)
    detections_path(root).unlink(missing_ok=True)
    t0 = time.perf_counter()
    counts: dict[str, dict[str, Any]] = {}
    total = 0
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(_pool(workers)) if workers > 1 else None
        for split in SPLITS:
            n = _generate_split(cfg, root, split, pool, progress)
            if n is not None:
                counts[split] = n
                total += n["images"]
    seconds = time.perf_counter() - t0
    # Last: marks the dataset complete. The key's fields are repeated at the top level for readers.
    write_marker(root / "meta.json", _meta_key(cfg), {**_meta_key(cfg), "counts": counts, "seconds": round(seconds, 3)})
    ips = total / seconds if seconds > 0 else float("inf")
    log.info("synthetic data written to %s: %d images in %.1f s (%.0f images/s, %d worker(s))",
             root, total, seconds, ips, workers)
    return {"root": str(root), "cached": False, "seconds": seconds, "images_per_second": ips,
            "annotations": ann_paths, "detections": det, "counts": counts}


def ensure_synthetic(root: str | os.PathLike, cfg: SynthConfig | None = None, *, progress: bool = True,
                     workers: int = 1) -> Path:
    """Return ``root`` after making sure it holds the dataset for ``cfg`` (generated only when missing/stale)."""
    generate(root, cfg, force=False, progress=progress, workers=workers)
    return Path(root)


# ----------------------------------------------------------------------------------------------------
# Preview
# ----------------------------------------------------------------------------------------------------

def write_preview(root: str | os.PathLike, out_path: str | os.PathLike, *, split: str = "val",
                  num: int = 8, cols: int = 4) -> Path:
    """Tile the first ``num`` images of ``split`` with their GT skeletons, read back from the files on disk.

    Legend: boxes white; limbs and visible joints in the body-side colours of every harness figure
    (:data:`harness.report.poses.SIDE_COLORS`); occluded (v=1) joints as red rings.
    """
    root = Path(root)
    coco = json.loads(annotation_path(root, split).read_text())
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    tiles = []
    for img in coco["images"][:num]:
        path = root / split / img["file_name"]
        im = cv2.imread(str(path))
        if im is None:
            raise FileNotFoundError(f"cannot read image {path}")
        anns = by_image.get(img["id"], [])
        for a in anns:
            x, y, w, h = a["bbox"]
            cv2.rectangle(im, (int(x), int(y)), (int(x + w - 1), int(y + h - 1)), (255, 255, 255), 1)
        if anns:
            kp = np.array([a["keypoints"] for a in anns], float).reshape(len(anns), -1, 3)  # (N, 17, 3)
            draw_skeletons(im, kp[..., :2], kp[..., 2] > 0, COCO_META, hollow=kp[..., 2] == 1)
        tiles.append(im)
    if not tiles:
        raise ValueError(f"split {split!r} under {root} has no images to preview")
    H, W = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    grid = np.zeros((rows * H, min(cols, len(tiles)) * W, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * H:(r + 1) * H, c * W:(c + 1) * W] = t
    return atomic_write_png(out_path, grid)
