"""Independent CPU jobs side by side: ``jobs`` worker processes with ``threads`` torch threads each.

Small models on a few CPU cores use OpenMP threads poorly (tiny depthwise convs, batch norms, element-wise
ops): on the 2-core development machine two single-threaded trainings run 1.2-1.3x faster in total than
the same two runs one after the other on two threads each.  The demo (one job per family) and the
ablation runner (one job per cell) use this when ``jobs > 1``; ``jobs=1`` runs everything in this process.

Workers are spawned (never forked: torch's thread pools do not survive a fork), log through the parent's
log format with their slot in the message, and draw their progress bars on their own terminal line
(``bar_position()``).  Results come back in task order; the first failure is re-raised in the parent
after the other running jobs finish (their finished work is kept on disk, so a re-run resumes).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

__all__ = ["resolve_jobs", "run_jobs", "bar_position"]

_SLOT: int | None = None  # this worker's slot (1..jobs); None in the main process


def bar_position() -> int | None:
    """Terminal line for this process's progress bars: None in the main process, the slot in a worker."""
    return _SLOT


def resolve_jobs(jobs: int, n_tasks: int, cpus: int | None = None) -> tuple[int, int]:
    """``jobs`` (0 = one per core) -> (worker processes, torch threads per worker) for ``n_tasks`` tasks."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 0:
        raise ValueError(f"jobs: must be an integer >= 0 (0 = one per CPU core), got {jobs!r}")
    cpus = cpus or os.cpu_count() or 1
    workers = max(1, min(jobs or cpus, n_tasks, cpus))
    return workers, max(1, cpus // workers)


def _init_worker(counter, threads: int, level: int, fmt: str | None, datefmt: str | None) -> None:
    global _SLOT
    import torch

    with counter.get_lock():
        counter.value += 1
        _SLOT = counter.value
    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format=(fmt or "%(levelname)s %(name)s: %(message)s").replace(
        "%(message)s", f"[job {_SLOT}] %(message)s"), datefmt=datefmt)


def _root_format() -> tuple[int, str | None, str | None]:
    root = logging.getLogger()
    fmt = datefmt = None
    for h in root.handlers:
        if h.formatter is not None:
            fmt, datefmt = h.formatter._fmt, h.formatter.datefmt
            break
    return root.level, fmt, datefmt


def run_jobs(fn: Callable[[Any], Any], tasks: Sequence[Any], *, jobs: int, names: Sequence[str] | None = None
             ) -> list[Any]:
    """``[fn(t) for t in tasks]``, run by ``resolve_jobs(jobs, len(tasks))`` worker processes.

    ``fn`` and the tasks must be picklable (a module-level function and plain data).  Tasks are handed
    out in the given order, so put the longest first.  ``names`` label the tasks in error messages.
    """
    tasks = list(tasks)
    names = list(names) if names is not None else [str(i) for i in range(len(tasks))]
    workers, threads = resolve_jobs(jobs, len(tasks))
    if workers == 1:
        return [fn(t) for t in tasks]
    log.info("running %d jobs on %d worker processes x %d torch thread(s)", len(tasks), workers, threads)
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    level, fmt, datefmt = _root_format()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(counter, threads, level, fmt, datefmt)) as pool:
        futures = [pool.submit(fn, t) for t in tasks]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [(n, f) for n, f in zip(names, futures) if f.done() and f.exception() is not None]
        if failed:
            for f in pending:
                f.cancel()  # not started yet: never run
            wait(pending)  # the running ones finish (their work is saved for a re-run)
            name, f = failed[0]
            log.error("job %s failed: %s", name, f.exception())
            raise f.exception()
        return [f.result() for f in futures]
