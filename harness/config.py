"""Typed, validated experiment configs and the registry of named experiments.

An :class:`Experiment` is a tree of small frozen dataclasses (model, data, init, optim, sched,
train, eval). Every dataclass validates itself on construction and names the offending field
(``train.batch_size: ...``), so a bad ``--set`` value fails before any work starts.

Experiments are built from a few numbers per paper row; two experiments that compare backbones
under one recipe differ only in ``model.*`` (``tests/test_config.py`` proves it with
:func:`diff`). The config is saved as ``config.json`` with every run and hashed
(:func:`config_hash`) into every result record.

Recipe sources (read from the released configs, not copied):

* HRNet, mmpose 1.3.2 ``td-hm_hrnet-w32_8xb64-210e_coco-256x192.py`` / ``..w48_8xb32..``:
  Adam lr 5e-4 (no weight decay), LinearLR warm-up 500 iters from factor 0.001, MultiStepLR
  x0.1 at epochs 170/200, 210 epochs, batch 8x64=512 (w32) and 8x32=256 (w48),
  ``auto_scale_lr.base_batch_size`` says the same; ImageNet-pretrained backbone; sigma 2 at
  256x192, 3 at 384x288. CrowdPose (``td-hm_hrnet-w32_8xb64-210e_crowdpose-256x192.py``): same.
* HRFormer, mmpose 1.3.2 ``td-hm_hrformer-{small,base}_8xb32-210e_coco-*.py``: AdamW lr 5e-4,
  betas (0.9, 0.999), weight decay 0.01 except ``relative_position_bias_table`` (decay 0), no
  gradient clipping, same warm-up and MultiStep schedule, 210 epochs, batch 8x32=256, SyncBN,
  drop_path_rate 0.1 (small) / 0.2 (base), ImageNet-pretrained backbone.
* HRNeXt, authors' ``configs/coco/hrnext_{small,base}_coco_*.py``: AdamW lr 4e-3, betas
  (0.9, 0.999), weight decay 0.01 (0 for ``relative_position_bias_table``), no gradient
  clipping, CosineAnnealing (by epoch, min_lr_ratio 0.01) with 500-iter linear warm-up from
  ratio 0.001, 300 epochs, batch 8x32=256 (CrowdPose: 8x64=512), SyncBN, ``with_cp=True``,
  drop_path_rate 0.1, ``load_from=None`` (from scratch). OCHuman rows evaluate the COCO-trained
  model on OCHuman val/test with ground-truth boxes (``use_gt_bbox=True``).
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

from harness.errors import ConfigError
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
    "Experiment",
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
Pretrain = Literal["none", "imagenet"]
Boxes = Literal["det", "gt"]

# Shared data lives next to the repo (CI mounts it as ../shared); relative paths keep configs
# portable between machines.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


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
    num_workers: int = field(default=2, metadata={"hash": False})
    # Training augmentation strength: a preset of harness.data.transforms.AUGMENT_PRESETS.
    augment: str = "standard"
    # Heatmap encoding/decoding: "msra" (Gaussian at the integer location, quarter-offset decoding; the
    # three papers), "dark" (unbiased Gaussian + DARK's Taylor refinement, Zhang et al. 2020) or "udp"
    # (UDP's unbiased warp and coding, Huang et al. 2020).
    codec: str = "msra"

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
        positive("data.num_workers", self.num_workers, allow_zero=True)
        choice("data.augment", self.augment, ("standard", "light", "flip-only"))
        choice("data.codec", self.codec, ("msra", "dark", "udp"))


@dataclass(frozen=True)
class InitCfg:
    """Backbone initialisation, the papers' "Pretrain" column.

    ``pretrain="imagenet"`` needs ``weights``: a file the user gives (never downloaded), loaded into
    the backbone only through ``harness.load_weights(..., backbone_only=True)``; the head stays fresh.
    """

    pretrain: Pretrain = "none"
    weights: Optional[str] = field(default=None, metadata={"hash": False})

    def __post_init__(self) -> None:
        choice("init.pretrain", self.pretrain, typing.get_args(Pretrain))
        if self.pretrain == "none" and self.weights:
            fail("init.weights", "given but init.pretrain='none'; set init.pretrain=imagenet")


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

    def __post_init__(self) -> None:
        choice("sched.name", self.name, typing.get_args(SchedName))
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

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class Experiment:
    name: str
    model: ModelCfg
    data: DataCfg
    init: InitCfg = InitCfg()
    optim: OptimCfg = OptimCfg()
    sched: SchedCfg = SchedCfg()
    train: TrainCfg = TrainCfg()
    eval: EvalCfg = EvalCfg()
    recipe: str = "fair"  # "fair" (HRNeXt's, shared by all families), "paper" (the family's own), "demo", "test"
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
        return self.model.name.split("-")[0]

    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path("work_dirs") / self.name


_SECTIONS = {"model": ModelCfg, "data": DataCfg, "init": InitCfg, "optim": OptimCfg, "sched": SchedCfg,
             "train": TrainCfg, "eval": EvalCfg}


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
    """Dotted keys whose values differ between two experiments (``name`` excluded)."""
    fa, fb = _flatten(a.to_dict()), _flatten(b.to_dict())
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if k != "name" and fa.get(k) != fb.get(k)}


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
# The registry. Paper rows are generated from small tables so each row states only what differs.

# (model, input size) pairs reported in the HRNeXt paper's COCO table.
_PAPER_ROWS = [
    ("hrnet-w32", (256, 192)), ("hrnet-w32", (384, 288)),
    ("hrnet-w48", (256, 192)), ("hrnet-w48", (384, 288)),
    ("hrformer-s", (256, 192)), ("hrformer-s", (384, 288)),
    ("hrformer-b", (256, 192)), ("hrformer-b", (384, 288)),
    ("hrnext-s", (256, 192)), ("hrnext-s", (384, 288)),
    ("hrnext-b", (256, 192)), ("hrnext-b", (384, 288)),
]

# Backbone fields of each model as released (part of the model, not of the recipe).
_MODEL_OVERRIDES = {
    "hrnet-w32": {}, "hrnet-w48": {},
    "hrformer-s": {"drop_path_rate": 0.1}, "hrformer-b": {"drop_path_rate": 0.2},
    "hrnext-s": {"drop_path_rate": 0.1}, "hrnext-b": {"drop_path_rate": 0.1},
}

# det_file "auto" = the layout's standard detection file under eval.root (harness.data.layout):
# COCO val2017 person_detection_results/COCO_val2017_detections_AP_H_56_person.json (the boxes the
# HRNet/HRFormer/HRNeXt papers use), CrowdPose annotations/det_for_crowd_test_0.1_0.5.json.
_DATASETS = {
    # name: keypoints, training data, evaluation dataset/splits/boxes
    "coco": dict(num_keypoints=17, dataset="coco", root="data/coco", eval_dataset="coco",
                 eval_root="data/coco", splits=("val",), boxes="det", det_file="auto"),
    # OCHuman has no training split: the COCO-trained model is evaluated with ground-truth boxes.
    "ochuman": dict(num_keypoints=17, dataset="coco", root="data/coco", eval_dataset="ochuman",
                    eval_root="data/ochuman", splits=("val", "test"), boxes="gt", det_file=None),
    "crowdpose": dict(num_keypoints=14, dataset="crowdpose", root="data/crowdpose", eval_dataset="crowdpose",
                      eval_root="data/crowdpose", splits=("test",), boxes="det", train_split="trainval",
                      det_file="auto"),
}


def _fair_recipe(dataset: str) -> dict:
    """HRNeXt's recipe, applied unchanged to every family."""
    return dict(
        init=InitCfg(pretrain="none"),
        optim=OptimCfg(name="adamw", lr=4e-3, weight_decay=0.01, betas=(0.9, 0.999)),
        sched=SchedCfg(name="cosine", warmup_iters=500, warmup_ratio=0.001, min_lr_ratio=0.01),
        train=TrainCfg(epochs=300, batch_size=512 if dataset == "crowdpose" else 256, sync_bn=True,
                       grad_checkpoint=True, val_interval=10, ckpt_interval=5),
    )


def _paper_recipe(model: str, dataset: str) -> dict:
    family = model.split("-")[0]
    if family == "hrnext":
        return _fair_recipe(dataset)
    milestones = SchedCfg(name="multistep", warmup_iters=500, warmup_ratio=0.001, milestones=(170, 200), gamma=0.1)
    if family == "hrnet":
        batch = 512 if (model == "hrnet-w32" or dataset == "crowdpose") else 256
        optim = OptimCfg(name="adam", lr=5e-4, weight_decay=0.0, betas=(0.9, 0.999), no_decay_keys=())
    else:  # hrformer
        batch = 256
        optim = OptimCfg(name="adamw", lr=5e-4, weight_decay=0.01, betas=(0.9, 0.999))
    # mmpose's HRFormer configs use SyncBN (norm_cfg type='SyncBN'); its HRNet configs plain BN.
    return dict(init=InitCfg(pretrain="imagenet"), optim=optim, sched=milestones,
                train=TrainCfg(epochs=210, batch_size=batch, sync_bn=family == "hrformer", grad_checkpoint=False,
                               val_interval=10, ckpt_interval=10))


def _paper_experiment(dataset: str, model: str, hw: tuple, recipe: str) -> Experiment:
    ds = _DATASETS[dataset]
    sigma = 2.0 if hw == (256, 192) else 3.0
    parts = _fair_recipe(dataset) if recipe == "fair" else _paper_recipe(model, dataset)
    return Experiment(
        name=f"{dataset}-{model}-{hw[0]}x{hw[1]}-{recipe}",
        model=ModelCfg(name=model, num_keypoints=ds["num_keypoints"], overrides=dict(_MODEL_OVERRIDES[model])),
        # Validation during training uses the detected boxes too (mmpose's val_dataloader bbox_file),
        # so "best checkpoint by AP" is chosen on the number the paper reports.
        data=DataCfg(dataset=ds["dataset"], root=ds["root"], input_size=hw, sigma=sigma,
                     train_split=ds.get("train_split", "train"), val_split="val" if dataset != "crowdpose" else "test",
                     val_boxes="det", det_file="auto"),
        eval=EvalCfg(dataset=ds["eval_dataset"], root=ds["eval_root"], splits=ds["splits"], boxes=ds["boxes"],
                     det_file=ds["det_file"], flip_test=True, batch_size=64),
        recipe=recipe,
        **parts,
    )


def _small_experiment(name: str, model: str, dataset: str, root: str, hw: tuple, recipe: str,
                      epochs: int, batch: int, val_split: str) -> Experiment:
    """Tiny CPU runs: demo variants, constant-ish lr, no warm-up dominating a short run."""
    return Experiment(
        name=name,
        model=ModelCfg(name=model, num_keypoints=17),
        data=DataCfg(dataset=dataset, root=root, input_size=hw, sigma=2.0, train_split="train",
                     val_split=val_split, val_boxes="gt", num_workers=0),
        init=InitCfg(pretrain="none"),
        optim=OptimCfg(name="adamw", lr=2e-3, weight_decay=0.01),
        sched=SchedCfg(name="cosine", warmup_iters=5, warmup_ratio=0.1, min_lr_ratio=0.1),
        train=TrainCfg(epochs=epochs, batch_size=batch, sync_bn=False, val_interval=epochs,
                       ckpt_interval=1, log_interval=5, deterministic=True),
        eval=EvalCfg(dataset=dataset, root="", splits=(val_split,), boxes="gt", flip_test=True, batch_size=16),
        recipe=recipe,
    )


def _demo_experiment(family: str) -> Experiment:
    """`make demo`'s recipe, identical for the three families (``harness.demo.DemoConfig`` has the same
    defaults; a test keeps them equal).  Tuned on the 2-core CPU machine: 128x96 crops (32x24 heatmaps;
    at 64x48 nothing beyond a mean pose was learnt), sigma 1.5, light augmentation, AdamW 5e-3 with a
    per-iteration cosine over 9 epochs of batch 32 (~980 iterations).  Single-seed probes at 6 epochs
    (hrnext-demo, val AP with detection boxes, sigma 2 unless said): this recipe 0.382, sigma 1.5 0.394
    (AP .75 0.25 -> 0.31); DARK codec 0.357; lr 1e-2 0.364; flip-only augmentation 0.309; 3000 training
    images for the same iterations 0.346.
    """
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


def _build_registry() -> dict[str, Experiment]:
    reg: dict[str, Experiment] = {}
    for dataset in _DATASETS:
        for model, hw in _PAPER_ROWS:
            for recipe in ("fair", "paper"):
                exp = _paper_experiment(dataset, model, hw, recipe)
                reg[exp.name] = exp
    coco_mini = os.path.relpath(SHARED / "data" / "coco-mini", Path(__file__).resolve().parents[1])
    for family in ("hrnet", "hrformer", "hrnext"):
        # The synthetic set comes from `python -m harness synth` (default root data/synthetic);
        # another root is one `--set data.root=DIR` away (eval.root follows data.root).
        reg[f"demo-{family}"] = _demo_experiment(family)
        reg[f"coco-mini-{family}"] = _small_experiment(
            f"coco-mini-{family}", f"{family}-demo", "coco", coco_mini, (64, 48), "test",
            epochs=2, batch=8, val_split="val")
    return reg


_REGISTRY = _build_registry()


def list_experiments() -> list[str]:
    return sorted(_REGISTRY)


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
