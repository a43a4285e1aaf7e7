"""Inference and COCO-style evaluation: ``predict`` -> raw predictions -> ``evaluate`` -> metrics.

The names below are loaded on first use, so that the CLI can read :mod:`harness.eval.options` at
start-up without importing numpy, torch or xtcocotools.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "predict": "inference", "predict_arrays": "inference",
    "evaluate": "coco_eval", "format_metrics": "coco_eval", "METRIC_NAMES": "coco_eval",
    "CROWD_METRIC_NAMES": "coco_eval",
    "RawPredictions": "postprocess", "oks_matrix": "postprocess", "oks_nms": "postprocess",
    "soft_oks_nms": "postprocess", "rescore": "postprocess",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"harness.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'harness.eval' has no attribute {name!r}")
