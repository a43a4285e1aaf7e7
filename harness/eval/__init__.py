"""Inference and COCO-style evaluation: ``predict`` -> raw predictions -> ``evaluate`` -> metrics."""
from harness.eval.coco_eval import CROWD_METRIC_NAMES, METRIC_NAMES, evaluate, format_metrics
from harness.eval.inference import predict, predict_arrays
from harness.eval.postprocess import RawPredictions, oks_matrix, oks_nms, rescore, soft_oks_nms

__all__ = ["predict", "predict_arrays", "evaluate", "format_metrics", "RawPredictions",
           "oks_matrix", "oks_nms", "soft_oks_nms", "rescore", "METRIC_NAMES", "CROWD_METRIC_NAMES"]
