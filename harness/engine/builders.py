"""The engine's seams to the rest of the harness: model, data, evaluation, result records.

The trainer calls these through the module (``builders.build_model(...)``), never by direct
import, so tests can substitute tiny stand-ins with ``monkeypatch.setattr(builders, ...)``.
"""
from __future__ import annotations

import inspect
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.config import Experiment, config_hash
from harness.errors import ConfigError, UsageError

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


def init_backbone(model: nn.Module, exp: Experiment) -> None:
    """Apply ``init.pretrain``: ImageNet weights go into the backbone only; the head stays fresh."""
    if exp.init.pretrain == "none":
        return
    if not exp.init.weights:
        raise ValueError(f"init.weights: recipe {exp.recipe!r} starts from ImageNet-pretrained backbone weights "
                         f"(init.pretrain=imagenet); pass the file with --set init.weights=PATH")
    path = resolve_path(exp.init.weights)
    if not path.is_file():
        raise FileNotFoundError(f"init.weights: {path} does not exist")
    from harness import load_weights

    report = load_weights(model, str(path), strict=False, backbone_only=True)
    log.info("initialised backbone from %s: %s", path, report.summary() if hasattr(report, "summary") else report)


def build_dataset(exp: Experiment, split: str, *, train: bool, eval_set: bool = False):
    """A TopDownDataset for ``split``; ``eval_set`` picks the eval section's dataset/boxes."""
    from harness.data import build_dataset as _build

    if eval_set:
        name, root = exp.eval.dataset, exp.eval.root or exp.data.root
        det_file = exp.eval.det_file if exp.eval.boxes == "det" else None
        thr = exp.eval.det_score_thr
    else:
        name, root = exp.data.dataset, exp.data.root
        det_file = exp.data.det_file if (not train and exp.data.val_boxes == "det") else None
        thr = exp.data.det_score_thr
    from harness.data.transforms import AUGMENT_PRESETS

    kwargs: dict[str, Any] = dict(input_size=tuple(exp.data.input_size), train=train,
                                  det_file=_det_path(det_file),
                                  det_score_thr=thr, seed=exp.train.seed,
                                  augment=AUGMENT_PRESETS[exp.data.augment])
    if "codec" in inspect.signature(_build).parameters:
        # The experiment's sigma (2 at 256x192, 3 at 384x288 in the papers) rather than the data
        # module's size-based default, so `--set data.sigma=...` ablations reach the targets.
        from harness.data import HeatmapCodec

        h, w = exp.data.input_size
        sigma = float(exp.data.sigma)
        kwargs["codec"] = HeatmapCodec(input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=sigma,
                                       blur_kernel_size=11 if sigma <= 2 else 17,
                                       dark=exp.data.codec == "dark", udp=exp.data.codec == "udp")
    return _build(name, str(resolve_path(root)), split, **kwargs)


def _det_path(det_file: str | None) -> str | None:
    if not det_file or det_file == "auto":  # "auto": the data layout's standard file
        return det_file or None
    return str(resolve_path(det_file))


def evaluate(model: nn.Module, dataset, exp: Experiment, *, device: torch.device, progress: bool = True) -> dict:
    """Predict on ``dataset`` and score with COCO-style OKS metrics -> {"AP": ..., ...}."""
    from harness.eval import evaluate as _evaluate
    from harness.eval import predict

    preds = predict(model, dataset, batch_size=exp.eval.batch_size, flip_test=exp.eval.flip_test,
                    device=device, num_workers=exp.data.num_workers, progress=progress)
    ann_file = getattr(dataset, "ann_file", None)
    if ann_file is None:
        raise AttributeError(f"{type(dataset).__name__} has no 'ann_file'; cannot score predictions")
    return _evaluate(preds, ann_file, dataset.meta)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: nn.Module, input_hw: tuple[int, int]) -> float | None:
    try:
        from harness.profile import count_gflops as _count
    except ImportError:
        return None
    try:
        return float(_count(model, tuple(input_hw)))
    except Exception as e:  # FLOPs are informative; never fail an evaluation over them
        log.warning("FLOP count failed for %s: %s", type(model).__name__, e)
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_name() -> str:
    try:  # Linux: the marketing name is more useful in a results table than "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    hw = {"cpu": _cpu_name(), "cpu_count": os.cpu_count(),
          "torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
        hw["gpu_count"] = torch.cuda.device_count()
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        hw["world_size"] = world
    return hw


# Metric names the results schema knows; anything else from the evaluator goes to ``extra``.
def _split_metrics(metrics: dict) -> tuple[dict, dict]:
    try:
        from harness.results import METRIC_NAMES
    except ImportError:
        METRIC_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)",
                        "AP(E)", "AP(M)", "AP(H)")
    known = {k: float(v) for k, v in metrics.items() if k in METRIC_NAMES}
    other = {k: v for k, v in metrics.items() if k not in METRIC_NAMES}
    return known, other


def make_record(exp: Experiment, *, model: nn.Module, dataset_name: str, split: str, boxes: str,
                metrics: dict, checkpoint: str | None, extra: dict | None = None,
                gflops: float | None = None) -> dict:
    known, other = _split_metrics(metrics)
    extra = dict(extra or {})
    if exp.init.pretrain != "none" and exp.init.weights:
        extra["init_weights"] = Path(exp.init.weights).name  # which ImageNet file initialised the backbone
    if other:
        extra["other_metrics"] = other
    return dict(
        schema_version=1, kind="measured", model=exp.model.name, family=exp.family, experiment=exp.name,
        dataset=dataset_name, split=split, boxes=boxes, input_size=list(exp.data.input_size), metrics=known,
        params=count_params(model), gflops=gflops, recipe=exp.recipe, pretrain=exp.init.pretrain,
        config_hash=config_hash(exp), seed=exp.train.seed, git_commit=git_commit(), hardware=hardware(),
        checkpoint=checkpoint, extra=extra,
    )


def write_record(record: dict, root: str | os.PathLike = "results/runs") -> Path:
    from harness.results import write_record as _write

    return _write(record, root=root)
