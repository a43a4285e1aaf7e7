"""Raw top-down predictions -> COCO results: validation, scoring, vectorised OKS, OKS-NMS, soft-OKS-NMS.

The options and their semantics are those of mmpose 1.3.2's ``CocoMetric``
(``mmpose/evaluation/metrics/coco_metric.py``, ``compute_metrics``; NMS in
``mmpose/evaluation/functional/nms.py``), with the same names and defaults:

* ``score_mode`` -- the instance score the results carry (COCOeval ranks by it):
  ``'bbox_keypoint'`` (default) box score x mean of the keypoint scores above
  ``keypoint_score_thr`` (default 0.2; the score is 0 when none is above);
  ``'bbox'`` the box score; ``'keypoint'`` the mean of all keypoint scores.
  Arithmetic in float32 as mmpose's (its box and keypoint scores are float32 arrays).
* ``nms_mode`` -- per image: ``'oks_nms'`` (default) greedy, in descending score order, a
  candidate is dropped when its OKS with a kept instance is > ``nms_thr`` (default 0.9);
  ``'soft_oks_nms'`` keeps at most ``SOFT_NMS_MAX_DETS`` = 20 instances per image, chosen
  greedily while each pick decays the others' ranking scores by ``exp(-oks^2 / nms_thr)``
  (mmpose's Gaussian rescoring; the results keep their original scores, as mmpose's do);
  ``'none'`` keeps everything.
* OKS uses the dataset's sigmas and the mean of the two instances' ``area`` (all keypoints
  count, no visibility threshold), computed in mmpose's dtypes.
* Images appear in the order of their first prediction; results carry ``image_id``,
  ``category_id``, ``keypoints`` (x, y, score) x K, ``score`` and ``bbox``.

The pairwise OKS of an image is one broadcast (n, n, K) computation; only the greedy passes
iterate, once per kept instance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import itertools

import numpy as np

from harness.eval.options import NMS_MODES, SCORE_MODES, check_options
from harness.errors import PredictionError
from harness.validate import FLOAT32_MAX, integer, number

__all__ = ["RawPredictions", "SCORE_MODES", "NMS_MODES", "SOFT_NMS_MAX_DETS", "rescore", "instance_scores",
           "oks_matrix", "oks_nms", "soft_oks_nms", "check_options", "postprocess", "to_coco_results"]

SOFT_NMS_MAX_DETS = 20  # mmpose's soft_oks_nms default, which CocoMetric does not override


@dataclass
class RawPredictions:
    """Raw top-down predictions as arrays (N instances, K keypoints).

    Attributes:
        image_ids: (N,) int64. category_ids: (N,) int64.
        keypoints: (N, K, 2) float32 image coordinates. keypoint_scores: (N, K) float32.
        bbox_scores: (N,) float64. areas: (N,) float64 (product of the crop scale).
        bboxes: (N, 4) float64 [x, y, w, h] or None.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    bbox_scores: np.ndarray
    areas: np.ndarray
    bboxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        if self.keypoints.ndim != 3 or self.keypoints.shape[0] != n or self.keypoints.shape[2] != 2:
            raise PredictionError(f"RawPredictions.keypoints: shape {self.keypoints.shape}, expected ({n}, K, 2)")
        k = self.keypoints.shape[1]
        if self.keypoint_scores.shape != (n, k):
            raise PredictionError(f"RawPredictions.keypoint_scores: shape {self.keypoint_scores.shape}, expected ({n}, {k})")
        for name in ("category_ids", "bbox_scores", "areas"):
            if getattr(self, name).shape != (n,):
                raise PredictionError(f"RawPredictions.{name}: shape {getattr(self, name).shape}, expected ({n},)")
        if self.bboxes is not None and self.bboxes.shape != (n, 4):
            raise PredictionError(f"RawPredictions.bboxes: shape {self.bboxes.shape}, expected ({n}, 4)")
        for name in ("keypoints", "keypoint_scores", "bbox_scores", "areas"):
            if not np.isfinite(getattr(self, name)).all():
                bad = int(np.nonzero(~np.isfinite(getattr(self, name)).reshape(n, -1).all(axis=1))[0][0])
                raise PredictionError(f"RawPredictions.{name}: non-finite value in prediction {bad}")

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[1]

    @classmethod
    def from_list(cls, preds: Sequence[dict[str, Any]], num_keypoints: int | None = None,
                  source: str = "predictions") -> "RawPredictions":
        """Validate and convert a list of RAW.json dicts. Errors (:class:`PredictionError`) name the
        entry and the field.

        Nothing is coerced: ``image_id``/``category_id`` must be integers (not 785.7, not ``"785"``,
        not ``true``); every other value a plain finite number within float32 range; ``area`` > 0;
        ``bbox_score`` in [0, 1]; ``bbox`` (optional, all or none) [x, y, w, h] with w, h >= 0.
        """
        if not isinstance(preds, (list, tuple)):
            raise PredictionError(f"{source}: must be a list of predictions, got {type(preds).__name__}")
        if len(preds) == 0:
            raise PredictionError(f"{source}: no predictions")
        required = ("image_id", "keypoints", "keypoint_scores", "bbox_score", "area")
        n = len(preds)
        k = num_keypoints
        with_bbox = 0
        for i, p in enumerate(preds):
            where = f"{source}[{i}]"
            if not isinstance(p, dict):
                raise PredictionError(f"{where}: must be an object")
            for key in required:
                if key not in p:
                    raise PredictionError(f"{where}: missing field {key!r}")
            integer(p["image_id"], f"{where}.image_id", PredictionError)
            if "category_id" in p:
                integer(p["category_id"], f"{where}.category_id", PredictionError)
            kp, ks = p["keypoints"], p["keypoint_scores"]
            if not isinstance(kp, list) or not all(isinstance(xy, list) and len(xy) == 2 for xy in kp):
                raise PredictionError(f"{where}.keypoints: must be [[x, y], ...], got {_short(kp)}")
            if not isinstance(ks, list):
                raise PredictionError(f"{where}.keypoint_scores: must be a list of numbers, got {_short(ks)}")
            if k is None:
                k = len(kp)
            if len(kp) != k or len(ks) != k:
                raise PredictionError(
                    f"{where} (image_id {p['image_id']}): has {len(kp)} keypoints and {len(ks)} keypoint_scores, "
                    f"expected {k}"
                )
            if k == 0:
                raise PredictionError(f"{where}.keypoints: empty")
            area = number(p["area"], f"{where}.area", PredictionError, float32=True)
            if area <= 0:
                raise PredictionError(f"{where}.area: {p['area']!r} must be > 0 (the crop's scale product; "
                                      f"OKS divides by it)")
            score = number(p["bbox_score"], f"{where}.bbox_score", PredictionError, float32=True)
            if not 0.0 <= score <= 1.0:
                raise PredictionError(f"{where}.bbox_score: {p['bbox_score']!r} must be in [0, 1]")
            if "bbox" in p:
                with_bbox += 1
                b = p["bbox"]
                if not isinstance(b, list) or len(b) != 4:
                    raise PredictionError(f"{where}.bbox: must be [x, y, w, h], got {_short(b)}")
                for j, v in enumerate(b):
                    number(v, f"{where}.bbox[{j}]", PredictionError, float32=True)
                if b[2] < 0 or b[3] < 0:
                    raise PredictionError(f"{where}.bbox: width and height must be >= 0, got {b!r}")
        if with_bbox not in (0, n):
            first = next(i for i, p in enumerate(preds) if "bbox" not in p)
            raise PredictionError(f"{source}[{first}]: missing field 'bbox' (given on {with_bbox} of {n} predictions: "
                                  f"all or none)")
        # keypoints / keypoint_scores: one pass over the value types, one vectorised range check; the
        # offending entry is searched for only when that fails.
        kp_rows = [xy for p in preds for xy in p["keypoints"]]
        ks_rows = [p["keypoint_scores"] for p in preds]
        ok = _plain_numbers(kp_rows) and _plain_numbers(ks_rows)
        if ok:
            try:
                kps = np.asarray(kp_rows, dtype=np.float64).reshape(n, k, 2)
                kss = np.asarray(ks_rows, dtype=np.float64).reshape(n, k)
            except OverflowError:
                ok = False
            else:
                ok = bool((np.abs(kps) <= FLOAT32_MAX).all() and (np.abs(kss) <= FLOAT32_MAX).all())
        if not ok:
            for i, p in enumerate(preds):
                for j, xy in enumerate(p["keypoints"]):
                    for c, v in enumerate(xy):
                        number(v, f"{source}[{i}].keypoints[{j}][{c}]", PredictionError, float32=True)
                for j, v in enumerate(p["keypoint_scores"]):
                    number(v, f"{source}[{i}].keypoint_scores[{j}]", PredictionError, float32=True)
            raise PredictionError(f"{source}: non-numeric keypoint values")  # pragma: no cover
        return cls(
            image_ids=np.asarray([p["image_id"] for p in preds], dtype=np.int64),
            category_ids=np.asarray([p.get("category_id", 1) for p in preds], dtype=np.int64),
            keypoints=kps.astype(np.float32),
            keypoint_scores=kss.astype(np.float32),
            bbox_scores=np.asarray([p["bbox_score"] for p in preds], dtype=np.float64),
            areas=np.asarray([p["area"] for p in preds], dtype=np.float64),
            bboxes=np.asarray([p["bbox"] for p in preds], dtype=np.float64) if with_bbox else None,
        )

    def to_list(self) -> list[dict[str, Any]]:
        out = []
        for i in range(len(self)):
            d = {
                "image_id": int(self.image_ids[i]),
                "category_id": int(self.category_ids[i]),
                "keypoints": self.keypoints[i].tolist(),
                "keypoint_scores": self.keypoint_scores[i].tolist(),
                "bbox_score": float(self.bbox_scores[i]),
                "area": float(self.areas[i]),
            }
            if self.bboxes is not None:
                d["bbox"] = self.bboxes[i].tolist()
            out.append(d)
        return out


def _plain_numbers(rows: list) -> bool:
    """Every value in the lists ``rows`` is a plain int or float (no bool, no string)."""
    return set(map(type, itertools.chain.from_iterable(rows))) <= {int, float}


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def rescore(keypoint_scores: np.ndarray, bbox_scores: np.ndarray, thr: float = 0.2) -> np.ndarray:
    """(N, K), (N,) -> (N,) float32: box score x mean of keypoint scores > thr (0 when none is).

    mmpose sums the scores above ``thr`` one by one in float32; a float32 cumulative sum is the
    same sequence of additions.
    """
    ks = np.asarray(keypoint_scores, dtype=np.float32)
    valid = ks > np.float32(thr)
    total = np.cumsum(np.where(valid, ks, np.float32(0)), axis=1, dtype=np.float32)[:, -1]
    cnt = valid.sum(axis=1)
    mean = np.where(cnt > 0, total / np.maximum(cnt, 1).astype(np.float32), np.float32(0))
    return np.asarray(bbox_scores, dtype=np.float32) * mean


def instance_scores(keypoint_scores: np.ndarray, bbox_scores: np.ndarray, score_mode: str = "bbox_keypoint",
                    keypoint_score_thr: float = 0.2) -> np.ndarray:
    """(N, K), (N,) -> (N,) float32 instance scores by ``score_mode`` (see the module docstring)."""
    if score_mode == "bbox_keypoint":
        return rescore(keypoint_scores, bbox_scores, keypoint_score_thr)
    if score_mode == "bbox":
        return np.asarray(bbox_scores, dtype=np.float32).copy()
    if score_mode == "keypoint":
        return np.asarray(keypoint_scores, dtype=np.float32).mean(axis=1)
    raise ValueError(f"score_mode: must be one of {list(SCORE_MODES)}, got {score_mode!r}")


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Pairwise OKS (n, n) float32 of instances keypoints (n, K, 2) with areas (n,).

    OKS(i, j) = mean_k exp(-d_ijk^2 / (2 * ((a_i + a_j)/2 + eps) * (2 sigma_k)^2)) -- mmpose's
    ``oks_iou`` (all keypoints count, no visibility threshold), in its dtypes: coordinates and
    areas float32 (as mmpose holds them), squared distances float32, the rest float64.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    a = np.asarray(areas, dtype=np.float32)
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    x, y = kp[..., 0], kp[..., 1]
    dx = x[:, None, :] - x[None, :, :]  # (n, n, K); x and y separately: no reduction over a size-2 axis
    dy = y[:, None, :] - y[None, :, :]
    d2 = (dx * dx + dy * dy).astype(np.float64)
    s = ((a[:, None] + a[None, :]) / np.float32(2)).astype(np.float64) + np.spacing(1)
    d2 /= var
    d2 /= s[..., None]
    d2 /= 2
    np.exp(-d2, out=d2)
    return (d2.sum(-1) / kp.shape[1]).astype(np.float32)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
            thr: float = 0.9) -> np.ndarray:
    """Greedy OKS-NMS of one image. Returns kept indices in descending score order."""
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.asarray(scores).argsort()[::-1]
    if n == 1:
        return order.copy()
    oks = oks_matrix(keypoints, areas, sigmas)
    # mmpose compares float32 OKS values with ``<= thr``: suppressed when > thr
    over = oks > np.float32(thr)
    alive = np.ones(n, dtype=bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        alive &= ~over[i]
    return np.asarray(keep, dtype=np.int64)


def soft_oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
                 thr: float = 0.9, max_dets: int = SOFT_NMS_MAX_DETS) -> np.ndarray:
    """Soft-OKS-NMS of one image (mmpose's ``soft_oks_nms``, Gaussian rescoring). Returns at most
    ``max_dets`` indices in pick order.

    Each step picks the candidate with the highest running score, multiplies every remaining
    candidate's running score by ``exp(-oks^2 / thr)`` (OKS with the pick; both float32) and re-sorts
    them (``argsort()[::-1]``, so ties break as mmpose's do). The running scores only rank: the
    picked instances keep their original scores.
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.asarray(scores).argsort()[::-1]
    run = np.asarray(scores)[order]
    oks = oks_matrix(keypoints, areas, sigmas) if n > 1 else np.ones((1, 1), np.float32)
    keep = []
    while len(order) > 0 and len(keep) < max_dets:
        i = order[0]
        keep.append(i)
        order = order[1:]
        run = run[1:] * np.exp(-oks[i, order] ** 2 / np.float32(thr))
        tmp = run.argsort()[::-1]
        order, run = order[tmp], run[tmp]
    return np.asarray(keep, dtype=np.int64)


def _group_by_image(image_ids: np.ndarray) -> list[np.ndarray]:
    """Indices of each image's predictions, images in order of first appearance, each group in
    list order (stable)."""
    uniq, first, inv = np.unique(image_ids, return_index=True, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv, minlength=len(uniq))
    groups = np.split(order, np.cumsum(counts)[:-1])
    return [groups[j] for j in np.argsort(first, kind="stable")]


def postprocess(preds: RawPredictions, sigmas: np.ndarray, *, score_mode: str = "bbox_keypoint",
                keypoint_score_thr: float = 0.2, nms_mode: str = "oks_nms",
                nms_thr: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Score and NMS as mmpose's ``CocoMetric`` (options in the module docstring). Returns
    (selected indices into ``preds`` in result order (N',), their scores (N',) float64)."""
    check_options(score_mode, keypoint_score_thr, nms_mode, nms_thr)
    # float32 like mmpose's: NMS ranks (argsort, ties) and soft-NMS decays in the same dtype
    scores = instance_scores(preds.keypoint_scores, preds.bbox_scores, score_mode, keypoint_score_thr)
    sig = np.asarray(sigmas, dtype=np.float64)
    if len(sig) != preds.num_keypoints:
        raise ValueError(f"sigmas: {len(sig)} values for {preds.num_keypoints} keypoints")
    nms = {"oks_nms": oks_nms, "soft_oks_nms": soft_oks_nms}.get(nms_mode)
    selected = []
    for idx in _group_by_image(preds.image_ids):
        if nms is None:
            selected.append(idx)
        else:
            selected.append(idx[nms(preds.keypoints[idx], scores[idx], preds.areas[idx], sig, nms_thr)])
    sel = np.concatenate(selected) if selected else np.zeros(0, np.int64)
    return sel, scores[sel].astype(np.float64)


def to_coco_results(preds: RawPredictions, selected: np.ndarray, scores: np.ndarray) -> list[dict]:
    """COCO keypoint results (``loadRes`` input) for the selected predictions."""
    kps = np.concatenate([preds.keypoints[selected], preds.keypoint_scores[selected][..., None]],
                         axis=-1).reshape(len(selected), -1)
    rows = kps.tolist()
    out = []
    for j, i in enumerate(selected.tolist()):
        r = {
            "image_id": int(preds.image_ids[i]),
            "category_id": int(preds.category_ids[i]),
            "keypoints": rows[j],
            "score": float(scores[j]),
        }
        if preds.bboxes is not None:
            r["bbox"] = preds.bboxes[i].tolist()
        out.append(r)
    return out

