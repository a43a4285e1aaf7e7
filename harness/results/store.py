"""The results store on disk: write measured run records, read everything into one DataFrame.

Layout (under ``root``, default ``results/``)::

    reported/*.csv          rows copied from papers (kind=reported), versioned with the code
    reported/other_sources/*.csv   other sources' published figures for those rows (df.attrs["other_sources"])
    runs/<dataset>/<model>/<date>_<hash8>_<pid>_<uuid6>.json   measured runs (kind=measured)
    profiles/**/*.json      cached profiler output (kind=profile)

The DataFrame schema is documented in ``results/README.md`` and in :data:`COLUMNS`.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from harness.errors import ResultsError
from harness.io import atomic_write_text

from .schema import (
    BOXES,
    METRIC_NAMES,
    PRETRAIN,
    ProfileRecord,
    RecordError,
    RunRecord,
    canonical_family,
    display_name,
)

log = logging.getLogger(__name__)

# One row per result. Metric columns use mmpose's names; -1 ("no ground truth") is read as NaN.
COLUMNS: tuple[str, ...] = (
    "kind", "model", "family", "display_name", "dataset", "split", "boxes", "input_h", "input_w",
    "pretrain", "params", "params_m", "gflops", *METRIC_NAMES,
    "experiment", "recipe", "seed", "config_hash", "git_commit", "hardware", "date", "checkpoint",
    "gflops_fvcore", "gflops_paper_convention", "convention", "latency", "extra", "source",
    "recipe_source", "file",
)

# The columns a reported CSV must have (the paper's table plus provenance).
REPORTED_COLUMNS: tuple[str, ...] = (
    "model", "family", "display_name", "dataset", "split", "boxes", "input_h", "input_w", "pretrain",
    "params_m", "gflops", "AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "source", "kind",
)

# Other sources' published figures for the reported rows (the original authors' READMEs, mmpose's model
# zoo): one metric value per line, with where it was read (repository, 40-hex commit, file, line).
OTHER_SOURCE_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "split", "boxes", "input_h", "input_w", "metric", "value",
    "source", "repo", "commit", "path", "line",
)


# ----------------------------------------------------------------------------------------------- write


def write_record(record: Mapping[str, Any], root: str | os.PathLike = "results/runs") -> Path:
    """Validate a measured run record and write it as JSON to a new, unique file; return its path.

    The path is ``<root>/<dataset>/<model>/<date>_<config_hash[:8]>_<pid>_<uuid4[:6]>.json``: the pid
    and random suffix keep concurrent runs (seeds, array jobs) from ever writing the same file.
    ``schema_version``, ``kind``, ``date``, ``gflops``, ``git_commit``, ``hardware``, ``checkpoint`` and
    ``extra`` may be omitted; every other field is required (see :class:`RunRecord`).
    Raises :class:`RecordError` naming the offending field.
    """
    rec = RunRecord.from_dict(record)
    stamp = datetime.fromisoformat(rec.date).strftime("%Y%m%dT%H%M%S")
    name = f"{stamp}_{rec.config_hash[:8]}_{os.getpid()}_{uuid.uuid4().hex[:6]}.json"
    path = Path(root) / rec.dataset / rec.model / name
    try:
        text = json.dumps(rec.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise RecordError(f"field 'extra': not JSON-serialisable ({e})") from None
    atomic_write_text(path, text)
    log.info("wrote run record %s", path)
    return path


# ------------------------------------------------------------------------------------------------ read


def _hardware_str(hw: Any) -> str | None:
    if hw is None or isinstance(hw, str):
        return hw
    return ", ".join(f"{k}={v}" for k, v in hw.items())


def _metric(v: float | None) -> float:
    return math.nan if v is None or v == -1.0 else float(v)


def _measured_source(rec: RunRecord) -> str:
    """The footnote text of a measured row: the experiment, and the code its recipe was read from."""
    if rec.source:
        return f"measured: {rec.experiment} (recipe {rec.recipe} from {rec.source})"
    return f"measured: {rec.experiment}"


def _run_row(rec: RunRecord, path: Path) -> dict[str, Any]:
    h, w = rec.input_size
    row: dict[str, Any] = {
        "kind": "measured", "model": rec.model, "family": rec.family, "display_name": display_name(rec.model),
        "dataset": rec.dataset, "split": rec.split, "boxes": rec.boxes, "input_h": h, "input_w": w,
        "pretrain": rec.pretrain, "params": rec.params, "params_m": rec.params / 1e6,
        "gflops": math.nan if rec.gflops is None else float(rec.gflops),
        "experiment": rec.experiment, "recipe": rec.recipe, "seed": rec.seed, "config_hash": rec.config_hash,
        "git_commit": rec.git_commit, "hardware": _hardware_str(rec.hardware), "date": rec.date,
        "checkpoint": rec.checkpoint, "extra": rec.extra, "source": _measured_source(rec),
        "recipe_source": rec.source, "file": str(path),
    }
    row.update({k: _metric(v) for k, v in rec.metrics.items()})
    return row


def _profile_row(rec: ProfileRecord, path: Path) -> dict[str, Any]:
    h, w = rec.input_size
    return {
        "kind": "profile", "model": rec.model, "family": canonical_family(rec.model.split("-")[0]),
        "display_name": display_name(rec.model), "input_h": h, "input_w": w,
        "params": rec.params, "params_m": rec.params / 1e6, "gflops": float(rec.gflops),
        "gflops_fvcore": rec.gflops_fvcore, "gflops_paper_convention": rec.gflops_paper_convention,
        "convention": rec.convention, "latency": rec.latency, "hardware": _hardware_str(rec.hardware),
        "date": rec.date, "source": "profile", "file": str(path),
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise RecordError(f"not UTF-8 text ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise RecordError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def _read_csv(path: Path) -> list[list[str]]:
    """The rows of a CSV file (header first); an unreadable or empty file is a :class:`RecordError`."""
    # The csv module, not pandas: pandas silently turns a row with one cell too many into an index.
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise RecordError(f"unreadable CSV ({type(e).__name__}: {e})") from None
    if not table:
        raise RecordError("empty file")
    return table


def _reported_rows(path: Path) -> list[dict[str, Any]]:
    """Read one reported CSV; any bad cell makes the whole file bad (a paper table is all-or-nothing)."""
    table = _read_csv(path)
    header = table[0]
    body = [(i, r) for i, r in enumerate(table[1:], start=2) if r]  # line 1 is the header
    missing = [c for c in REPORTED_COLUMNS if c not in header]
    if missing:
        raise RecordError(f"missing column(s) {missing}")
    extra_cols = sorted(set(header) - set(REPORTED_COLUMNS) - set(METRIC_NAMES))
    if extra_cols:
        raise RecordError(f"unknown column(s) {extra_cols}")
    if not body:
        raise RecordError("no rows")
    rows = []
    metric_cols = [c for c in header if c in METRIC_NAMES]
    for i, cells in body:
        where = f"line {i}"
        if len(cells) != len(header):
            raise RecordError(f"{where}: {len(cells)} cells, the header has {len(header)}")
        r = dict(zip(header, cells))
        try:
            if r["kind"] != "reported":
                raise ValueError(f"column 'kind': expected 'reported', got {r['kind']!r}")
            for col, choices in (("boxes", BOXES), ("pretrain", PRETRAIN)):
                if r[col] not in choices:
                    raise ValueError(f"column {col!r}: {r[col]!r} is not one of {list(choices)}")
            for col in ("model", "family", "display_name", "dataset", "split", "source"):
                if not r[col].strip():
                    raise ValueError(f"column {col!r} is empty")
            ih, iw = int(r["input_h"]), int(r["input_w"])
            pm, gf = float(r["params_m"]), float(r["gflops"])
            if ih <= 0 or iw <= 0 or not (pm > 0 and gf > 0):
                raise ValueError("input size, params_m and gflops must be positive")
            metrics = {}
            for c in metric_cols:
                v = float(r[c]) if r[c].strip() else math.nan
                if not (math.isnan(v) or 0.0 <= v <= 1.0):
                    raise ValueError(f"column {c!r}: {v} is outside [0, 1]")
                metrics[c] = v
        except ValueError as e:
            raise RecordError(f"{where}: {e}") from None
        rows.append({
            "kind": "reported", "model": r["model"], "family": canonical_family(r["family"]),
            "display_name": r["display_name"], "dataset": r["dataset"], "split": r["split"],
            "boxes": r["boxes"], "input_h": ih, "input_w": iw, "pretrain": r["pretrain"],
            "params": None, "params_m": pm, "gflops": gf, **metrics, "source": r["source"], "file": str(path),
        })
    return rows


def _other_source_rows(path: Path) -> list[dict[str, Any]]:
    """Read one ``reported/other_sources/*.csv``; any bad cell makes the whole file bad."""
    table = _read_csv(path)
    header = table[0]
    if tuple(header) != OTHER_SOURCE_COLUMNS:
        missing = [c for c in OTHER_SOURCE_COLUMNS if c not in header]
        unknown = sorted(set(header) - set(OTHER_SOURCE_COLUMNS))
        raise RecordError(f"header must be {list(OTHER_SOURCE_COLUMNS)} (missing {missing}, unknown {unknown})")
    body = [(i, r) for i, r in enumerate(table[1:], start=2) if r]
    if not body:
        raise RecordError("no rows")
    rows, seen = [], {}
    for i, cells in body:
        where = f"line {i}"
        if len(cells) != len(header):
            raise RecordError(f"{where}: {len(cells)} cells, the header has {len(header)}")
        r = dict(zip(header, cells))
        try:
            for col in ("model", "dataset", "split", "source", "repo", "path"):
                if not r[col].strip():
                    raise ValueError(f"column {col!r} is empty")
            if r["boxes"] not in BOXES:
                raise ValueError(f"column 'boxes': {r['boxes']!r} is not one of {list(BOXES)}")
            if r["metric"] not in METRIC_NAMES:
                raise ValueError(f"column 'metric': {r['metric']!r} is not one of {list(METRIC_NAMES)}")
            if len(r["commit"]) != 40 or any(ch not in "0123456789abcdef" for ch in r["commit"]):
                raise ValueError(f"column 'commit': expected 40 lowercase hex digits, got {r['commit']!r}")
            if r["repo"].count("/") != 1:
                raise ValueError(f"column 'repo': expected owner/name, got {r['repo']!r}")
            ih, iw, line = int(r["input_h"]), int(r["input_w"]), int(r["line"])
            if ih <= 0 or iw <= 0 or line <= 0:
                raise ValueError("input size and line must be positive")
            v = float(r["value"])
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"column 'value': {v} is outside [0, 1]")
        except ValueError as e:
            raise RecordError(f"{where}: {e}") from None
        key = (r["model"], r["dataset"], r["split"], r["boxes"], ih, iw, r["metric"], r["source"])
        if key in seen:
            raise RecordError(f"{where}: repeats line {seen[key]} ({r['source']}, {r['model']} {ih}x{iw} "
                              f"{r['metric']})")
        seen[key] = i
        rows.append({**r, "input_h": ih, "input_w": iw, "line": line, "value": v, "file": str(path)})
    return rows


def load_results(root: str | os.PathLike = "results", *, strict: bool = False) -> pd.DataFrame:
    """Read ``root/reported/*.csv``, ``root/runs/**/*.json`` and ``root/profiles/**/*.json`` into one frame.

    Columns are :data:`COLUMNS` (documented in results/README.md), one row per reported table row,
    measured run or profile. ``reported/other_sources/*.csv`` (:data:`OTHER_SOURCE_COLUMNS`) give other
    sources' figures for the reported rows: ``df.attrs["other_sources"]``, one dict per line.
    Files that fail validation are never dropped silently: each is logged in one warning with its reason,
    listed in ``df.attrs["bad_files"]`` (``[{"file", "reason"}, ...]``), and with ``strict=True`` the call raises :class:`ResultsError` naming all of them.
    A missing sub-folder just contributes no rows (a fresh clone has no runs yet).
    """
    root = Path(root)
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, str]] = []  # {"file", "reason"}: what df.attrs["bad_files"] holds

    other: list[dict[str, Any]] = []  # df.attrs["other_sources"]
    for target, folder, parse in ((rows, root / "reported", _reported_rows),
                                  (other, root / "reported" / "other_sources", _other_source_rows)):
        for path in sorted(folder.glob("*.csv")):
            try:
                target.extend(parse(path))
            except RecordError as e:
                bad.append({"file": str(path), "reason": str(e)})

    for sub, parse in (("runs", lambda d, p: _run_row(RunRecord.from_dict(d), p)),
                       ("profiles", lambda d, p: _profile_row(ProfileRecord.from_dict(d), p))):
        for path in sorted((root / sub).rglob("*.json")):
            try:
                rows.append(parse(_read_json(path), path))
            except RecordError as e:
                bad.append({"file": str(path), "reason": str(e)})
            except OSError as e:
                bad.append({"file": str(path), "reason": f"unreadable ({e.strerror})"})

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("input_h", "input_w", "params", "seed"):
        df[col] = df[col].astype("Int64")
    for col in ("params_m", "gflops", *METRIC_NAMES, "gflops_fvcore", "gflops_paper_convention"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["date"] = pd.to_datetime(df["date"], utc=True, format="ISO8601")
    df.attrs["bad_files"] = bad
    df.attrs["other_sources"] = other
    if bad:
        log.warning("skipped %d malformed result file(s):\n%s", len(bad),
                    "\n".join(f"  {b['file']}: {b['reason']}" for b in bad))
        if strict:
            raise ResultsError(bad)
    counts = df["kind"].value_counts().to_dict()
    log.debug("loaded %s from %s", counts, root)
    return df
