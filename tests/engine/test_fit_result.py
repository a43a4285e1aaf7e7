"""The trainer's result carries its own throughput and loss summary (no log scraping needed)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.engine.trainer import FitResult


def test_throughput_is_the_batch_over_the_median_iteration_time():
    r = FitResult(Path("."), losses=[1.0] * 6, iter_times=[9.0, 5.0, 0.5, 0.25, 0.5, 1.0], batch_size=32,
                  global_iter=6)
    assert r.sec_per_iter == pytest.approx(0.5)  # the first two (warm-up) left out
    assert r.img_per_s == pytest.approx(64.0)
    assert math.isnan(FitResult(Path(".")).img_per_s)  # nothing trained in this process


def test_final_loss_is_the_mean_of_the_last_quarter_of_the_run():
    r = FitResult(Path("."), losses=[8.0, 6.0, 4.0, 2.0, 1.0, 3.0, 1.0, 3.0], global_iter=8)
    assert r.final_loss == pytest.approx(2.0)  # last 2 of 8 iterations
    # A resumed run: 3 iterations here of a 12-iteration run -> the last quarter (3) is all of them.
    resumed = FitResult(Path("."), losses=[3.0, 2.0, 1.0, 0.0][1:], global_iter=12, start_iter=9)
    assert resumed.resumed and resumed.final_loss == pytest.approx(1.0)
    assert not r.resumed and math.isnan(FitResult(Path(".")).final_loss)
