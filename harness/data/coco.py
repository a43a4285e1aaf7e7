"""COCO-format keypoint annotation files: parse, validate, build top-down instances.

Policy for bad input (documented, tested):

* Missing/unreadable annotation or detection file, invalid JSON, missing top-level fields,
  an annotation without ``id``/``image_id``/``bbox``/``keypoints``, a keypoint list whose length is
  not 3 x (the dataset's keypoint count), non-numeric or non-finite values, an annotation or a
  detection pointing at an unknown image, duplicate image or annotation ids -> ``AnnotationError``
  naming the file, the entry and the field.
* Instances that cannot be trained/evaluated on, exactly as mmpose's top-down COCO datasets
  drop them: crowd regions, annotations with no labelled keypoint, boxes with no area after
  clipping to the image -> skipped, counted per reason in ``skipped`` and logged once.
* Detections of another category than person (1) or with score below ``det_score_thr`` are
  filtered (counted and logged).
* Missing images / corrupt JPEGs are reported by ``load_image`` (at use) and by ``check_layout``
  (all of them, up front).
"""
from __future__ import annotations

import json
import logging
import itertools
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from harness.data.metainfo import DatasetMeta
from harness.errors import AnnotationError, DataError, ImageError, MissingFileError
from harness.validate import FLOAT32_MAX, integer, number

log = logging.getLogger(__name__)

__all__ = ["AnnotationError", "ImageError", "Instance", "CocoKeypoints", "Annotations", "validate_annotations",
           "load_image", "load_json"]


def load_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path}: " + ("is a directory, not a file" if path.is_dir() else "file not found"))
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, RecursionError) as e:
        raise AnnotationError(f"{what} {path}: not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{what} {path}: not a text JSON file ({e})") from None


def load_image(path: str | Path, expect_hw: tuple[int, int] | None = None,
               flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode an image to BGR uint8 (H, W, 3); raise ``ImageError`` naming the file if it is
    missing, empty, corrupt or truncated, or (with ``expect_hw``) if its size disagrees with the
    annotation file."""
    path = Path(path)
    buf = read_image_bytes(path)
    img = cv2.imdecode(buf, flags)
    if img is None:
        raise ImageError(f"image {path}: cannot decode (corrupt or not an image)")
    if expect_hw is not None and flags == cv2.IMREAD_COLOR and tuple(img.shape[:2]) != tuple(expect_hw):
        raise ImageError(
            f"image {path}: size {img.shape[1]}x{img.shape[0]} disagrees with the annotation file "
            f"({expect_hw[1]}x{expect_hw[0]})"
        )
    return img


def is_jpeg(buf: np.ndarray) -> bool:
    """The bytes start with a JPEG start-of-image marker."""
    return buf.size >= 2 and buf[0] == 0xFF and buf[1] == 0xD8


def read_image_bytes(path: str | Path) -> np.ndarray:
    """The encoded bytes of an image file as (N,) uint8; ``ImageError`` naming the file if it is
    missing, unreadable, empty or a truncated JPEG."""
    path = Path(path)
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"image {path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"image {path}: is a directory, not an image file") from None
    except OSError as e:
        raise ImageError(f"image {path}: cannot read ({e})") from None
    if buf.size == 0:
        raise ImageError(f"image {path}: empty file")
    # libjpeg decodes a truncated JPEG with a warning and grey rows; the missing end-of-image
    # marker is how we catch it (cheap: the bytes are already in memory).
    if is_jpeg(buf) and not _has_jpeg_eoi(buf):
        raise ImageError(f"image {path}: truncated JPEG (no end-of-image marker)")
    return buf


def _has_jpeg_eoi(buf: np.ndarray) -> bool:
    # Some encoders pad after EOI; look at the last few bytes.
    tail = buf[-16:].tobytes()
    return b"\xff\xd9" in tail


@dataclass(eq=False)  # holds arrays: compare by identity
class Instance:
    """One person to crop: a GT annotation or a detection.

    Attributes:
        image_id, file: image id and path; width/height from the annotation file.
        bbox: (4,) float64 [x, y, w, h] (GT boxes clipped to the image as mmpose does).
        bbox_score: detector score (1.0 for GT boxes).
        keypoints: (K, 2) float32 and visible: (K,) float32 in {0, 1} (zeros/ones for detections).
        ann_id: annotation id (GT) or detection index (det).
        area: GT segment area (0 for detections).
        crowd_index: CrowdPose image crowd index if present.
    """

    image_id: int
    file: Path
    width: int
    height: int
    bbox: np.ndarray
    bbox_score: float
    keypoints: np.ndarray
    visible: np.ndarray
    ann_id: int
    area: float = 0.0
    crowd_index: float | None = None


def _num(v: Any, where: str) -> float:
    return number(v, where, AnnotationError, float32=True)


@dataclass(eq=False)
class Annotations:
    """A validated COCO keypoint annotation file (see :func:`validate_annotations`).

    Attributes:
        images: image id -> its ``images[]`` entry. annotations: the ``annotations[]`` entries in order.
        categories: the ``categories[]`` entries.
        bboxes: (N, 4) float64 [x, y, w, h] of the N annotations; keypoints: (N, K, 3) float64 (x, y, v).
    """

    images: dict[int, dict]
    annotations: list[dict]
    categories: list[dict]
    bboxes: np.ndarray
    keypoints: np.ndarray


def _numbers_ok(rows: list) -> bool:
    """Every value in the lists ``rows`` is a plain int or float (no bool, no string, no list)."""
    return set(map(type, itertools.chain.from_iterable(rows))) <= {int, float}


def safe_file_name(name: Any, where: str) -> str:
    """An image ``file_name``: a non-empty relative path that stays inside the image folder."""
    if not isinstance(name, str) or not name.strip():
        raise AnnotationError(f"{where}.file_name: {name!r} is not a file name")
    norm = posixpath.normpath(name.replace("\\", "/"))
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../") or "\x00" in name:
        raise AnnotationError(f"{where}.file_name: {name!r} points outside the dataset's image folder")
    return name


def validate_annotations(data: Any, meta: DatasetMeta, source: str | Path) -> Annotations:
    """Validate a decoded COCO keypoint annotation file: the one check used by training, ``data check``
    and ``evaluate-predictions``.

    Refused (``AnnotationError`` naming ``source``, the entry and the field): a top level that is not an
    object; missing or non-list ``images``/``annotations``/``categories``; no category; an image without
    an integer ``id``, a safe relative ``file_name`` (no ``..``, not absolute) or positive ``width``/
    ``height``; duplicate image or annotation ids; an annotation without an integer ``id``/``image_id``,
    ``bbox`` [x, y, w, h] or ``keypoints`` of ``3 * meta.num_keypoints`` values; an annotation of an
    unknown image (orphan); any bbox or keypoint value that is not a plain finite number within float32
    range (``"12"``, ``true``, ``1e300`` are refused, never converted); a negative ``area``.
    """
    f = source
    if not isinstance(data, dict):
        raise AnnotationError(f"annotation file {f}: top level must be an object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f"annotation file {f}: missing top-level field {key!r}")
        if not isinstance(data[key], list):
            raise AnnotationError(f"annotation file {f}: field {key!r} must be a list")
    if not data["categories"]:
        raise AnnotationError(f"annotation file {f}: field 'categories' is empty (the person category is needed)")
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise AnnotationError(f"annotation file {f}: categories[{i}]: must be an object with an 'id'")
        integer(cat["id"], f"annotation file {f}: categories[{i}].id", AnnotationError)
    images: dict[int, dict] = {}
    for i, img in enumerate(data["images"]):
        where = f"annotation file {f}: images[{i}]"
        if not isinstance(img, dict):
            raise AnnotationError(f"{where}: must be an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise AnnotationError(f"{where}: missing field {key!r}")
        iid = integer(img["id"], f"{where}.id", AnnotationError)
        if iid in images:
            raise AnnotationError(f"{where}.id: duplicate image id {iid}")
        safe_file_name(img["file_name"], where)
        w, h = _num(img["width"], f"{where}.width"), _num(img["height"], f"{where}.height")
        if w <= 0 or h <= 0:
            raise AnnotationError(f"{where}: width/height must be positive, got {w}x{h}")
        images[iid] = img
    k3 = 3 * meta.num_keypoints
    seen: set = set()
    bboxes: list = []
    kps: list = []
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise AnnotationError(f"annotation file {f}: annotations[{i}]: must be an object")
        for key in ("id", "image_id", "bbox", "keypoints"):
            if key not in ann:
                raise AnnotationError(f"annotation file {f}: annotations[{i}]: missing field {key!r}")
        aid = integer(ann["id"], f"annotation file {f}: annotations[{i}].id", AnnotationError)
        where = f"annotation file {f}: annotation id {aid} (annotations[{i}])"
        if aid in seen:
            raise AnnotationError(f"{where}.id: duplicate annotation id")
        seen.add(aid)
        iid = integer(ann["image_id"], f"{where}.image_id", AnnotationError)
        if iid not in images:
            raise AnnotationError(f"{where}.image_id: {iid!r} is not in 'images'")
        bbox, kp = ann["bbox"], ann["keypoints"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(f"{where}.bbox: must be [x, y, w, h], got {bbox!r}")
        if not isinstance(kp, list) or len(kp) != k3:
            n = len(kp) if isinstance(kp, list) else type(kp).__name__
            raise AnnotationError(
                f"{where}.keypoints: has {n} values, expected {k3} ({meta.num_keypoints} keypoints x (x, y, v)) "
                f"for dataset {meta.name!r}"
            )
        if "area" in ann and _num(ann["area"], f"{where}.area") < 0:
            raise AnnotationError(f"{where}.area: {ann['area']!r} is negative")
        bboxes.append(bbox)
        kps.append(kp)
    # Numbers are checked in one pass over their types and one vectorised range check (COCO train has
    # 260k annotations); only when that fails is the offending entry searched for, to name it.
    ok = _numbers_ok(bboxes) and _numbers_ok(kps)
    if ok:
        try:
            arr_b = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
            arr_k = np.array(kps, dtype=np.float64).reshape(-1, meta.num_keypoints, 3)
        except OverflowError:  # an int beyond float64
            ok = False
        else:
            ok = bool((np.abs(arr_b) <= FLOAT32_MAX).all() and (np.abs(arr_k) <= FLOAT32_MAX).all())
    if not ok:
        for i, ann in enumerate(data["annotations"]):
            where = f"annotation file {f}: annotation id {ann['id']} (annotations[{i}])"
            for field_name in ("bbox", "keypoints"):
                for j, v in enumerate(ann[field_name]):
                    _num(v, f"{where}.{field_name}[{j}]")
        raise AnnotationError(f"annotation file {f}: non-numeric bbox or keypoint values")  # pragma: no cover
    return Annotations(images=images, annotations=data["annotations"], categories=data["categories"],
                       bboxes=arr_b, keypoints=arr_k)


@dataclass
class CocoKeypoints:
    """A validated COCO-format person-keypoint annotation file.

    Args:
        ann_file: the JSON annotation file.
        img_dir: directory holding the images named by ``images[].file_name``.
        meta: the keypoint layout; every annotation must have ``3 * meta.num_keypoints`` numbers.
    """

    ann_file: Path
    img_dir: Path
    meta: DatasetMeta
    images: dict[int, dict] = field(init=False)
    annotations: list[dict] = field(init=False)
    categories: list[dict] = field(init=False)
    skipped: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.ann_file = Path(self.ann_file)
        self.img_dir = Path(self.img_dir)
        self.skipped = Counter()
        self._paths: dict[int, Path] = {}
        v = validate_annotations(load_json(self.ann_file, "annotation file"), self.meta, self.ann_file)
        self.images, self.annotations, self.categories = v.images, v.annotations, v.categories
        self._bboxes, self._kps = v.bboxes, v.keypoints

    # ------------------------------------------------------------------ helpers
    def image_path(self, image_id: int) -> Path:
        return self.img_dir / self.images[image_id]["file_name"]

    def _instance(self, img: dict, image_id: int, bbox: np.ndarray, score: float,
                  kps: np.ndarray, vis: np.ndarray, ann_id: int, area: float) -> Instance:
        file = self._paths.get(image_id)
        if file is None:  # one Path per image, shared by its instances (Path() is slow at 260k)
            file = self._paths[image_id] = self.img_dir / img["file_name"]
        return Instance(
            image_id=image_id, file=file, width=int(img["width"]),
            height=int(img["height"]), bbox=bbox, bbox_score=score, keypoints=kps, visible=vis,
            ann_id=ann_id, area=area, crowd_index=img.get("crowdIndex"),
        )

    def gt_instances(self) -> list[Instance]:
        """Instances from GT boxes (training, and OCHuman/CrowdPose-style GT-box evaluation).

        Boxes are clipped to the image (``[0, w-1] x [0, h-1]``, as mmpose). Skipped (counted in
        ``self.skipped``, logged): crowd regions, no labelled keypoint, empty clipped box.
        """
        anns = self.annotations
        n = len(anns)
        if n == 0:
            return []
        imgs = [self.images[a["image_id"]] for a in anns]
        wh = np.array([[float(im["width"]), float(im["height"])] for im in imgs]).reshape(-1, 2)
        x, y, bw, bh = self._bboxes.T
        x1, y1 = np.clip(x, 0, wh[:, 0] - 1), np.clip(y, 0, wh[:, 1] - 1)
        x2, y2 = np.clip(x + bw, 0, wh[:, 0] - 1), np.clip(y + bh, 0, wh[:, 1] - 1)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns])
        no_kp = (np.array([a.get("num_keypoints", 1) == 0 for a in anns])
                 | (self._kps.reshape(n, -1).max(axis=1) <= 0)) & ~crowd
        empty = ((x2 - x1 <= 0) | (y2 - y1 <= 0)) & ~crowd & ~no_kp
        keep = ~(crowd | no_kp | empty)
        skipped: Counter = Counter({"crowd region": int(crowd.sum()), "no labelled keypoint": int(no_kp.sum()),
                                    "empty box after clipping to the image": int(empty.sum())})
        skipped = Counter({r: c for r, c in skipped.items() if c})
        boxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
        kps = self._kps[..., :2].astype(np.float32)
        vis = np.minimum(1.0, self._kps[..., 2]).astype(np.float32)
        out: list[Instance] = []
        for i in np.nonzero(keep)[0].tolist():
            a, img = anns[i], imgs[i]
            area = float(a.get("area", (x2[i] - x1[i]) * (y2[i] - y1[i]) * 0.53))
            out.append(self._instance(img, a["image_id"], boxes[i], 1.0, kps[i], vis[i], int(a["id"]), area))
        self._log_skips(skipped, "GT instances")
        return out

    def det_instances(self, det_file: str | Path, score_thr: float = 0.0) -> list[Instance]:
        """Instances from a COCO detection-results file ``[{image_id, category_id, bbox, score}]``.

        Keeps person detections (category 1) with ``score >= score_thr`` (mmpose's
        ``bbox_score_thr`` rule); boxes are used as given (not clipped), as in mmpose.
        """
        det_file = Path(det_file)
        dets = load_json(det_file, "detection file")
        if not isinstance(dets, list):
            raise AnnotationError(f"detection file {det_file}: must be a list of detections")
        if not 0.0 <= score_thr <= 1.0:
            raise DataError(f"det_score_thr: {score_thr} must be in [0, 1]")
        k = self.meta.num_keypoints
        out: list[Instance] = []
        skipped: Counter = Counter()
        for i, det in enumerate(dets):
            where = f"detection file {det_file}: entry {i}"
            if not isinstance(det, dict):
                raise AnnotationError(f"{where}: must be an object")
            for key in ("image_id", "bbox", "score"):
                if key not in det:
                    raise AnnotationError(f"{where}: missing field {key!r}")
            if integer(det.get("category_id", 1), f"{where}.category_id", AnnotationError) != 1:
                skipped["not a person"] += 1
                continue
            if integer(det["image_id"], f"{where}.image_id", AnnotationError) not in self.images:
                raise AnnotationError(
                    f"{where}.image_id: {det['image_id']!r} is not in annotation file {self.ann_file}"
                )
            bbox = det["bbox"]
            if not isinstance(bbox, list) or len(bbox) < 4:
                raise AnnotationError(f"{where}.bbox: must be [x, y, w, h], got {bbox!r}")
            bbox = np.array([_num(v, f"{where}.bbox") for v in bbox[:4]], dtype=np.float64)
            score = _num(det["score"], f"{where}.score")
            if score < score_thr:
                skipped[f"score < {score_thr}"] += 1
                continue
            img = self.images[det["image_id"]]
            out.append(self._instance(img, det["image_id"], bbox, score,
                                      np.zeros((k, 2), np.float32), np.ones(k, np.float32), len(out), 0.0))
        self._log_skips(skipped, f"detections from {det_file.name}")
        return out

    def _log_skips(self, skipped: Counter, what: str) -> None:
        self.skipped.update(skipped)
        if skipped:
            detail = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items()))
            log.info("%s (%s): skipped %s", what, self.ann_file.name, detail)
