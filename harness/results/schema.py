"""Typed, validated records of the results store: measured runs (written by evaluation) and profiles.

A run record is the JSON document the engine writes after an evaluation; a profile record is the JSON
document the profiler caches. Both are validated field by field so that a typo or a missing value is
reported with the field's name instead of turning into a silently blank table cell later.
"""
from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Mapping

from harness.errors import RecordError
from harness.eval.options import CROWD_METRIC_NAMES, METRIC_NAMES as EVAL_METRIC_NAMES
from harness.validate import check_hw, is_finite_number, is_integer

SCHEMA_VERSION = 1

# mmpose's metric names (harness.eval.options); CrowdPose adds the easy/medium/hard crowd-index splits.
COCO_METRICS = EVAL_METRIC_NAMES
CROWDPOSE_METRICS = tuple(n for n in CROWD_METRIC_NAMES if n not in EVAL_METRIC_NAMES)
METRIC_NAMES = COCO_METRICS + CROWDPOSE_METRICS

BOXES = ("det", "gt")
PRETRAIN = ("none", "imagenet")

# Registry names and dataset names become path components: keep them to a safe alphabet.
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_HEX = re.compile(r"^[0-9a-zA-Z]{8,}$")

_FAMILIES = {"hrnet": "HRNet", "hrformer": "HRFormer", "hrnext": "HRNeXt"}
FAMILY_ORDER = ("HRNet", "HRFormer", "HRNeXt")


def canonical_family(name: str) -> str:
    """'hrnext' / 'HRNeXt' -> 'HRNeXt'; an unknown family keeps its spelling."""
    return _FAMILIES.get(str(name).lower(), str(name))


def display_name(model: str) -> str:
    """Registry name -> the paper's spelling: 'hrnet-w32' -> 'HRNet-W32', 'hrnext-s' -> 'HRNeXt-S'."""
    prefix, _, suffix = model.partition("-")
    fam = _FAMILIES.get(prefix)
    if fam is None:
        return model
    return f"{fam}-{suffix.upper()}" if suffix else fam


# The kit's checks accept numpy scalars from an evaluator; they are converted to plain int/float below.
_is_int = is_integer
_is_num = is_finite_number


def _need(cond: bool, fieldname: str, msg: str) -> None:
    if not cond:
        raise RecordError(f"field {fieldname!r}: {msg}")


def _check_str(value: Any, name: str, *, slug: bool = False, choices: tuple[str, ...] | None = None) -> None:
    _need(isinstance(value, str) and value != "", name, f"expected a non-empty string, got {value!r}")
    if slug:
        _need(bool(_SLUG.match(value)), name, f"{value!r} must be lower-case [a-z0-9_.-] (it is a path component)")
    if choices is not None:
        _need(value in choices, name, f"{value!r} is not one of {list(choices)}")


def _check_hw(value: Any, name: str = "input_size") -> tuple[int, int]:
    return check_hw(f"field {name!r}", value, multiple_of=1, error=RecordError)


def _check_date(value: Any, name: str = "date") -> None:
    _need(isinstance(value, str), name, f"expected an ISO-8601 string, got {value!r}")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"field {name!r}: {value!r} is not an ISO-8601 date") from None


def _check_metrics(value: Any) -> None:
    _need(isinstance(value, Mapping) and len(value) > 0, "metrics", f"expected a non-empty mapping, got {value!r}")
    unknown = sorted(set(value) - set(METRIC_NAMES))
    _need(not unknown, "metrics", f"unknown metric name(s) {unknown}; known: {list(METRIC_NAMES)}")
    _need("AP" in value, "metrics", "'AP' is required")
    for k, v in value.items():
        # COCOeval reports -1 for an area range with no ground truth (e.g. AP (M) on a crowd set).
        _need(_is_num(v) and (0.0 <= float(v) <= 1.0 or float(v) == -1.0), f"metrics.{k}",
              f"expected a number in [0, 1] (or -1 for 'no ground truth'), got {v!r}")


def _check_breakdown(value: Any) -> None:
    """``{"kind", "attributes": [{"attribute", "bins": [{"bin", "people", "AP", ...}]}]}`` (harness.eval.breakdown)."""
    if value is None:
        return
    _need(isinstance(value, Mapping) and isinstance(value.get("kind"), str)
          and isinstance(value.get("attributes"), list), "breakdown",
          f"expected {{'kind': str, 'attributes': [...]}}, got {value!r}")
    for i, attr in enumerate(value["attributes"]):
        name = f"breakdown.attributes[{i}]"
        _need(isinstance(attr, Mapping) and isinstance(attr.get("attribute"), str)
              and isinstance(attr.get("bins"), list), name, "expected {'attribute': str, 'bins': [...]}")
        for j, b in enumerate(attr["bins"]):
            bname = f"{name}.bins[{j}]"
            _need(isinstance(b, Mapping) and isinstance(b.get("bin"), str) and _is_int(b.get("people"))
                  and b["people"] >= 0, bname, "expected {'bin': str, 'people': int >= 0, 'AP': ...}")
            for k in ("AP", "AP .5", "AP .75", "AR"):
                v = b.get(k)
                _need(v is None or (_is_num(v) and 0.0 <= float(v) <= 1.0), f"{bname}.{k}",
                      f"expected a number in [0, 1] or null, got {v!r}")


def _check_predictions(value: Any) -> None:
    if value is None:
        return
    _need(isinstance(value, Mapping) and isinstance(value.get("file"), str) and value["file"]
          and isinstance(value.get("ann_file"), str) and value["ann_file"], "predictions",
          f"expected {{'file': path relative to the record, 'ann_file': path, ...}}, got {value!r}")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One evaluation result of one model on one dataset split (a JSON file under ``results/runs``).

    ``input_size`` is (H, W); ``params`` counts the pose model's parameters; ``metrics`` uses mmpose's
    names in [0, 1].
    """

    model: str
    family: str
    experiment: str
    dataset: str
    split: str
    boxes: str
    input_size: list[int]
    metrics: dict[str, float]
    params: int
    recipe: str
    pretrain: str
    config_hash: str
    seed: int
    gflops: float | None = None
    # Where the recipe was read from, ``owner/name@commit:config`` (harness.config.SourceCfg.label).
    source: str | None = None
    git_commit: str | None = None
    hardware: str | dict | None = None
    date: str = field(default_factory=now_iso)
    checkpoint: str | None = None
    extra: dict = field(default_factory=dict)
    #: AP/AR per occlusion bin (``--breakdown``); see harness.eval.breakdown
    breakdown: dict | None = None
    #: the post-processed COCO results this record was scored on: ``file`` (relative to the record's
    #: folder), ``ann_file``, ``dataset`` -- what ``python -m harness compare --runs`` needs
    predictions: dict | None = None
    schema_version: int = SCHEMA_VERSION
    kind: str = "measured"

    def __post_init__(self) -> None:
        _need(self.schema_version == SCHEMA_VERSION, "schema_version",
              f"unsupported version {self.schema_version!r} (this code reads {SCHEMA_VERSION})")
        _check_breakdown(self.breakdown)
        _check_predictions(self.predictions)
        _need(self.kind == "measured", "kind", f"expected 'measured', got {self.kind!r}")
        _check_str(self.model, "model", slug=True)
        _check_str(self.family, "family")
        self.family = canonical_family(self.family)
        _check_str(self.experiment, "experiment")
        _check_str(self.dataset, "dataset", slug=True)
        _check_str(self.split, "split")
        _check_str(self.boxes, "boxes", choices=BOXES)
        self.input_size = list(_check_hw(self.input_size))
        _check_metrics(self.metrics)
        self.metrics = {k: float(v) for k, v in self.metrics.items()}
        _need(_is_int(self.params) and self.params > 0, "params", f"expected a positive integer, got {self.params!r}")
        self.params = int(self.params)
        _need(self.gflops is None or (_is_num(self.gflops) and self.gflops > 0), "gflops",
              f"expected a positive number or null, got {self.gflops!r}")
        self.gflops = None if self.gflops is None else float(self.gflops)
        _check_str(self.recipe, "recipe")
        _need(self.source is None or isinstance(self.source, str), "source",
              f"expected a string or null, got {self.source!r}")
        _check_str(self.pretrain, "pretrain", choices=PRETRAIN)
        _need(isinstance(self.config_hash, str) and bool(_HEX.match(self.config_hash)), "config_hash",
              f"expected >= 8 alphanumeric characters, got {self.config_hash!r}")
        _need(_is_int(self.seed), "seed", f"expected an integer, got {self.seed!r}")
        self.seed = int(self.seed)
        _need(self.git_commit is None or isinstance(self.git_commit, str), "git_commit",
              f"expected a string or null, got {self.git_commit!r}")
        _need(self.hardware is None or isinstance(self.hardware, (str, dict)), "hardware",
              f"expected a string, a mapping or null, got {self.hardware!r}")
        _check_date(self.date)
        _need(self.checkpoint is None or isinstance(self.checkpoint, str), "checkpoint",
              f"expected a path string or null, got {self.checkpoint!r}")
        _need(isinstance(self.extra, dict), "extra", f"expected a mapping, got {self.extra!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunRecord":
        """Validate a decoded JSON object; missing or unknown fields are named in the error."""
        return _from_dict(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProfileRecord:
    """A cached profile of one model at one input size (a JSON file under ``results/profiles``).

    ``gflops_paper_convention`` follows the papers' counting (``convention`` says which); tables and
    figures prefer it over the raw fvcore count.
    """

    model: str
    input_size: list[int]
    params: int
    gflops_fvcore: float | None = None
    gflops_paper_convention: float | None = None
    convention: str | None = None
    latency: dict = field(default_factory=dict)
    hardware: str | dict | None = None
    date: str | None = None
    schema_version: int = SCHEMA_VERSION
    kind: str = "profile"

    def __post_init__(self) -> None:
        _need(self.schema_version == SCHEMA_VERSION, "schema_version",
              f"unsupported version {self.schema_version!r} (this code reads {SCHEMA_VERSION})")
        _need(self.kind == "profile", "kind", f"expected 'profile', got {self.kind!r}")
        _check_str(self.model, "model", slug=True)
        self.input_size = list(_check_hw(self.input_size))
        _need(_is_int(self.params) and self.params > 0, "params", f"expected a positive integer, got {self.params!r}")
        self.params = int(self.params)
        for name in ("gflops_fvcore", "gflops_paper_convention"):
            v = getattr(self, name)
            _need(v is None or (_is_num(v) and v > 0), name, f"expected a positive number or null, got {v!r}")
            setattr(self, name, None if v is None else float(v))
        _need(self.gflops_fvcore is not None or self.gflops_paper_convention is not None, "gflops_fvcore",
              "a profile needs gflops_fvcore or gflops_paper_convention")
        _need(isinstance(self.latency, dict), "latency", f"expected a mapping, got {self.latency!r}")
        if self.date is not None:
            _check_date(self.date)

    @property
    def gflops(self) -> float:
        return self.gflops_paper_convention if self.gflops_paper_convention is not None else self.gflops_fvcore

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProfileRecord":
        return _from_dict(cls, d)


def _from_dict(cls, d: Mapping[str, Any]):
    if not isinstance(d, Mapping):
        raise RecordError(f"expected a JSON object, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [n for n in required if n not in d]
    if missing:
        raise RecordError(f"partial record: missing field(s) {missing}")
    unknown = sorted(set(d) - names)
    if unknown:
        raise RecordError(f"unknown field(s) {unknown}")
    try:
        return cls(**dict(d))
    except TypeError as e:  # pragma: no cover - guarded by the checks above
        raise RecordError(str(e)) from None

