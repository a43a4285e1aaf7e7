"""hrbench's harness: models, checkpoints, data, training, evaluation, profiling and reports.

The two entry points most code needs are re-exported here (imported lazily so that
``python -m harness --help`` stays fast):

    >>> from harness import create_pose_model, load_weights
"""
from __future__ import annotations

__all__ = ["create_pose_model", "load_weights", "PoseModel"]


def __getattr__(name):
    if name in ("create_pose_model", "PoseModel"):
        from . import models
        return getattr(models, name)
    if name == "load_weights":
        from .weights import load_weights
        return load_weights
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
