"""Running experiment jobs and measuring them: one place for what the demo and the ablation share.

* :func:`run_side_by_side` -- jobs one after another in this process (with a progress bar) or in
  single-threaded worker processes side by side (:mod:`harness.parallel`).
* :func:`model_costs` -- the one call site that asks :mod:`harness.profile` for parameters and GFLOPs.
* :func:`measure_latency` -- median batch-1 CPU forward time.
* :func:`probe_train_step`, :func:`makespan` -- what a run of jobs is expected to take, told at its start.
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

__all__ = ["run_side_by_side", "model_costs", "measure_latency", "probe_train_step", "makespan", "cpu_seconds",
           "sample_std"]


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


def probe_train_step(model: torch.nn.Module, batch: int, hw: tuple[int, int], *, threads: int = 1,
                     iters: int = 2) -> float:
    """Median seconds of one training step (forward, MSE, backward, AdamW update: ``profile.make_step``) of ``model`` at ``batch`` x
    ``hw`` on ``threads`` torch threads, after one warm-up step; the model's weights are restored."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        step = profile.make_step(model.train(), torch.randn(batch, 3, *hw), "train")
        return float(statistics.median(profile.time_step(step, warmup=1, iters=iters)))
    finally:
        torch.set_num_threads(old)
        model.load_state_dict(state)
        model.zero_grad(set_to_none=True)


def makespan(seconds: Sequence[float], workers: int) -> float:
    """Wall time of jobs taking ``seconds`` each on ``workers`` side by side, longest first onto the
    least-loaded worker (how :func:`run_side_by_side` is fed when jobs are ordered longest first)."""
    if workers < 1:
        raise ValueError(f"workers={workers}: expected >= 1")
    loads = [0.0] * workers
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def sample_std(x: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1) of repeated runs; NaN for fewer than two."""
    x = np.asarray(x, float)
    return float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
