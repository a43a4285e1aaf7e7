"""Running experiment jobs and measuring them: one place for what the demo and the ablation share.

* :func:`run_side_by_side` -- jobs one after another in this process (with a progress bar) or in
  single-threaded worker processes side by side (:mod:`harness.parallel`).
* :func:`model_costs` -- the one call site that asks :mod:`harness.profile` for parameters and GFLOPs.
* :func:`measure_latency` -- median batch-1 CPU forward time.
* :func:`cpu_seconds`, :func:`sample_std` -- accounting and the spread of repeated (seeded) runs.
"""
from __future__ import annotations

import logging
import math
import os
import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from harness import profile
from harness.parallel import resolve_jobs, run_jobs

log = logging.getLogger(__name__)

__all__ = ["run_side_by_side", "model_costs", "measure_latency", "cpu_seconds", "sample_std"]


def run_side_by_side(fn: Callable[[Any], Any], jobs: Sequence[Any], names: Sequence[str], *, workers: int = 1,
                     desc: str = "jobs", unit: str = "job", progress: bool = True) -> list:
    """``[fn(job) for job in jobs]``, in order. ``workers`` follows :func:`harness.parallel.resolve_jobs`
    (0 = one per core); with one worker the jobs run here under a progress bar (the engine's bars open
    beneath it), otherwise in spawned worker processes. ``fn`` must be a module-level function."""
    if not jobs:
        return []
    n, threads = resolve_jobs(workers, len(jobs))
    if n > 1:
        log.info("%s: %d %s(s), %d side by side (%d torch thread(s) each)", desc, len(jobs), unit, n, threads)
        return run_jobs(fn, list(jobs), jobs=n, names=list(names))
    out = []
    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
    try:
        for job, name in zip(jobs, names):
            bar.set_postfix_str(name)
            out.append(fn(job))
            bar.update(1)
    finally:
        bar.close()
    return out


def model_costs(model_name: str, input_hw: tuple[int, int], *, num_keypoints: int = 17,
                overrides: dict | None = None) -> dict:
    """Parameters and GFLOPs (batch 1, ``input_hw`` = (H, W)) of the pose model ``model_name`` with backbone
    ``overrides``: ``{"params", "gflops" (fvcore: one multiply-add = one flop), "gflops_paper" (the family's
    paper convention)}``, from :func:`harness.profile.profile_static` (cached there)."""
    costs = profile.profile_static(model_name, tuple(int(v) for v in input_hw), num_keypoints=int(num_keypoints),
                                   overrides=overrides)
    return {"params": costs.params, "gflops": costs.gflops_fvcore, "gflops_paper": costs.gflops_paper_convention}


def measure_latency(model: torch.nn.Module, hw: tuple[int, int], runs: int) -> float:
    """Median wall time (ms) of one batch-1 forward pass on the CPU after 2 warm-up passes
    (:func:`harness.profile.time_step` of an inference step)."""
    step = profile.make_step(model.eval().cpu(), torch.randn(1, 3, *hw), "infer")
    return 1e3 * float(statistics.median(profile.time_step(step, warmup=2, iters=runs)))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def sample_std(x: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1) of repeated runs; NaN for fewer than two."""
    x = np.asarray(x, float)
    return float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
