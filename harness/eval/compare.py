"""Load prediction sets (raw, COCO results, or finished run records) and bootstrap them side by side.

``load_set`` turns one source into a :class:`harness.eval.bootstrap.MatchTable` (one COCOeval run);
``compare`` scores several on the same annotation file with the same image resamples.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.eval.bootstrap import BootstrapResult, MatchTable, paired_bootstrap

__all__ = ["PredictionSet", "load_set", "load_run", "compare"]


@dataclass
class PredictionSet:
    name: str
    table: MatchTable
    metrics: dict[str, float]
    ann_file: str
    dataset: str


def _is_raw(preds: list) -> bool:
    return bool(preds) and isinstance(preds[0], dict) and "keypoint_scores" in preds[0]


def load_set(name: str, preds: list[dict], ann_file: str | os.PathLike, meta, *, coco_gt=None,
             **eval_options) -> PredictionSet:
    """Raw top-down predictions (scored and suppressed by ``evaluate`` with ``eval_options``: score_mode,
    keypoint_score_thr, nms_mode, nms_thr) or COCO results (used as they are)."""
    from harness.eval.coco_eval import evaluate, evaluate_results
    from harness.eval.details import EvalDetails

    details = EvalDetails(meta.name, keep_results=False, keep_matches=True)
    if _is_raw(preds):
        metrics = evaluate(preds, ann_file, meta, coco_gt=coco_gt, on_eval=details, **eval_options)
    else:
        if not preds:
            raise ValueError(f"{name}: no predictions")
        metrics = evaluate_results(preds, ann_file, meta, coco_gt=coco_gt, on_eval=details)
    return PredictionSet(name, details.matches, metrics, str(ann_file), meta.name)


def load_run(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """A run record and the COCO results it points to; errors name the file and field."""
    from harness.eval.details import read_predictions
    from harness.results.schema import RecordError, RunRecord

    path = Path(path)
    try:
        rec = RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise FileNotFoundError(f"run record {path}: file not found") from None
    except (json.JSONDecodeError, RecordError) as e:
        raise ValueError(f"run record {path}: {e}") from None
    if rec.predictions is None:
        raise ValueError(f"run record {path}: field 'predictions' is empty (the run was evaluated before records "
                         "kept their predictions; re-run `test` to compare it)")
    return rec.to_dict(), read_predictions(path.parent / rec.predictions["file"])


def compare(sets: Sequence[PredictionSet], *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
            baseline: str | None = None, metric: str = "AP") -> BootstrapResult:
    """Paired bootstrap of ``sets`` (same annotation file); pairs: each set vs ``baseline``, else all pairs."""
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"compare: names must be unique, got {names}")
    anns = {str(Path(s.ann_file).resolve()) for s in sets}
    if len(anns) > 1:
        raise ValueError(f"compare: the prediction sets were scored on different annotation files: {sorted(anns)}")
    pairs = None
    if baseline is not None:
        if baseline not in names:
            raise ValueError(f"--baseline: {baseline!r} is not one of {names}")
        pairs = [(n, baseline) for n in names if n != baseline]
    return paired_bootstrap({s.name: s.table for s in sets}, resamples=resamples, seed=seed,
                            confidence=confidence, metric=metric, pairs=pairs)
