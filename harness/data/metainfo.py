"""Dataset metadata: keypoint names, flip pairs, OKS sigmas, joint weights, body halves, skeleton.

COCO and OCHuman share COCO's 17 keypoints (OCHuman is annotated in COCO's format); CrowdPose has
14 keypoints and its own sigmas. The numbers are the ones published with each dataset (COCO keypoint
evaluation page; CrowdPose, Li et al., CVPR 2019) and used by the mmpose configs the HRNet, HRFormer
and HRNeXt papers trained with.

Any other COCO-format set can be described with :func:`meta_from_dict` (e.g. a JSON file passed to
``build_dataset(..., meta=...)``), or inferred from its annotation file's ``categories`` entry by
:func:`meta_from_coco_categories` (flip pairs from ``left_*``/``right_*`` names; sigmas must then
be given unless the keypoints are exactly COCO's).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.errors import DataError, MissingFileError

__all__ = [
    "DatasetMeta",
    "COCO_META",
    "OCHUMAN_META",
    "CROWDPOSE_META",
    "get_meta",
    "meta_from_dict",
    "meta_from_coco_categories",
    "KNOWN_DATASETS",
]


def _side(name: str) -> str:
    n = name.lower()
    if n.startswith("left") or n.startswith("l_"):
        return "left"
    if n.startswith("right") or n.startswith("r_"):
        return "right"
    return "center"


@dataclass(frozen=True)
class DatasetMeta:
    """Everything the pipeline needs to know about a keypoint layout.

    Attributes:
        name: dataset name (``coco``, ``ochuman``, ``crowdpose`` or a user name).
        keypoint_names: K names, in annotation order.
        flip_pairs: (left, right) index pairs swapped by a horizontal flip.
        sigmas: (K,) OKS per-keypoint sigmas (COCO convention, e.g. 0.026 for the nose).
        joint_weights: (K,) loss weights per keypoint.
        upper_body_ids / lower_body_ids: keypoint indices for the half-body augmentation.
        skeleton: (a, b) index pairs for drawing.
        iou_type: ``keypoints`` (COCO eval) or ``keypoints_crowd`` (CrowdPose eval).
        use_area: whether COCO eval normalises OKS with the GT ``area`` (False for CrowdPose,
            as in mmpose's CrowdPose configs; then the GT box area is used).
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    joint_weights: tuple[float, ...]
    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    iou_type: str = "keypoints"
    use_area: bool = True
    _flip_indices: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        if k == 0:
            raise DataError(f"DatasetMeta({self.name!r}).keypoint_names: must not be empty")
        if len(set(self.keypoint_names)) != k:
            raise DataError(f"DatasetMeta({self.name!r}).keypoint_names: duplicate names")
        for fname in ("sigmas", "joint_weights"):
            vals = getattr(self, fname)
            if len(vals) != k:
                raise DataError(
                    f"DatasetMeta({self.name!r}).{fname}: has {len(vals)} values, expected {k} "
                    f"(one per keypoint)"
                )
            if any(not np.isfinite(v) or v <= 0 for v in vals):
                raise DataError(f"DatasetMeta({self.name!r}).{fname}: values must be finite and > 0")
        seen: set[int] = set()
        for fname in ("flip_pairs", "skeleton"):
            for pair in getattr(self, fname):
                if len(pair) != 2 or not all(0 <= int(i) < k for i in pair):
                    raise DataError(
                        f"DatasetMeta({self.name!r}).{fname}: pair {pair!r} out of range 0..{k - 1}"
                    )
        for a, b in self.flip_pairs:
            if a == b or a in seen or b in seen:
                raise DataError(
                    f"DatasetMeta({self.name!r}).flip_pairs: index used twice or paired with itself "
                    f"in {(a, b)!r}"
                )
            seen.update((a, b))
        for fname in ("upper_body_ids", "lower_body_ids"):
            if not all(0 <= int(i) < k for i in getattr(self, fname)):
                raise DataError(f"DatasetMeta({self.name!r}).{fname}: index out of range 0..{k - 1}")
        if self.iou_type not in ("keypoints", "keypoints_crowd"):
            raise DataError(
                f"DatasetMeta({self.name!r}).iou_type: {self.iou_type!r} is not one of "
                f"'keypoints', 'keypoints_crowd'"
            )
        idx = list(range(k))
        for a, b in self.flip_pairs:
            idx[a], idx[b] = b, a
        object.__setattr__(self, "_flip_indices", tuple(idx))

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_indices(self) -> tuple[int, ...]:
        """(K,) permutation: flipped[k] = original[flip_indices[k]]."""
        return self._flip_indices

    @property
    def sigmas_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)

    @property
    def joint_weights_array(self) -> np.ndarray:
        return np.asarray(self.joint_weights, dtype=np.float32)

    def side(self, k: int) -> str:
        """``left``/``right``/``center`` from the keypoint name (for drawing colours)."""
        return _side(self.keypoint_names[k])

    @property
    def skeleton_sides(self) -> tuple[str, ...]:
        """Body side of each skeleton link: ``left``/``right`` if both ends are, else ``center``."""
        out = []
        for a, b in self.skeleton:
            sa, sb = self.side(a), self.side(b)
            out.append(sa if sa == sb and sa != "center" else "center")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keypoint_names": list(self.keypoint_names),
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "sigmas": list(self.sigmas),
            "joint_weights": list(self.joint_weights),
            "upper_body_ids": list(self.upper_body_ids),
            "lower_body_ids": list(self.lower_body_ids),
            "skeleton": [list(p) for p in self.skeleton],
            "iou_type": self.iou_type,
            "use_area": self.use_area,
        }

    def with_name(self, name: str) -> "DatasetMeta":
        import dataclasses

        return dataclasses.replace(self, name=name)


_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# 1-based skeleton from the COCO annotation files, converted to 0-based.
_COCO_SKELETON_1 = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)

COCO_META = DatasetMeta(
    name="coco",
    keypoint_names=_COCO_NAMES,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
    joint_weights=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5),
    upper_body_ids=tuple(range(11)),
    lower_body_ids=tuple(range(11, 17)),
    skeleton=tuple((a - 1, b - 1) for a, b in _COCO_SKELETON_1),
)

OCHUMAN_META = COCO_META.with_name("ochuman")

CROWDPOSE_META = DatasetMeta(
    name="crowdpose",
    keypoint_names=(
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "top_head", "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
            0.079, 0.079),
    # CrowdPose's published joint weights (as in mmpose's dataset info).
    joint_weights=(0.2, 0.2, 0.2, 1.3, 1.5, 0.2, 1.3, 1.5, 0.2, 0.2, 0.5, 0.2, 0.2, 0.5),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
    lower_body_ids=(6, 7, 8, 9, 10, 11),
    skeleton=((10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1), (0, 2), (1, 3),
              (2, 4), (3, 5), (12, 13), (1, 13), (0, 13)),
    iou_type="keypoints_crowd",
    use_area=False,
)

KNOWN_DATASETS: dict[str, DatasetMeta] = {
    "coco": COCO_META,
    "ochuman": OCHUMAN_META,
    "crowdpose": CROWDPOSE_META,
}


def get_meta(name: str) -> DatasetMeta:
    """Metadata of a built-in dataset (``coco``, ``ochuman``, ``crowdpose``)."""
    try:
        return KNOWN_DATASETS[name.lower()]
    except KeyError:
        raise DataError(
            f"dataset {name!r}: unknown; built-in datasets are {sorted(KNOWN_DATASETS)} "
            f"(for another COCO-format set pass its metadata)"
        ) from None


def meta_from_dict(d: dict[str, Any] | str | Path) -> DatasetMeta:
    """Build a :class:`DatasetMeta` from a dict or a JSON file with the fields of ``to_dict``."""
    if isinstance(d, (str, Path)):
        path = Path(d)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise MissingFileError(f"dataset metadata file {path}: not found") from None
        except json.JSONDecodeError as e:
            raise DataError(f"dataset metadata file {path}: not valid JSON ({e})") from None
    required = ("name", "keypoint_names", "sigmas")
    for key in required:
        if key not in d:
            raise DataError(f"dataset metadata: missing field {key!r}")
    k = len(d["keypoint_names"])
    names = tuple(d["keypoint_names"])
    flip = d.get("flip_pairs")
    if flip is None:
        flip = _infer_flip_pairs(names)
    upper = d.get("upper_body_ids")
    lower = d.get("lower_body_ids")
    if upper is None or lower is None:
        upper, lower = tuple(range(k)), ()
    return DatasetMeta(
        name=str(d["name"]),
        keypoint_names=names,
        flip_pairs=tuple(tuple(int(i) for i in p) for p in flip),
        sigmas=tuple(float(s) for s in d["sigmas"]),
        joint_weights=tuple(float(w) for w in d.get("joint_weights", [1.0] * k)),
        upper_body_ids=tuple(int(i) for i in upper),
        lower_body_ids=tuple(int(i) for i in lower),
        skeleton=tuple(tuple(int(i) for i in p) for p in d.get("skeleton", ())),
        iou_type=str(d.get("iou_type", "keypoints")),
        use_area=bool(d.get("use_area", True)),
    )


def _infer_flip_pairs(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, n in enumerate(names):
        for a, b in (("left", "right"), ("l_", "r_")):
            if n.startswith(a) and (b + n[len(a):]) in index:
                pairs.append((i, index[b + n[len(a):]]))
    return tuple(pairs)


def meta_from_coco_categories(
    categories: list[dict], name: str, sigmas: Sequence[float] | None = None
) -> DatasetMeta:
    """Metadata from a COCO annotation file's ``categories`` (person category, id 1).

    If the keypoint names are exactly COCO's (or CrowdPose's) the built-in metadata is reused
    under ``name``; otherwise ``sigmas`` must be given.
    """
    cat = next((c for c in categories if c.get("id") == 1), categories[0] if categories else None)
    if cat is None or not cat.get("keypoints"):
        raise DataError(f"dataset {name!r}: annotation 'categories' has no keypoint names")
    names = tuple(cat["keypoints"])
    for known in (COCO_META, CROWDPOSE_META):
        if names == known.keypoint_names and sigmas is None:
            return known.with_name(name)
    if sigmas is None:
        raise DataError(
            f"dataset {name!r}: keypoints {list(names)} are not a built-in layout; "
            f"give its metadata (sigmas at least)"
        )
    skeleton = [(a - 1, b - 1) for a, b in cat.get("skeleton", [])]
    return meta_from_dict({"name": name, "keypoint_names": names, "sigmas": list(sigmas),
                           "skeleton": skeleton})
