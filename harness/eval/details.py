"""What an evaluation keeps beyond its metrics: the post-processed COCO results (so that ``compare`` can
bootstrap a finished run later), the occlusion breakdown, the per-image matching.

``EvalDetails`` is handed to ``harness.eval.coco_eval.evaluate(..., on_eval=details)``; it reads what it
needs from the ``COCOeval`` before ``summarize()``.  Predictions are stored gzipped next to the run
records (``<runs>/<dataset>/<model>/predictions/*.keypoints.json.gz``: not ``*.json``, so the results
store never mistakes them for records).
"""
from __future__ import annotations

import gzip
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.io import atomic_path

__all__ = ["EvalDetails", "write_predictions", "read_predictions", "RESULT_KEYS"]

RESULT_KEYS = ("image_id", "category_id", "keypoints", "score")


@dataclass
class EvalDetails:
    """Callable ``on_eval`` hook. ``breakdown``: a kind of ``harness.eval.breakdown.BREAKDOWNS`` or None."""

    dataset: str
    breakdown_kind: str | None = None
    keep_results: bool = True
    keep_matches: bool = False
    results: list[dict] = field(default_factory=list)
    breakdown: dict | None = None
    matches: Any = None  # harness.eval.bootstrap.MatchTable

    def __call__(self, ev) -> None:
        if self.keep_results:
            self.results = [{k: r[k] for k in RESULT_KEYS} for r in ev.cocoDt.dataset.get("annotations", [])]
        if self.keep_matches:
            from harness.eval.bootstrap import MatchTable

            self.matches = MatchTable.from_cocoeval(ev)
        if self.breakdown_kind:
            from harness.eval.breakdown import breakdown_from_cocoeval

            self.breakdown = breakdown_from_cocoeval(ev, self.breakdown_kind, self.dataset)


def write_predictions(results: list[dict], folder: str | os.PathLike, stem: str | None = None) -> Path:
    """Atomically write COCO results as ``<folder>/predictions/<stem>.keypoints.json.gz``; return the path."""
    path = Path(folder) / "predictions" / f"{stem or uuid.uuid4().hex[:12]}.keypoints.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            json.dump(results, f)
    return path


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """COCO results from a ``.json`` or ``.json.gz`` file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path}: file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"predictions file {path}: unreadable ({e})") from None
    if not isinstance(data, list):
        raise ValueError(f"predictions file {path}: expected a list of predictions, got {type(data).__name__}")
    return data
