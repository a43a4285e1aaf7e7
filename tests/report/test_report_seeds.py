"""Runs that differ only in seed: one row in the comparison table, one point in the figures (mean ± std, n)."""
from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest

from harness.report.figures import make_figures, plot_points
from harness.report.seeds import mean_std, pool_seeds
from harness.report.tables import make_table
from harness.results import load_results
from support.paths import FIXTURES as FIXTURES_ROOT, REPO

FIXTURES = FIXTURES_ROOT / "records"
RUN = FIXTURES / "runs" / "coco" / "hrnet-w32" / "20261101T120000_a1b2c3d4_4242_0f1e2d.json"


@pytest.fixture
def root(tmp_path) -> Path:
    """The fixture store plus two more seeds of the coco hrnet-w32 run (AP 0.729 / 0.733 / 0.741)."""
    r = tmp_path / "results"
    shutil.copytree(REPO / "results" / "reported", r / "reported")
    shutil.copytree(FIXTURES / "runs", r / "runs")
    shutil.copytree(FIXTURES / "profiles", r / "profiles")
    rec = json.loads(RUN.read_text())
    for seed, ap in ((1, 0.733), (2, 0.741)):
        other = dict(rec, seed=seed, metrics={**rec["metrics"], "AP": ap})
        (r / "runs" / "coco" / "hrnet-w32" / f"20261101T12000{seed}_a1b2c3d4_424{seed}_0f1e2d.json").write_text(
            json.dumps(other))
    return r


def test_pool_seeds_one_row_mean_std_n(root):
    df = load_results(root)
    m = df[(df["kind"] == "measured") & (df["model"] == "hrnet-w32") & (df["dataset"] == "coco")]
    assert len(m) == 3
    pooled = pool_seeds(m, ["AP"])
    assert len(pooled) == 1
    row = pooled.iloc[0]
    assert row["n"] == 3 and row["seeds"] == [0, 1, 2]
    assert row["AP"] == pytest.approx(statistics.fmean([0.729, 0.733, 0.741]))
    assert row["AP std"] == pytest.approx(statistics.stdev([0.729, 0.733, 0.741]))
    # The one definition of mean ± std: absent values are left out, one value has std 0.
    assert mean_std([0.2, None, math.nan, 0.4])[2] == 2 and mean_std([0.5]) == (0.5, 0.0, 1)


def test_table_pools_seeds_with_std_in_cells_and_csv(root, tmp_path):
    t = make_table("coco", root, tmp_path, live=False, echo=False)
    src = t["Source"].tolist()
    pooled = [s for s in src if "n=3" in s]
    assert pooled == ["measured: baseline (seeds 0, 1, 2; mean ± std, n=3, 2026-11-01)"]
    assert sum(s.startswith("measured") for s in src) == 2  # hrnet-w32 pooled + hrnext-s
    md = (tmp_path / "coco.md").read_text()
    std = statistics.stdev([0.729, 0.733, 0.741])
    assert f"| {statistics.fmean([0.729, 0.733, 0.741]):.3f} ± {std:.3f} |" in md
    assert r"$\pm$" in (tmp_path / "coco.tex").read_text()
    csv = pd.read_csv(tmp_path / "coco.csv")
    row = csv[csv["Source"].str.contains("n=3")].iloc[0]
    assert row["n"] == 3 and row["AP std"] == pytest.approx(std, abs=1e-6)


def test_figures_pool_seeds_into_one_point_with_error_bar(root, tmp_path):
    pts = plot_points(load_results(root), "coco")
    hr = pts[(pts["kind"] == "measured") & (pts["model"] == "hrnet-w32")]
    assert len(hr) == 1 and hr["n"].iloc[0] == 3
    assert hr["AP std"].iloc[0] == pytest.approx(statistics.stdev([0.729, 0.733, 0.741]))
    res = make_figures(root, tmp_path)
    coco = [p for p in res.panels if p.dataset == "coco"]
    assert all(p.n_measured == 2 for p in coco)  # 3 seeds of hrnet-w32 are one point, plus hrnext-s
