"""mmpose 1.3.2 ``CocoMetric``'s scoring and NMS options (vocabulary and domains) and the names of the
metrics it reports, stated once.

Light on purpose (no numpy/torch): ``EvalCfg`` (``harness.config``), ``harness.eval.postprocess`` (which
implements them) and the CLI's argument parsers (at start-up) all read them from here.
"""
from __future__ import annotations

import math
import typing
from typing import Any, Literal

from harness.errors import ConfigError

__all__ = ["ScoreMode", "NmsMode", "SCORE_MODES", "NMS_MODES", "METRIC_NAMES", "CROWD_METRIC_NAMES",
           "eval_option_problem", "check_options"]

# CocoMetric's ``score_mode`` also allows 'bbox_rle' (RLE heads' scores, which heatmap models do not
# have); it is left out.
ScoreMode = Literal["bbox_keypoint", "bbox", "keypoint"]
NmsMode = Literal["oks_nms", "soft_oks_nms", "none"]
SCORE_MODES: tuple[str, ...] = typing.get_args(ScoreMode)
NMS_MODES: tuple[str, ...] = typing.get_args(NmsMode)

# The metrics CocoMetric reports, in its order: COCO-style keypoints, and CrowdPose's keypoints_crowd
# (no area ranges; AP by crowd index easy/medium/hard instead).
METRIC_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
CROWD_METRIC_NAMES = ("AP", "AP .5", "AP .75", "AR", "AR .5", "AR .75", "AP(E)", "AP(M)", "AP(H)")


def eval_option_problem(score_mode: Any, keypoint_score_thr: Any, nms_mode: Any,
                        nms_thr: Any) -> tuple[str, str] | None:
    """(field, message) for the first invalid scoring/NMS option, else None (used by ``EvalCfg``
    and by ``harness.eval.postprocess``)."""
    def number_in(v, lo_open: bool) -> bool:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return ok and (v > 0 if lo_open else v >= 0) and v <= 1

    if score_mode not in SCORE_MODES:
        return "score_mode", f"must be one of {list(SCORE_MODES)}, got {score_mode!r}"
    if nms_mode not in NMS_MODES:
        return "nms_mode", f"must be one of {list(NMS_MODES)}, got {nms_mode!r}"
    if not number_in(keypoint_score_thr, lo_open=False):
        return "keypoint_score_thr", f"must be a number in [0, 1], got {keypoint_score_thr!r}"
    soft = nms_mode == "soft_oks_nms"  # its Gaussian decay divides by nms_thr
    if not number_in(nms_thr, lo_open=soft):
        return "nms_thr", f"must be a number in {'(0, 1] for soft_oks_nms' if soft else '[0, 1]'}, got {nms_thr!r}"
    return None


def check_options(score_mode: str, keypoint_score_thr: float, nms_mode: str, nms_thr: float) -> None:
    """ConfigError naming the option when one is out of its domain (the rule ``EvalCfg`` applies)."""
    problem = eval_option_problem(score_mode, keypoint_score_thr, nms_mode, nms_thr)
    if problem:
        raise ConfigError(f"{problem[0]}: {problem[1]}")
