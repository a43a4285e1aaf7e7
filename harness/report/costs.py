"""Where the "live" parameter and FLOP counts of tables come from.

A live-profile callable maps ``(model_name, (H, W))`` to ``{"params": int, "gflops": float}``.
By default the harness's cost counter (``harness.profile.profile_static``) is asked; where it fails for
one model, the cached records under ``results/profiles`` answer instead, and where neither knows the
model the cell stays empty (logged, never an exception: a table of reported rows is still worth printing).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Callable, Mapping

import pandas as pd

from harness.profile import profile_static

log = logging.getLogger(__name__)

Cost = dict[str, float]
LiveProfile = Callable[[str, tuple[int, int]], Mapping[str, Any]]


def _normalise(out: Any, model: str, hw: tuple[int, int]) -> Cost:
    """Accept a mapping, a dataclass or an object with attributes; return {"params", "gflops"}."""
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        out = dataclasses.asdict(out)
    elif not isinstance(out, Mapping):
        out = vars(out)
    params = out.get("params")
    gflops = next((out[k] for k in ("gflops", "gflops_paper_convention", "gflops_fvcore")
                   if out.get(k) is not None), None)
    if params is None or gflops is None or not (float(params) > 0 and float(gflops) > 0):
        raise ValueError(f"profile of {model} at {hw[0]}x{hw[1]} has no positive 'params'/'gflops': {out!r}")
    return {"params": float(params), "gflops": float(gflops)}


def cached_profiles(profiles: pd.DataFrame) -> LiveProfile:
    """A live-profile callable answering from profile rows of :func:`load_results` (latest wins)."""
    prof = profiles[profiles["kind"] == "profile"].sort_values("date", na_position="first")
    table = {(r.model, int(r.input_h), int(r.input_w)): {"params": float(r.params), "gflops": float(r.gflops)}
             for r in prof.itertuples()}

    def lookup(model: str, hw: tuple[int, int]) -> Cost:
        try:
            return table[(model, int(hw[0]), int(hw[1]))]
        except KeyError:
            raise LookupError(f"no cached profile for {model} at {hw[0]}x{hw[1]}") from None

    return lookup


def default_live_profile(profiles: pd.DataFrame) -> LiveProfile:
    """``harness.profile.profile_static``, and per model on failure the cached profiles."""
    cache = cached_profiles(profiles)

    def live(model: str, hw: tuple[int, int]) -> Cost:
        try:
            return _normalise(profile_static(model, tuple(hw)), model, hw)
        except Exception as e:  # noqa: BLE001 - one unprofilable model must not sink the table
            log.warning("live profiling of %s at %dx%d failed (%s); trying cached profiles", model, hw[0], hw[1], e)
            return cache(model, hw)

    return live


def collect_costs(keys: list[tuple[str, int, int]], live_profile: LiveProfile) -> dict[tuple[str, int, int], Cost]:
    """Profile each distinct (model, H, W) once; failures give NaN cells and one log line each."""
    from tqdm import tqdm  # plain bars: the notebook has no ipywidgets

    out: dict[tuple[str, int, int], Cost] = {}
    failed: list[str] = []
    for key in tqdm(sorted(set(keys)), desc="profiling", unit="model", leave=False, disable=len(set(keys)) < 4):
        model, h, w = key
        try:
            out[key] = _normalise(live_profile(model, (h, w)), model, (h, w))
        except Exception as e:  # noqa: BLE001 - reported below, the cell stays empty
            failed.append(f"  {model} {h}x{w}: {e}")
            out[key] = {"params": math.nan, "gflops": math.nan}
    if failed:
        log.warning("no live params/GFLOPs for %d model/size pair(s) (cells left empty):\n%s",
                    len(failed), "\n".join(failed))
    return out

