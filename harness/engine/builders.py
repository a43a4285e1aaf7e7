"""The engine's seams to the rest of the harness: model, data, evaluation, result records.

The trainer calls these through the module (``builders.build_model(...)``), never by direct
import, so tests can substitute tiny stand-ins with ``monkeypatch.setattr(builders, ...)``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.config import PRETRAINED_ENV, Experiment, config_hash
from harness.data import HeatmapCodec
from harness.data import build_dataset as _build_dataset
from harness.data.transforms import AUGMENT_PRESETS
from harness.errors import ConfigError, MissingFileError, UsageError, WeightsError
from harness.models import PoseModel
from harness.profile import ProfileStatic, count_params, machine_info, profile_static
from harness.results.schema import METRIC_NAMES
from harness.weights import load_weights

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


def resolve_path(p: str | os.PathLike) -> Path:
    """A relative path is taken from the working directory, else from the repo root."""
    path = Path(p)
    if path.is_absolute() or path.exists():
        return path
    alt = REPO / path
    return alt if alt.exists() else path


def resolve_device(name: str | None) -> torch.device:
    """``--device``: "cpu", "cuda" or None (cuda when available); cuda without a GPU is a UsageError."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device: {name!r} requested but no CUDA device is available "
                         f"(torch.cuda.is_available() is False); use --device cpu")
    return torch.device(name)


def build_model(exp: Experiment) -> nn.Module:
    """``harness.create_pose_model`` with the experiment's backbone overrides, then the recipe's init."""
    from harness import create_pose_model  # the lead's model zoo entry point

    overrides = dict(exp.model.overrides)
    if exp.train.grad_checkpoint:
        overrides.setdefault("with_cp", True)
    import backbones

    if exp.model.name not in backbones.list_models():
        close = [n for n in backbones.list_models() if n.split("-")[0] == exp.model.name.split("-")[0]]
        raise ConfigError(f"model.name: unknown model {exp.model.name!r}; registered: "
                          f"{', '.join(close or backbones.list_models())}")
    try:
        model = create_pose_model(exp.model.name, num_keypoints=exp.model.num_keypoints, **overrides)
    except (TypeError, ValueError, KeyError) as e:  # the zoo names the bad backbone field
        msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
        raise ConfigError(f"model.overrides: {msg}") from None
    init_backbone(model, exp)
    return model


def pretrained_path(weights: str) -> Path:
    """Where ``init.weights`` lives: a bare file name is looked up in ``$HRBENCH_PRETRAINED``, else in
    ``data/pretrained/`` (from the working directory, else the repo root); a path is used as given."""
    if Path(weights).name == weights:
        folder = os.environ.get(PRETRAINED_ENV) or "data/pretrained"
        return resolve_path(Path(folder) / weights)
    return resolve_path(weights)


def init_backbone(model: nn.Module, exp: Experiment) -> None:
    """Apply ``init.pretrain``: ImageNet weights go into the backbone only; the head stays fresh.

    The key check is on unless ``init.strict=false``. What was loaded is kept on the model as
    ``model.init_info`` (file, sha256 prefix, tensors loaded, layout) for the result records.
    """
    if exp.init.pretrain == "none":
        return
    if not exp.init.weights:
        raise ConfigError(f"init.weights: recipe {exp.recipe!r} starts from ImageNet-pretrained backbone weights "
                         f"(init.pretrain=imagenet); pass the file with --set init.weights=PATH")
    path = pretrained_path(exp.init.weights)
    if not path.is_file():
        raise MissingFileError(
            f"init.weights: {path} does not exist (recipe {exp.recipe!r} expects the ImageNet checkpoint "
            f"{Path(exp.init.weights).name!r}; put it in ${PRETRAINED_ENV} or data/pretrained/, or give a path "
            f"with --set init.weights=PATH)")

    report = load_weights(model, str(path), strict=exp.init.strict, backbone_only=True)
    if report.loaded == 0:  # even a partial load must load something
        raise WeightsError(f"init.weights: no tensor of {path} fits the {exp.model.name} backbone "
                              f"(init.strict=false loads what fits, but nothing does):\n{report.summary()}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    model.init_info = {"file": path.name, "sha256": digest[:12], "tensors_loaded": report.loaded,
                       "layout": report.layout, "strict": exp.init.strict,
                       "missing": len(report.missing), "unexpected": len(report.unexpected) + len(report.mismatched)}
    log.info("initialised backbone from %s (sha256 %s): %s", path, digest[:12], report.summary())


def build_dataset(exp: Experiment, split: str, *, train: bool, eval_set: bool = False):
    """A TopDownDataset for ``split``; ``eval_set`` picks the eval section's dataset/boxes."""
    if eval_set:
        name, root = exp.eval.dataset, exp.eval.root or exp.data.root
        det_file = exp.eval.det_file if exp.eval.boxes == "det" else None
        thr = exp.eval.det_score_thr
    elif train:
        name, root, det_file, thr = exp.data.dataset, exp.data.root, None, exp.data.det_score_thr
    else:  # checkpoint selection: possibly another dataset than the training one (data.val_dataset)
        name = exp.data.val_dataset_name
        root = exp.data.val_root or exp.data.root
        det_file = exp.data.det_file if exp.data.val_boxes == "det" else None
        thr = exp.data.det_score_thr
    augment = AUGMENT_PRESETS[exp.data.augment]
    if exp.data.half_body_min_kpts is not None:  # a per-dataset threshold (HRNeXt's CrowdPose: 6)
        augment = dataclasses.replace(augment, half_body_min_kpts=exp.data.half_body_min_kpts)
    # The experiment's sigma rather than the size-based default, so `--set data.sigma=...` reaches the targets.
    codec = HeatmapCodec.for_input(tuple(exp.data.input_size), sigma=exp.data.sigma,
                                   dark=exp.data.codec == "dark", udp=exp.data.codec == "udp")
    kwargs: dict[str, Any] = dict(input_size=tuple(exp.data.input_size), train=train,
                                  det_file=_det_path(det_file), det_score_thr=thr, seed=exp.train.seed,
                                  augment=augment, codec=codec, decode=exp.data.decode)
    return _build_dataset(name, str(resolve_path(root)), split, **kwargs)


def _det_path(det_file: str | None) -> str | None:
    if not det_file or det_file == "auto":  # "auto": the data layout's standard file
        return det_file or None
    return str(resolve_path(det_file))


def evaluate(model: nn.Module, dataset, exp: Experiment, *, device: torch.device, progress: bool = True,
             on_eval=None) -> dict:
    """Predict on ``dataset`` and score with COCO-style OKS metrics -> {"AP": ..., ...}, scoring and
    NMS as ``exp.eval`` says (score_mode, keypoint_score_thr, nms_mode, nms_thr); a ``PoseModel`` predicts
    through its BatchNorm-folded copy (``PoseModel.fuse``) unless ``eval.fuse=false``.

    ``on_eval`` is handed to ``harness.eval.evaluate`` (e.g. a ``harness.eval.details.EvalDetails``)."""
    from harness.data.loader import resolve_num_workers
    from harness.eval import evaluate as _evaluate
    from harness.eval import predict

    if exp.eval.fuse and isinstance(model, PoseModel):
        model = model.fuse()  # an inference copy; the caller's (training) model is left as it is
    preds = predict(model, dataset, batch_size=exp.eval.batch_size, flip_test=exp.eval.flip_test, device=device,
                    num_workers=resolve_num_workers(exp.data.num_workers, exp.data.max_workers), progress=progress)
    ann_file = getattr(dataset, "ann_file", None)
    if ann_file is None:
        raise AttributeError(f"{type(dataset).__name__} has no 'ann_file'; cannot score predictions")
    e = exp.eval
    return _evaluate(preds, ann_file, dataset.meta, score_mode=e.score_mode, keypoint_score_thr=e.keypoint_score_thr,
                     nms_mode=e.nms_mode, nms_thr=e.nms_thr, on_eval=on_eval)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _split_metrics(metrics: dict) -> tuple[dict, dict]:
    """Metric names the results schema knows; anything else from the evaluator goes to ``extra``."""
    known = {k: float(v) for k, v in metrics.items() if k in METRIC_NAMES}
    other = {k: v for k, v in metrics.items() if k not in METRIC_NAMES}
    return known, other


def model_costs(exp: Experiment) -> ProfileStatic:
    """Params and GFLOPs of ``exp``'s pose model at its input size (``harness.profile.profile_static``
    with the experiment's keypoints and backbone overrides; cached per architecture)."""
    return profile_static(exp.model.name, tuple(exp.data.input_size), num_keypoints=exp.model.num_keypoints,
                          overrides=exp.model.overrides)


def make_record(exp: Experiment, *, model: nn.Module, dataset_name: str, split: str, boxes: str,
                metrics: dict, checkpoint: str | None, extra: dict | None = None) -> dict:
    """A result record (schema: ``results/README.md``) of ``model`` evaluated under ``exp``: ``params``
    counted on ``model``, ``gflops`` in the family's paper convention at ``exp.data.input_size`` (batch
    1), with fvcore's count and the convention's name in ``extra``."""
    known, other = _split_metrics(metrics)
    costs = model_costs(exp)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    extra = dict(extra or {})
    extra.update(gflops_fvcore=costs.gflops_fvcore, gflops_convention=costs.convention)
    if exp.init.pretrain != "none" and exp.init.weights:
        extra["init_weights"] = Path(exp.init.weights).name  # which ImageNet file initialised the backbone
        init_info = getattr(model, "init_info", None)  # set by init_backbone when this model was initialised
        if init_info:
            extra["init"] = dict(init_info)
    # Which split picked the best checkpoint (the OCHuman protocols differ only here).
    extra.setdefault("selection", f"{exp.data.val_dataset_name} {exp.data.val_split} ({exp.data.val_boxes} boxes)")
    if other:
        extra["other_metrics"] = other
    return dict(
        schema_version=1, kind="measured", model=exp.model.name, family=exp.family, experiment=exp.name,
        dataset=dataset_name, split=split, boxes=boxes, input_size=list(exp.data.input_size), metrics=known,
        params=count_params(model), gflops=costs.gflops_paper_convention, recipe=exp.recipe,
        source=exp.source.label() or None, pretrain=exp.init.pretrain, config_hash=config_hash(exp),
        seed=exp.train.seed, git_commit=git_commit(), hardware=machine_info(device), checkpoint=checkpoint,
        extra=extra,
    )


def write_record(record: dict, root: str | os.PathLike = "results/runs") -> Path:
    from harness.results import write_record as _write

    return _write(record, root=root)
