"""COCO keypoint evaluation with xtcocotools, reporting mmpose's metric names.

``evaluate`` = validate raw predictions -> scoring + NMS (``postprocess``) -> COCO results
-> ``COCOeval`` (``keypoints`` or, for CrowdPose, ``keypoints_crowd``) with the dataset's sigmas.
Its numbers equal mmpose 1.3.2's ``CocoMetric(score_mode=..., keypoint_score_thr=...,
nms_mode=..., nms_thr=...)`` with the same options on the same raw predictions
(``tests/eval/test_eval_coco.py`` against numbers mmpose produced, ``tests/fixtures/mmpose_ref/``).
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from harness.data.metainfo import DatasetMeta
from harness.errors import AnnotationError, PredictionError
from harness.io import atomic_write_json
from harness.report.tabular import Column, Table, fmt_num
from harness.eval.options import CROWD_METRIC_NAMES, METRIC_NAMES, check_options
from harness.eval.postprocess import RawPredictions, postprocess, to_coco_results

log = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_results", "METRIC_NAMES", "CROWD_METRIC_NAMES", "format_metrics", "load_coco_gt"]



def load_coco_gt(ann_file: str | Path, meta: DatasetMeta | None = None):
    """xtcocotools ``COCO`` of an annotation file (its chatter silenced).

    With ``meta`` the file first goes through :func:`harness.data.coco.validate_annotations`, the
    validator training uses (so a file without ``annotations``, with orphan annotations, duplicate ids,
    missing ``categories`` or keypoints of the wrong length is refused by name, not scored).
    """
    from xtcocotools.coco import COCO

    from harness.data.coco import load_json, validate_annotations

    ann_file = Path(ann_file)
    data = load_json(ann_file, "annotation file")
    if meta is not None:
        validate_annotations(data, meta, ann_file)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return COCO(str(ann_file), ann_data=data)  # the file read once, validated above
        except (KeyError, TypeError, AssertionError, AttributeError) as e:
            raise AnnotationError(f"annotation file {ann_file}: not a COCO annotation file ({e!r})") from None


def evaluate(
    preds: Sequence[dict] | RawPredictions,
    ann_file: str | Path,
    meta: DatasetMeta,
    *,
    score_mode: str = "bbox_keypoint",
    keypoint_score_thr: float = 0.2,
    nms_mode: str = "oks_nms",
    nms_thr: float = 0.9,
    outfile_prefix: str | Path | None = None,
    coco_gt=None,
    on_eval: Callable[[Any], None] | None = None,
) -> dict[str, float]:
    """Evaluate raw top-down predictions against a COCO-format annotation file.

    Args:
        preds: RAW predictions (list of dicts, see ``RawPredictions.from_list``) or arrays.
        ann_file: the GT annotation file (every prediction's image_id must be in it).
        meta: dataset metadata (sigmas, iou_type, use_area).
        score_mode, keypoint_score_thr, nms_mode, nms_thr: mmpose ``CocoMetric``'s options, same
            names, defaults and meaning (``harness.eval.postprocess``): ``'bbox_keypoint'``, 0.2,
            ``'oks_nms'``, 0.9.
        outfile_prefix: if given, write ``<prefix>.keypoints.json`` (the COCO results) and
            ``<prefix>.metrics.json``.
        on_eval: called with the xtcocotools ``COCOeval`` after ``evaluate()``/``accumulate()`` and
            before ``summarize()`` (the per-image matching is then intact: see
            ``harness.eval.breakdown`` and ``harness.eval.bootstrap``).
    Returns:
        mmpose's metric names -> values (``METRIC_NAMES``, or ``CROWD_METRIC_NAMES`` for
        ``keypoints_crowd``).
    """
    check_options(score_mode, keypoint_score_thr, nms_mode, nms_thr)
    gt = coco_gt if coco_gt is not None else load_coco_gt(ann_file, meta)
    raw = preds if isinstance(preds, RawPredictions) else RawPredictions.from_list(
        preds, meta.num_keypoints)
    if raw.num_keypoints != meta.num_keypoints:
        raise PredictionError(
            f"predictions have {raw.num_keypoints} keypoints, dataset {meta.name!r} has {meta.num_keypoints}"
        )
    unknown = sorted(set(np.unique(raw.image_ids).tolist()) - set(gt.getImgIds()))
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise PredictionError(f"predictions refer to {len(unknown)} image ids not in {ann_file}: {shown}")
    sel, scores = postprocess(raw, meta.sigmas_array, score_mode=score_mode, keypoint_score_thr=keypoint_score_thr,
                              nms_mode=nms_mode, nms_thr=nms_thr)
    results = to_coco_results(raw, sel, scores)
    if outfile_prefix is not None:
        atomic_write_json(f"{outfile_prefix}.keypoints.json", results)
    metrics = evaluate_results(results, ann_file, meta, coco_gt=gt, on_eval=on_eval)
    if outfile_prefix is not None:
        atomic_write_json(f"{outfile_prefix}.metrics.json", metrics, indent=2)
    log.info("evaluated %d predictions -> %d results on %s: AP %.4f", len(raw), len(results),
             Path(ann_file).name, metrics["AP"])
    return metrics


def evaluate_results(results: list[dict], ann_file: str | Path, meta: DatasetMeta, *, coco_gt=None,
                     on_eval: Callable[[Any], None] | None = None) -> dict[str, float]:
    """COCOeval of COCO keypoint *results* (already rescored and suppressed, as ``evaluate`` writes them to
    ``<prefix>.keypoints.json``) -> mmpose's metric names. ``on_eval`` as in :func:`evaluate`."""
    from xtcocotools.cocoeval import COCOeval

    gt = coco_gt if coco_gt is not None else load_coco_gt(ann_file)
    if meta.iou_type == "keypoints_crowd":
        missing = [i for i in gt.getImgIds() if "crowdIndex" not in gt.imgs[i]]
        if missing:
            raise AnnotationError(f"annotation file {ann_file}: CrowdPose evaluation needs 'crowdIndex' on every "
                             f"image; missing on image {missing[0]} ({len(missing)} images)")
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, meta.iou_type, meta.sigmas_array, meta.use_area)
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        if on_eval is not None:
            on_eval(ev)
        ev.summarize()
    log.debug("COCOeval output:\n%s", buf.getvalue())
    names = CROWD_METRIC_NAMES if meta.iou_type == "keypoints_crowd" else METRIC_NAMES
    metrics = {n: float(v) for n, v in zip(names, ev.stats)}
    return metrics


def format_metrics(metrics: dict[str, float], title: str | None = None) -> str:
    """A Markdown table of metrics (fractions, 4 decimals, as mmpose logs them)."""
    table = Table([Column(n) for n in metrics], [[fmt_num(v, ".4f") for v in metrics.values()]])
    return (f"**{title}**\n\n" if title else "") + table.markdown().rstrip("\n")
