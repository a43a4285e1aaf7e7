"""harness.parallel: jobs side by side in spawned workers, results in order, failures surface."""
from __future__ import annotations

import os

import pytest

from support import parallel_tasks as tasks
from harness.parallel import bar_position, resolve_jobs, run_jobs


def test_resolve_jobs():
    assert resolve_jobs(0, 3, cpus=2) == (2, 1)  # one per core, cores shared out
    assert resolve_jobs(0, 1, cpus=2) == (1, 2)  # one task: all cores to it
    assert resolve_jobs(1, 3, cpus=2) == (1, 2)
    assert resolve_jobs(4, 3, cpus=8) == (3, 2)  # never more workers than tasks
    assert resolve_jobs(16, 30, cpus=8) == (8, 1)  # nor than cores
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="jobs: must be an integer >= 0"):
            resolve_jobs(bad, 3)


def test_one_job_runs_in_this_process():
    out = run_jobs(tasks.square_and_threads, [2, 3], jobs=1)
    assert [o[0] for o in out] == [4, 9]
    assert {o[2] for o in out} == {os.getpid()} and bar_position() is None


def test_workers_run_in_order_with_their_own_threads_and_bar_lines(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    out = run_jobs(tasks.square_and_threads, [1, 2, 3, 4], jobs=2)
    assert [o[0] for o in out] == [1, 4, 9, 16]  # task order, whatever finished first
    assert {o[1] for o in out} == {1}  # 2 cores / 2 workers
    assert os.getpid() not in {o[2] for o in out}  # spawned workers (a fast one may take every task)
    slots = {o[2]: o[3] for o in out}
    assert set(slots.values()) <= {1, 2} and len(set(slots.values())) == len(slots)  # one bar line per worker


def test_a_failing_job_raises_after_the_running_ones_finish(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    ok, bad = tmp_path / "ok.txt", tmp_path / "bad.txt"
    with pytest.raises(RuntimeError, match="failed on purpose"):
        run_jobs(tasks.write_then_fail, [(str(ok), False), (str(bad), True)], jobs=2, names=["ok", "bad"])
    assert ok.read_text() == "done" and not bad.exists()
    with pytest.raises(ValueError, match="task boom failed"):
        run_jobs(tasks.square_and_threads, ["boom"], jobs=1)
