"""Typed, validated experiment configs and the registry of named experiments.

An :class:`Experiment` is a tree of small frozen dataclasses (model, data, init, optim, sched,
train, eval). Every dataclass validates itself on construction and names the offending field
(``train.batch_size: ...``), so a bad ``--set`` value fails before any work starts.

Experiments are built from a few numbers per paper row; two experiments that compare backbones
under one recipe differ only in ``model.*`` (``tests/test_config.py`` proves it with
:func:`diff`). The config is saved as ``config.json`` with every run and hashed
(:func:`config_hash`) into every result record.

Recipes (``Experiment.recipe``): every paper row exists as ``paper`` (the code that produced the
number in the HRNeXt paper's tables: the HRNet authors', the HRFormer authors', the HRNeXt authors'),
``mmpose`` (mmpose 1.x's model-zoo config, HRNet and HRFormer) and ``fair`` (HRNeXt's recipe for every
family). Each experiment names its source (``Experiment.source``: repository, commit, config file);
``tests/fixtures/recipe_facts/`` holds the values read from those files, and the tests compare every
registered experiment with them field by field.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import backbones
from harness.data.codecs import default_sigma
from harness.data.transforms import AUGMENT_PRESETS
from harness.errors import ConfigError
from harness.eval.options import NmsMode, ScoreMode, eval_option_problem
from harness.io import atomic_write_text
from harness.validate import check_hw, choice, coerce, fail, positive, scalar

__all__ = [
    "ConfigError",
    "ModelCfg",
    "DataCfg",
    "InitCfg",
    "OptimCfg",
    "SchedCfg",
    "TrainCfg",
    "EvalCfg",
    "SourceCfg",
    "Experiment",
    "register_experiment",
    "eval_protocol",
    "PAPER_ROWS",
    "row_experiment",
    "PRETRAINED_ENV",
    "get_experiment",
    "list_experiments",
    "apply_overrides",
    "config_hash",
    "diff",
    "load_config",
    "save_config",
]

AmpMode = Literal["none", "bf16", "fp16"]
OptimName = Literal["adam", "adamw", "sgd"]
SchedName = Literal["cosine", "multistep", "constant"]
WarmupStyle = Literal["mmcv", "mmengine"]
Pretrain = Literal["none", "imagenet"]
Boxes = Literal["det", "gt"]

@dataclass(frozen=True)
class ModelCfg:
    """Which pose model to build: ``harness.create_pose_model(name, num_keypoints, **overrides)``."""

    name: str
    num_keypoints: int = 17
    # Backbone constructor overrides (e.g. drop_path_rate); a plain JSON-able dict.
    overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            fail("model.name", f"must be a non-empty model name, got {self.name!r}")
        positive("model.num_keypoints", self.num_keypoints)
        if not isinstance(self.overrides, dict) or not all(isinstance(k, str) for k in self.overrides):
            fail("model.overrides", f"must be a dict with str keys, got {self.overrides!r}")


@dataclass(frozen=True)
class DataCfg:
    """Training/validation data. ``root`` may be relative to the repo root."""

    dataset: str
    root: str = field(default="data/coco", metadata={"hash": False})
    input_size: tuple = (256, 192)  # (H, W)
    sigma: float = 2.0  # heatmap Gaussian std in heatmap pixels
    train_split: str = "train"
    val_split: str = "val"
    # Person boxes for validation during training: "gt" or detections from det_file.
    val_boxes: Boxes = "gt"
    det_file: Optional[str] = field(default=None, metadata={"hash": False})
    det_score_thr: float = 0.0
    # Data loading (speed only, not hashed). num_workers: None = automatic, the CPU cores this process
    # may use (its affinity mask) divided by LOCAL_WORLD_SIZE, at most max_workers
    # (harness.data.loader.auto_num_workers); 0 loads in the main process. persistent_workers keeps
    # the worker processes alive across epochs; pin_memory page-locks batches on CUDA;
    # prefetch_factor is the number of batches each worker keeps ready.
    num_workers: Optional[int] = field(default=None, metadata={"hash": False})
    max_workers: int = field(default=16, metadata={"hash": False})
    persistent_workers: bool = field(default=True, metadata={"hash": False})
    pin_memory: bool = field(default=True, metadata={"hash": False})
    prefetch_factor: int = field(default=2, metadata={"hash": False})
    # Training augmentation: a preset of harness.data.transforms.AUGMENT_PRESETS (the sources' conventions
    # "mmpose0x", "mmpose1x", "hrnet"; "light", "flip-only" for short CPU runs).
    augment: str = "mmpose0x"
    # Half body needs more visible keypoints than this; None = the preset's (8). HRNeXt's CrowdPose
    # configs use 6 (num_joints_half_body=6).
    half_body_min_kpts: Optional[int] = None
    # Checkpoint selection on another dataset than the training one (HRNeXt's OCHuman configs train on
    # COCO and select on OCHuman val with GT boxes): "" = data.dataset / data.root.
    val_dataset: str = ""
    val_root: str = field(default="", metadata={"hash": False})
    # Heatmap encoding/decoding: "msra" (Gaussian at the integer location, quarter-offset decoding; the
    # three papers), "dark" (unbiased Gaussian + DARK's Taylor refinement, Zhang et al. 2020) or "udp"
    # (UDP's unbiased warp and coding, Huang et al. 2020).
    codec: str = "msra"
    # JPEG decoding: "full" (every image at full size: the reference pipelines' pixels), "roi" (only the
    # part a crop reads, for JPEGs with restart markers; same pixels up to the warp's rounding) or
    # "scaled" ("roi", and a crop that shrinks the image by 2, 4 or 8 decodes it at that fraction in
    # the DCT domain: slightly smoother crops of large people). See harness.data.decode.
    decode: str = "full"

    @property
    def val_dataset_name(self) -> str:
        """The dataset checkpoints are selected on (``val_dataset``, else the training dataset)."""
        return self.val_dataset or self.dataset

    def __post_init__(self) -> None:
        for name in ("dataset", "train_split", "val_split"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                fail(f"data.{name}", f"must be a non-empty string, got {v!r}")
        if not isinstance(self.root, str) or not self.root:
            fail("data.root", f"must be a directory path, got {self.root!r}")
        check_hw("data.input_size", self.input_size)
        positive("data.sigma", self.sigma, kind=(int, float))
        choice("data.val_boxes", self.val_boxes, typing.get_args(Boxes))
        if self.val_boxes == "det" and not self.det_file:
            fail("data.det_file", "is required when data.val_boxes='det'")
        positive("data.det_score_thr", self.det_score_thr, allow_zero=True, kind=(int, float))
        if self.num_workers is not None:
            positive("data.num_workers", self.num_workers, allow_zero=True)
        positive("data.max_workers", self.max_workers)
        positive("data.prefetch_factor", self.prefetch_factor)
        for name in ("persistent_workers", "pin_memory"):
            if not isinstance(getattr(self, name), bool):
                fail(f"data.{name}", f"must be true or false, got {getattr(self, name)!r}")
        choice("data.augment", self.augment, tuple(AUGMENT_PRESETS))
        if self.half_body_min_kpts is not None:
            positive("data.half_body_min_kpts", self.half_body_min_kpts, allow_zero=True)
        for name in ("val_dataset", "val_root"):
            if not isinstance(getattr(self, name), str):
                fail(f"data.{name}", f"must be a string ('' = the training one), got {getattr(self, name)!r}")
        choice("data.codec", self.codec, ("msra", "dark", "udp"))
        choice("data.decode", self.decode, ("full", "roi", "scaled"))  # harness.data.decode.DECODE_MODES


#: Environment variable naming the folder of ImageNet checkpoints (default: ``data/pretrained``).
PRETRAINED_ENV = "HRBENCH_PRETRAINED"


@dataclass(frozen=True)
class InitCfg:
    """Backbone initialisation, the papers' "Pretrain" column.

    ``pretrain="imagenet"`` needs ``weights``: a file the user provides (never downloaded), loaded into
    the backbone only through ``harness.load_weights(..., backbone_only=True)``; the head stays fresh.
    A bare file name (the recipes name the files their sources use, e.g. ``hrnet_w32-36af842e.pth``)
    is looked up in ``$HRBENCH_PRETRAINED``, else in ``data/pretrained/``; a path is used as given.
    ``strict`` (default) refuses a file whose keys do not fit the backbone, naming the missing and
    unexpected ones; ``init.strict=false`` loads what fits.
    """

    pretrain: Pretrain = "none"
    weights: Optional[str] = field(default=None, metadata={"hash": False})
    strict: bool = True

    def __post_init__(self) -> None:
        choice("init.pretrain", self.pretrain, typing.get_args(Pretrain))
        if self.pretrain == "none" and self.weights:
            fail("init.weights", "given but init.pretrain='none'; set init.pretrain=imagenet")
        if not isinstance(self.strict, bool):
            fail("init.strict", f"must be true or false, got {self.strict!r}")


@dataclass(frozen=True)
class OptimCfg:
    name: OptimName = "adamw"
    lr: float = 4e-3
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    momentum: float = 0.9  # sgd only
    # Parameters whose name contains one of these get weight decay 0 (HRFormer/HRNeXt configs).
    no_decay_keys: tuple = ("relative_position_bias_table",)

    def __post_init__(self) -> None:
        choice("optim.name", self.name, typing.get_args(OptimName))
        positive("optim.lr", self.lr, kind=(int, float))
        positive("optim.weight_decay", self.weight_decay, allow_zero=True, kind=(int, float))
        if not (isinstance(self.betas, tuple) and len(self.betas) == 2
                and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas)):
            fail("optim.betas", f"must be two numbers in [0, 1), got {self.betas!r}")
        positive("optim.momentum", self.momentum, allow_zero=True, kind=(int, float))
        if not (isinstance(self.no_decay_keys, tuple) and all(isinstance(k, str) and k for k in self.no_decay_keys)):
            fail("optim.no_decay_keys", f"must be a tuple of non-empty strings, got {self.no_decay_keys!r}")


@dataclass(frozen=True)
class SchedCfg:
    """Learning-rate schedule: linear warm-up (per iteration) times a per-epoch main schedule."""

    name: SchedName = "cosine"
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    milestones: tuple = (170, 200)  # epochs, multistep only
    gamma: float = 0.1
    min_lr_ratio: float = 0.01  # cosine only
    # True: the main schedule moves once per epoch (mmcv's by_epoch, the papers' recipes); False: every
    # iteration, over the whole run (``train.max_iters`` when set), which short runs need.
    by_epoch: bool = True
    # Where the linear warm-up ends: "mmcv" (1.x ``warmup='linear'``: factor 1 at iteration
    # ``warmup_iters``), "mmengine" (``LinearLR(begin=0, end=warmup_iters)``: factor 1 at
    # ``warmup_iters - 1``, mmpose 1.x's configs).
    warmup_style: WarmupStyle = "mmcv"

    def __post_init__(self) -> None:
        choice("sched.name", self.name, typing.get_args(SchedName))
        choice("sched.warmup_style", self.warmup_style, typing.get_args(WarmupStyle))
        if self.warmup_style == "mmengine" and self.warmup_iters == 1:
            fail("sched.warmup_iters", "must be 0 or >= 2 with warmup_style='mmengine' (LinearLR over end-1 steps)")
        if not isinstance(self.by_epoch, bool):
            fail("sched.by_epoch", f"must be true or false, got {self.by_epoch!r}")
        positive("sched.warmup_iters", self.warmup_iters, allow_zero=True)
        if not (isinstance(self.warmup_ratio, (int, float)) and 0 < self.warmup_ratio <= 1):
            fail("sched.warmup_ratio", f"must be in (0, 1], got {self.warmup_ratio!r}")
        if not (isinstance(self.milestones, tuple) and all(isinstance(m, int) and m > 0 for m in self.milestones)
                and list(self.milestones) == sorted(set(self.milestones))):
            fail("sched.milestones", f"must be increasing positive epochs, got {self.milestones!r}")
        positive("sched.gamma", self.gamma, kind=(int, float))
        if not (isinstance(self.min_lr_ratio, (int, float)) and 0 <= self.min_lr_ratio <= 1):
            fail("sched.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio!r}")


@dataclass(frozen=True)
class TrainCfg:
    epochs: int = 300
    batch_size: int = 256  # global, over all ranks
    amp: AmpMode = "none"
    clip_grad: Optional[float] = None  # max grad L2 norm; None = off
    grad_checkpoint: bool = False  # backbone with_cp
    sync_bn: bool = True  # only takes effect with >1 rank on GPU
    ema: bool = False
    ema_decay: float = 0.9998
    compile: bool = field(default=False, metadata={"hash": False})
    channels_last: bool = field(default=False, metadata={"hash": False})
    deterministic: bool = False
    seed: int = 0
    val_interval: int = 10  # epochs; 0 = no validation during training
    ckpt_interval: int = 5  # epochs
    ckpt_interval_iters: int = 0  # also every N iterations (mid-epoch); 0 = off
    log_interval: int = 50  # iterations between CSV/TensorBoard rows
    # Stop after this many iterations in total (smoke runs, or a run continued later with --resume
    # auto and a larger cap); 0 = no cap. Not hashed: it cuts a run short without changing it.
    max_iters: int = field(default=0, metadata={"hash": False})

    def __post_init__(self) -> None:
        positive("train.epochs", self.epochs)
        positive("train.batch_size", self.batch_size)
        choice("train.amp", self.amp, typing.get_args(AmpMode))
        if self.clip_grad is not None:
            positive("train.clip_grad", self.clip_grad, kind=(int, float))
        for name in ("grad_checkpoint", "sync_bn", "ema", "compile", "channels_last", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                fail(f"train.{name}", f"must be true or false, got {getattr(self, name)!r}")
        if not (isinstance(self.ema_decay, float) and 0 < self.ema_decay < 1):
            fail("train.ema_decay", f"must be a float in (0, 1), got {self.ema_decay!r}")
        positive("train.seed", self.seed, allow_zero=True)
        for name in ("val_interval", "ckpt_interval", "ckpt_interval_iters", "max_iters"):
            positive(f"train.{name}", getattr(self, name), allow_zero=True)
        positive("train.log_interval", self.log_interval)


@dataclass(frozen=True)
class EvalCfg:
    """What `python -m harness test` evaluates (and the final evaluation after training)."""

    dataset: str = "coco"
    root: str = field(default="", metadata={"hash": False})  # "" = the same folder as data.root
    splits: tuple = ("val",)
    boxes: Boxes = "det"
    # "auto" = the dataset layout's standard detection file under ``root``.
    det_file: Optional[str] = field(default="auto", metadata={"hash": False})
    det_score_thr: float = 0.0
    flip_test: bool = True
    batch_size: int = 64
    # Scoring and NMS of the predictions: mmpose CocoMetric's names, meanings and defaults.
    score_mode: ScoreMode = "bbox_keypoint"
    keypoint_score_thr: float = 0.2
    nms_mode: NmsMode = "oks_nms"
    nms_thr: float = 0.9
    # Predict with PoseModel.fuse(): BatchNorm folded into the convs (same heatmaps up to float rounding,
    # tested; speed only, so not hashed).
    fuse: bool = field(default=True, metadata={"hash": False})

    def __post_init__(self) -> None:
        if not isinstance(self.fuse, bool):
            fail("eval.fuse", f"must be true or false, got {self.fuse!r}")
        if not isinstance(self.dataset, str) or not self.dataset:
            fail("eval.dataset", f"must be a non-empty string, got {self.dataset!r}")
        if not isinstance(self.root, str):
            fail("eval.root", f"must be a directory path (or '' for data.root), got {self.root!r}")
        if not (isinstance(self.splits, tuple) and self.splits and all(isinstance(s, str) and s for s in self.splits)):
            fail("eval.splits", f"must be a non-empty tuple of split names, got {self.splits!r}")
        choice("eval.boxes", self.boxes, typing.get_args(Boxes))
        if self.boxes == "det" and not self.det_file:
            fail("eval.det_file", "is required when eval.boxes='det' (a detections JSON, or 'auto')")
        positive("eval.det_score_thr", self.det_score_thr, allow_zero=True, kind=(int, float))
        if not isinstance(self.flip_test, bool):
            fail("eval.flip_test", f"must be true or false, got {self.flip_test!r}")
        positive("eval.batch_size", self.batch_size)
        problem = eval_option_problem(self.score_mode, self.keypoint_score_thr, self.nms_mode, self.nms_thr)
        if problem:
            fail(f"eval.{problem[0]}", problem[1])


@dataclass(frozen=True)
class SourceCfg:
    """Where a recipe was read from: repository (``owner/name``), commit and config file in it.

    ``note`` says where the experiment departs from that file (e.g. a dataset the source has no
    config for). Provenance only: not part of :func:`config_hash`.
    """

    repo: str = ""
    commit: str = ""
    config: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("repo", "commit", "config", "note"):
            if not isinstance(getattr(self, name), str):
                fail(f"source.{name}", f"must be a string, got {getattr(self, name)!r}")

    def label(self) -> str:
        """``owner/name@commit7:path`` (empty when there is no source), for records and footnotes."""
        if not self.repo:
            return ""
        return f"{self.repo}@{self.commit[:7]}:{self.config}" if self.config else f"{self.repo}@{self.commit[:7]}"


@dataclass(frozen=True)
class Experiment:
    """One training/evaluation run, fully specified: model, data, initialisation, optimiser, schedule,
    training loop and evaluation protocol (one typed section each), plus the recipe it follows.

    ``recipe`` names the recipe family (``paper``, ``mmpose``, ``fair``, ``demo``, ...) and ``source``
    where it was read from.

    Validated on construction (errors name the field); frozen, so overrides make a new one
    (:func:`apply_overrides`, ``--set section.field=value``). :func:`config_hash` of everything but
    ``work_dir`` identifies the run in result records and done markers; ``to_dict``/``from_dict``
    round-trip through ``config.json``. Registered experiments: :func:`list_experiments`.
    """

    name: str
    model: ModelCfg
    data: DataCfg
    init: InitCfg = InitCfg()
    optim: OptimCfg = OptimCfg()
    sched: SchedCfg = SchedCfg()
    train: TrainCfg = TrainCfg()
    eval: EvalCfg = EvalCfg()
    recipe: str = "fair"  # "paper", "mmpose", "fair" (HRNeXt's, shared by all families), "demo", ...
    source: SourceCfg = field(default=SourceCfg(), metadata={"hash": False})
    work_dir: str = field(default="", metadata={"hash": False})  # "" = work_dirs/<name>

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError(f"name: must be a non-empty name without '/', got {self.name!r}")
        if not isinstance(self.recipe, str) or not self.recipe:
            raise ConfigError(f"recipe: must be a non-empty string, got {self.recipe!r}")
        for section, cls in _SECTIONS.items():
            if not isinstance(getattr(self, section), cls):
                raise ConfigError(f"{section}: must be a {cls.__name__}, got {type(getattr(self, section)).__name__}")
        if self.sched.name == "multistep" and self.sched.milestones and self.sched.milestones[-1] >= self.train.epochs:
            # Not an error in itself, but almost always a typo: the last decay would never happen.
            if self.sched.milestones[0] >= self.train.epochs:
                raise ConfigError(
                    f"sched.milestones: {self.sched.milestones} all lie beyond train.epochs={self.train.epochs}")

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return _to_jsonable(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Experiment":
        return _from_dict(cls, d, "")

    @property
    def family(self) -> str:
        """The model's family (``hrnet``, ``hrformer``, ``hrnext``), as the model zoo's registry states it."""
        return _family(self.model.name)

    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path("work_dirs") / self.name


_SECTIONS = {"model": ModelCfg, "data": DataCfg, "init": InitCfg, "optim": OptimCfg, "sched": SchedCfg,
             "train": TrainCfg, "eval": EvalCfg, "source": SourceCfg}


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass, overrides, hashing


def _to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    return obj


def _hashable_dict(obj: Any) -> Any:
    """Like _to_jsonable, minus fields marked ``hash=False`` (machine-local paths, speed knobs)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: _hashable_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("hash", True)}
    return _to_jsonable(obj)


def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _from_dict(cls: type, d: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or cls.__name__
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: must be an object, got {type(d).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; valid keys: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in d:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, d[name], f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(d[name], tp, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where}: {e}") from None


def valid_keys(exp: Experiment) -> list[str]:
    """Every dotted key ``--set`` accepts (dict-valued fields accept ``key.sub``)."""
    keys = []
    for f in dataclasses.fields(exp):
        v = getattr(exp, f.name)
        if dataclasses.is_dataclass(v):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(v)]
        else:
            keys.append(f.name)
    return keys


def apply_overrides(exp: Experiment, overrides: list[str] | dict[str, Any]) -> Experiment:
    """Return a copy of ``exp`` with ``key=value`` overrides applied and validated.

    Keys are dotted (``train.epochs=10``, ``data.input_size=128x96``,
    ``model.overrides.drop_path_rate=0.2``). Values are converted to the field's type; an unknown
    key raises :class:`ConfigError` listing the valid keys.
    """
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"{item!r}: overrides look like key=value (e.g. train.epochs=10)")
            k, v = item.split("=", 1)
            items.append((k.strip(), v))
    d = exp.to_dict()
    keys = valid_keys(exp)
    for key, value in items:
        parts = key.split(".")
        if parts[0] in _SECTIONS and len(parts) >= 2:
            section = d[parts[0]]
            if parts[1] not in section:
                raise ConfigError(f"{key}: unknown key; valid keys: {', '.join(keys)}")
            if len(parts) == 2:
                section[parts[1]] = value
            elif isinstance(section[parts[1]], dict) and len(parts) == 3:
                section[parts[1]][parts[2]] = scalar(value) if isinstance(value, str) else value
            else:
                raise ConfigError(f"{key}: unknown key; valid keys: {', '.join(keys)}")
        elif len(parts) == 1 and parts[0] in d and parts[0] not in _SECTIONS:
            d[parts[0]] = value
        else:
            raise ConfigError(f"{key}: unknown key; valid keys: {', '.join(keys)}")
    return Experiment.from_dict(d)


def config_hash(exp: Experiment) -> str:
    """sha256 of the canonical JSON of everything that can change a result.

    Machine-local paths and pure speed switches (``hash=False`` fields) are left out so the same
    experiment hashes the same on every machine.
    """
    canon = json.dumps(_hashable_dict(exp), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def diff(a: Experiment, b: Experiment) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two experiments (``name`` and ``source.*`` excluded)."""
    fa, fb = _flatten(a.to_dict()), _flatten(b.to_dict())
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if k != "name" and not k.startswith("source.") and fa.get(k) != fb.get(k)}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):  # an empty dict (no overrides) contributes no keys
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_config(exp: Experiment, path: str | os.PathLike) -> Path:
    """Write ``exp`` (plus its hash) as JSON, atomically."""
    path = Path(path)
    payload = {"config": exp.to_dict(), "config_hash": config_hash(exp)}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def load_config(path: str | os.PathLike) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{path}: a config file holds a JSON object, got a {type(payload).__name__}")
    try:
        return Experiment.from_dict(payload.get("config", payload))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------
# The registry. Paper rows are generated from small tables so each row states only what differs;
# tests/fixtures/recipe_facts/ holds the values read from each source and tests/test_recipes.py compares.

# (model, input size) pairs of the HRNeXt paper's COCO and OCHuman tables.
PAPER_ROWS = [
    ("hrnet-w32", (256, 192)), ("hrnet-w32", (384, 288)),
    ("hrnet-w48", (256, 192)), ("hrnet-w48", (384, 288)),
    ("hrformer-s", (256, 192)), ("hrformer-s", (384, 288)),
    ("hrformer-b", (256, 192)), ("hrformer-b", (384, 288)),
    ("hrnext-s", (256, 192)), ("hrnext-s", (384, 288)),
    ("hrnext-b", (256, 192)), ("hrnext-b", (384, 288)),
]

# Per-dataset protocol: training data, the split and boxes that select the best checkpoint, and what
# `test` evaluates. det_file "auto" = the layout's standard detection file (harness.data.layout): COCO
# val2017 COCO_val2017_detections_AP_H_56_person.json, CrowdPose det_for_crowd_test_0.1_0.5.json.
_DATASETS = {
    "coco": dict(num_keypoints=17, train=("coco", "data/coco", "train"), val=("val", "det"),
                 eval=("coco", "data/coco", ("val",), "det")),
    # OCHuman has no training split: a COCO-trained model evaluated with ground-truth boxes.
    "ochuman": dict(num_keypoints=17, train=("coco", "data/coco", "train"), val=("val", "det"),
                    eval=("ochuman", "data/ochuman", ("val", "test"), "gt")),
    "crowdpose": dict(num_keypoints=14, train=("crowdpose", "data/crowdpose", "trainval"), val=("test", "det"),
                      eval=("crowdpose", "data/crowdpose", ("test",), "det")),
}

# The two OCHuman checkpoint-selection protocols (experiment name suffix -> validation set).
_OCHUMAN_SELECTION = {
    "sel-coco": None,  # best by COCO val2017 AP (detected boxes), as for the COCO rows
    "sel-ochuman": ("ochuman", "data/ochuman", "val", "gt"),  # HRNeXt's hrnext_*_ochuman_*.py
}

HRNET_AUTHORS = ("leoxiaobin/deep-high-resolution-net.pytorch", "6f69e4676ad8d43d0d61b64b1b9726f0c369e7b1")
HRFORMER_AUTHORS = ("HRNet/HRFormer", "1245b88b5824fbd8cdb358b5ee909a4e537a2ef5")
HRNEXT_AUTHORS = ("ZiyiZhang27/HRNeXt", "8bbbb0f3067cde4ea2eb0238487da4090522b093")
MMPOSE_1X = ("open-mmlab/mmpose", "5408bc76f5b848cf925a0d1857899011d8c5b497")  # tag v1.3.2

# ImageNet checkpoints, as the sources name them (they are never downloaded: see InitCfg).
IMAGENET_WEIGHTS = {
    "paper": {"hrnet-w32": "hrnet_w32-36af842e.pth", "hrnet-w48": "hrnet_w48-8ef0771d.pth",
              "hrformer-s": "hrt_small.pth", "hrformer-b": "hrt_base.pth"},
    "mmpose": {"hrnet-w32": "hrnet_w32-36af842e.pth", "hrnet-w48": "hrnet_w48-8ef0771d.pth",
               "hrformer-s": "hrformer_small-09516375_20220226.pth",
               "hrformer-b": "hrformer_base-32815020_20220226.pth"},
}

_HRNEXT_NAMES = {"hrnext-s": "small", "hrnext-b": "base"}
_HRFORMER_NAMES = {"hrformer-s": "small", "hrformer-b": "base"}
_MMPOSE_HRFORMER = {"hrformer-s": "hrformer-small", "hrformer-b": "hrformer-base"}


def _family(model: str) -> str:
    return backbones.get_entry(model).family


def _drop_path_default(model: str) -> float:
    """The variant's own drop-path rate (``backbones``' variant table states it once)."""
    return float(backbones.get_config(model).drop_path_rate)


def _hw_name(hw: tuple) -> str:
    return f"{hw[0]}x{hw[1]}"


def _fair_recipe(model: str, hw: tuple, dataset: str) -> dict:
    """HRNeXt's recipe (``configs/<dataset>/hrnext_*.py``), applied unchanged to every family."""
    # Other families follow HRNeXt-S's config of the same size and dataset (only the backbone differs).
    size = _HRNEXT_NAMES.get(model, "small")
    return dict(
        source=SourceCfg(*HRNEXT_AUTHORS, f"configs/{dataset}/hrnext_{size}_{dataset}_{_hw_name(hw)}.py",
                         note="" if _family(model) == "hrnext" else f"HRNeXt's recipe applied to {model}"),
        augment="mmpose0x", half_body_min_kpts=6 if dataset == "crowdpose" else None,
        init=InitCfg(pretrain="none"),
        optim=OptimCfg(name="adamw", lr=4e-3, weight_decay=0.01, betas=(0.9, 0.999)),
        sched=SchedCfg(name="cosine", warmup_iters=500, warmup_ratio=0.001, min_lr_ratio=0.01),
        # 8 GPUs (HRNeXt README) x samples_per_gpu 32 (CrowdPose: 64).
        train=TrainCfg(epochs=300, batch_size=8 * (64 if dataset == "crowdpose" else 32), sync_bn=True,
                       grad_checkpoint=True, val_interval=10, ckpt_interval=5),
        overrides={},
    )


def _hrnet_authors_recipe(model: str, hw: tuple, dataset: str) -> dict:
    """The HRNet authors' ``experiments/coco/hrnet/w{32,48}_*_adam_lr1e-3.yaml`` with their training code."""
    width = model.split("-w")[1]
    return dict(
        source=SourceCfg(*HRNET_AUTHORS, f"experiments/coco/hrnet/w{width}_{_hw_name(hw)}_adam_lr1e-3.yaml"),
        augment="hrnet", half_body_min_kpts=None,
        init=InitCfg(pretrain="imagenet", weights=IMAGENET_WEIGHTS["paper"][model]),
        # lib/utils/utils.py get_optimizer: Adam(lr) without weight decay (WD is SGD's only).
        optim=OptimCfg(name="adam", lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999), no_decay_keys=()),
        sched=SchedCfg(name="multistep", warmup_iters=0, milestones=(170, 200), gamma=0.1),
        # GPUS (0,1,2,3) x BATCH_SIZE_PER_GPU 32 (24 for W48 at 384x288), DataParallel (no SyncBN);
        # validation and checkpoint every epoch (tools/train.py), TEST.USE_GT_BBOX true for selection.
        train=TrainCfg(epochs=210, batch_size=4 * (24 if (model == "hrnet-w48" and hw == (384, 288)) else 32),
                       sync_bn=False, val_interval=1, ckpt_interval=1),
        val_boxes="gt",
        overrides={},
    )


def _hrformer_authors_recipe(model: str, hw: tuple, dataset: str) -> dict:
    """The HRFormer authors' ``pose/configs/top_down/hrt/coco/hrt_{small,base}_coco_*.py`` (mmpose 0.x)."""
    base384 = model == "hrformer-b" and hw == (384, 288)
    drop = 0.3 if base384 else _drop_path_default(model)
    slip = model == "hrformer-s" and hw == (384, 288)
    return dict(
        source=SourceCfg(*HRFORMER_AUTHORS,
                         f"pose/configs/top_down/hrt/coco/hrt_{_HRFORMER_NAMES[model]}_coco_{_hw_name(hw)}.py",
                         note="init.weights hrt_small.pth: the config's pretrained='/path/to/hrt_base.pth' is a "
                              "slip (HRFormer-B weights do not fit HRFormer-S)" if slip else ""),
        augment="mmpose0x", half_body_min_kpts=None,
        init=InitCfg(pretrain="imagenet", weights=IMAGENET_WEIGHTS["paper"][model]),
        optim=OptimCfg(name="adamw", lr=5e-4, weight_decay=0.01, betas=(0.9, 0.999)),
        sched=SchedCfg(name="multistep", warmup_iters=500, warmup_ratio=0.001, milestones=(170, 200), gamma=0.1),
        # 8 GPUs (pose/run_dist.sh) x samples_per_gpu 32 (8 for HRFormer-B 384x288); fp16 dynamic loss scale.
        train=TrainCfg(epochs=210, batch_size=8 * (8 if base384 else 32), sync_bn=True, amp="fp16",
                       val_interval=10, ckpt_interval=10 if base384 else 5),
        overrides={} if drop == _drop_path_default(model) else {"drop_path_rate": drop},
    )


def _hrnext_authors_recipe(model: str, hw: tuple, dataset: str) -> dict:
    return _fair_recipe(model, hw, dataset)


def _mmpose_recipe(model: str, hw: tuple, dataset: str) -> dict:
    """mmpose 1.x (v1.3.2) model zoo ``td-hm_<model>_8xb<n>-210e_<dataset>-<size>.py``."""
    family = _family(model)
    if family == "hrnet":
        per_gpu = 64 if model == "hrnet-w32" else 32
        name = f"td-hm_{model}_8xb{per_gpu}-210e"
        optim = OptimCfg(name="adam", lr=5e-4, weight_decay=0.0, betas=(0.9, 0.999), no_decay_keys=())
        amp, sync_bn = "none", False
    else:
        per_gpu = 32
        name = f"td-hm_{_MMPOSE_HRFORMER[model]}_8xb32-210e"
        optim = OptimCfg(name="adamw", lr=5e-4, weight_decay=0.01, betas=(0.9, 0.999))
        amp, sync_bn = "fp16", True
    cfg_ds = "crowdpose" if dataset == "crowdpose" else "coco"
    return dict(
        source=SourceCfg(*MMPOSE_1X, f"configs/body_2d_keypoint/topdown_heatmap/{cfg_ds}/{name}_{cfg_ds}-{_hw_name(hw)}.py"),
        augment="mmpose1x", half_body_min_kpts=None,
        init=InitCfg(pretrain="imagenet", weights=IMAGENET_WEIGHTS["mmpose"][model]),
        optim=optim,
        sched=SchedCfg(name="multistep", warmup_iters=500, warmup_ratio=0.001, milestones=(170, 200), gamma=0.1,
                       warmup_style="mmengine"),
        train=TrainCfg(epochs=210, batch_size=8 * per_gpu, sync_bn=sync_bn, amp=amp, val_interval=10,
                       ckpt_interval=10),
        overrides={},
    )


_AUTHORS = {"hrnet": _hrnet_authors_recipe, "hrformer": _hrformer_authors_recipe, "hrnext": _hrnext_authors_recipe}


def _recipe_parts(recipe: str, model: str, hw: tuple, dataset: str) -> dict:
    if recipe == "fair":
        return _fair_recipe(model, hw, dataset)
    if recipe == "mmpose":
        return _mmpose_recipe(model, hw, dataset)
    return _AUTHORS[_family(model)](model, hw, dataset)


def _has_source(recipe: str, model: str, hw: tuple, dataset: str) -> bool:
    """Only rows whose source has a config: the HRNet/HRFormer authors and mmpose's HRFormer have no
    CrowdPose configs, mmpose 1.x has one CrowdPose HRNet config (W32 256x192), no HRNeXt ones."""
    family = _family(model)
    if recipe == "fair":
        return True
    if recipe == "mmpose":
        if family == "hrnext":
            return False
        return dataset != "crowdpose" or (model, hw) == ("hrnet-w32", (256, 192))
    return dataset != "crowdpose" or family == "hrnext"


def _paper_experiment(dataset: str, model: str, hw: tuple, recipe: str, selection: str = "") -> Experiment:
    ds = _DATASETS[dataset]
    parts = _recipe_parts(recipe, model, hw, dataset)
    train_ds, train_root, train_split = ds["train"]
    val_split, val_boxes = ds["val"]
    val_boxes = parts.pop("val_boxes", val_boxes)
    val_dataset = val_root = ""
    if selection and _OCHUMAN_SELECTION[selection]:
        val_dataset, val_root, val_split, val_boxes = _OCHUMAN_SELECTION[selection]
    eval_ds, eval_root, eval_splits, eval_boxes = ds["eval"]
    overrides = parts.pop("overrides")
    suffix = f"-{selection}" if selection else ""
    source: SourceCfg = parts.pop("source")
    notes = [source.note] if source.note else []
    if dataset == "ochuman" and "/ochuman/" not in source.config:
        notes.append("the COCO recipe, evaluated on OCHuman with GT boxes")
    if selection == "sel-coco" and "/ochuman/" in source.config:
        notes.append("best checkpoint by COCO val2017 AP instead of the config's OCHuman val")
    elif selection == "sel-ochuman" and "/ochuman/" not in source.config:
        notes.append("best checkpoint by OCHuman val AP (GT boxes), HRNeXt's OCHuman protocol")
    parts["source"] = dataclasses.replace(source, note="; ".join(notes))
    return Experiment(
        name=f"{dataset}-{model}-{_hw_name(hw)}-{recipe}{suffix}",
        model=ModelCfg(name=model, num_keypoints=ds["num_keypoints"], overrides=overrides),
        data=DataCfg(dataset=train_ds, root=train_root, input_size=hw, sigma=default_sigma(hw),
                     train_split=train_split, val_split=val_split, val_boxes=val_boxes,
                     det_file="auto" if val_boxes == "det" else None, augment=parts.pop("augment"),
                     half_body_min_kpts=parts.pop("half_body_min_kpts"), val_dataset=val_dataset, val_root=val_root),
        eval=EvalCfg(dataset=eval_ds, root=eval_root, splits=eval_splits, boxes=eval_boxes,
                     det_file="auto" if eval_boxes == "det" else None, flip_test=True, batch_size=64),
        recipe=recipe,
        **parts,
    )


def _demo_experiment(family: str) -> Experiment:
    """`make demo`'s recipe, identical for the three families (``harness.experiments.demo.DemoConfig``
    reads its defaults from here): 128x96 crops, sigma 1.5, light augmentation, AdamW 5e-3 with a
    per-iteration cosine over 9 epochs of batch 32 (the README's demo section says how it was chosen)."""
    return Experiment(
        name=f"demo-{family}",
        model=ModelCfg(name=f"{family}-demo", num_keypoints=17),
        data=DataCfg(dataset="synthetic", root="data/synthetic", input_size=(128, 96), sigma=1.5, train_split="train",
                     val_split="val", val_boxes="gt", num_workers=0, augment="light"),
        init=InitCfg(pretrain="none"),
        optim=OptimCfg(name="adamw", lr=5e-3, weight_decay=0.01),
        sched=SchedCfg(name="cosine", warmup_iters=50, warmup_ratio=0.1, min_lr_ratio=0.1, by_epoch=False),
        train=TrainCfg(epochs=9, batch_size=32, sync_bn=False, val_interval=0, ckpt_interval=1, log_interval=5,
                       deterministic=True, channels_last=True),
        eval=EvalCfg(dataset="synthetic", root="", splits=("val",), boxes="det", det_file="auto", flip_test=True,
                     batch_size=32),
        recipe="demo",
    )


RECIPES = ("paper", "mmpose", "fair")


def _build_registry() -> dict[str, Experiment]:
    reg: dict[str, Experiment] = {}
    for dataset in _DATASETS:
        for model, hw in PAPER_ROWS:
            for recipe in RECIPES:
                if not _has_source(recipe, model, hw, dataset):
                    continue
                for selection in (_OCHUMAN_SELECTION if dataset == "ochuman" else ("",)):
                    exp = _paper_experiment(dataset, model, hw, recipe, selection)
                    reg[exp.name] = exp
    for family in ("hrnet", "hrformer", "hrnext"):
        # The synthetic set comes from `python -m harness synth` (default root data/synthetic);
        # another root is one `--set data.root=DIR` away (eval.root follows data.root).
        reg[f"demo-{family}"] = _demo_experiment(family)
    return reg


_REGISTRY = _build_registry()


def eval_protocol(dataset: str) -> tuple[tuple[str, ...], str] | None:
    """(splits, boxes) a benchmark's numbers are reported on (COCO val/det, OCHuman val+test/gt,
    CrowdPose test/det), or None for a dataset without a registered protocol."""
    ds = _DATASETS.get(dataset)
    return (ds["eval"][2], ds["eval"][3]) if ds else None


def row_experiment(dataset: str, model: str, hw: tuple, recipe: str = "paper") -> str | None:
    """The registered experiment of a paper row under ``recipe`` (OCHuman: the COCO-selection one, whose
    evaluation is the same for both protocols), or None."""
    name = f"{dataset}-{model}-{_hw_name(hw)}-{recipe}" + ("-sel-coco" if dataset == "ochuman" else "")
    return name if name in _REGISTRY else None


def register_experiment(exp: Experiment, *, replace: bool = False) -> Experiment:
    """Add ``exp`` to the registry under ``exp.name`` (e.g. a project's own experiments, or a test's)."""
    if not isinstance(exp, Experiment):
        raise ConfigError(f"experiment: expected an Experiment, got {type(exp).__name__}")
    if exp.name in _REGISTRY and not replace and _REGISTRY[exp.name] != exp:
        raise ConfigError(f"experiment: {exp.name!r} is already registered (pass replace=True)")
    _REGISTRY[exp.name] = exp
    return exp


def list_experiments(recipe: str | None = None) -> list[str]:
    """Registered experiment names (only those of ``recipe`` when given)."""
    return sorted(n for n, e in _REGISTRY.items() if recipe is None or e.recipe == recipe)


def get_experiment(name: str, overrides: list[str] | dict | None = None) -> Experiment:
    """The registered experiment ``name`` (or a saved ``config.json`` path), with overrides applied."""
    if name in _REGISTRY:
        exp = _REGISTRY[name]
    elif name.endswith(".json") and Path(name).is_file():
        exp = load_config(name)
    else:
        close = [n for n in _REGISTRY if name in n][:8]
        hint = f"; did you mean one of {close}" if close else "; see `python -m harness train --list`"
        raise ConfigError(f"experiment: unknown experiment {name!r}{hint}")
    return apply_overrides(exp, overrides) if overrides else exp
