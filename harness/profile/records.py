"""Profile records: ``results/profiles/<model>_<H>x<W>_<device>.json`` (schema: ``results/README.md``)."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch

from harness.io import atomic_write_json
from harness.results.schema import ProfileRecord, now_iso

from .counting import CONVENTIONS, REPO, ProfileStatic, parse_hw
from .timing import machine_info

PROFILES_DIR = REPO / "results" / "profiles"


def record_path(name: str, input_hw: tuple[int, int], device: str = "cpu", root: str | os.PathLike = PROFILES_DIR
                ) -> Path:
    h, w = parse_hw(input_hw)
    return Path(root) / f"{name}_{h}x{w}_{torch.device(device).type}.json"


def write_profile_record(static: ProfileStatic, runtime: dict | None = None, *, device: str = "cpu",
                         root: str | os.PathLike = PROFILES_DIR) -> Path:
    """Write ``<root>/<model>_<H>x<W>_<device>.json`` (validated by ``ProfileRecord`` before writing),
    atomically; returns the path.

    ``latency`` holds the runtime rows (empty without ``runtime``) plus the paper's figures and the
    per-operator fvcore split, since the record schema has no other free-form field.
    """
    latency = dict(runtime or {})
    machine = latency.pop("machine", None) or machine_info(device)
    latency["static"] = {"paper_params_m": static.paper_params_m, "paper_gflops": static.paper_gflops,
                         "convention_description": CONVENTIONS[static.convention].description,
                         "fvcore_by_operator": static.fvcore_by_operator,
                         "fvcore_skipped_ops": static.fvcore_skipped_ops}
    rec = ProfileRecord(model=static.model, input_size=list(static.input_hw), params=static.params,
                        gflops_fvcore=static.gflops_fvcore, gflops_paper_convention=static.gflops_paper_convention,
                        convention=static.convention, latency=latency, hardware=machine, date=now_iso())
    path = record_path(static.model, static.input_hw, device, root)
    atomic_write_json(path, asdict(rec), indent=2, default=float)
    return path


__all__ = ["PROFILES_DIR", "record_path", "write_profile_record"]
