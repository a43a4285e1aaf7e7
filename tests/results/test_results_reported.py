"""The reported rows in results/reported reproduce the HRNeXt paper's tables exactly.

The literal tables below are typed from Zhang et al., "HRNeXt: High-Resolution Context Network for Crowd
Pose Estimation", IEEE TMM 2023 (doi:10.1109/TMM.2023.3248144), independently of the CSV files, so a typo
in either is caught.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.report.tables import make_table
from harness.results import load_results
from support.paths import RESULTS


# Backbone Pretrain Input #Params FLOPs AP AP50 AP75 APM APL AR
PAPER_COCO_VAL2017 = """
HRNet-W32 Y 256x192 28.5M 7.1G 0.734 0.895 0.807 0.702 0.801 0.789
HRNet-W32 Y 384x288 28.5M 16.0G 0.758 0.906 0.827 0.719 0.828 0.810
HRNet-W48 Y 256x192 63.6M 14.6G 0.751 0.906 0.822 0.715 0.818 0.804
HRNet-W48 Y 384x288 63.6M 32.9G 0.763 0.908 0.829 0.723 0.834 0.812
HRFormer-S Y 256x192 7.8M 2.8G 0.740 0.902 0.812 0.704 0.807 0.794
HRFormer-S Y 384x288 7.8M 6.2G 0.756 0.903 0.822 0.716 0.825 0.807
HRFormer-B Y 256x192 43.2M 12.2G 0.756 0.908 0.828 0.717 0.826 0.808
HRFormer-B Y 384x288 43.2M 26.8G 0.772 0.910 0.836 0.732 0.842 0.820
HRNeXt-S N 256x192 9.5M 2.5G 0.761 0.906 0.834 0.728 0.827 0.813
HRNeXt-B N 384x288 31.7M 10.8G 0.770 0.911 0.835 0.732 0.841 0.820
"""
PAPER_OCHUMAN_VAL = """
HRNet-W32 Y 256x192 28.5M 7.1G 0.631 0.794 0.690 0.642 0.631 0.673
HRNet-W32 Y 384x288 28.5M 16.0G 0.637 0.784 0.690 0.643 0.637 0.676
HRNet-W48 Y 256x192 63.6M 14.6G 0.645 0.794 0.701 0.651 0.645 0.685
HRNet-W48 Y 384x288 63.6M 32.9G 0.650 0.784 0.703 0.684 0.650 0.688
HRFormer-S Y 256x192 7.8M 2.8G 0.584 0.757 0.633 0.647 0.584 0.631
HRFormer-S Y 384x288 7.8M 6.2G 0.595 0.756 0.640 0.641 0.595 0.642
HRFormer-B Y 256x192 43.2M 12.2G 0.603 0.749 0.647 0.640 0.603 0.647
HRFormer-B Y 384x288 43.2M 26.8G 0.625 0.762 0.660 0.652 0.625 0.665
HRNeXt-S N 256x192 9.5M 2.5G 0.631 0.784 0.681 0.648 0.631 0.670
HRNeXt-B N 384x288 31.7M 10.8G 0.671 0.805 0.716 0.706 0.672 0.706
"""
METRICS = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR")
TABLES = {
    "coco": (PAPER_COCO_VAL2017, "val2017", "det", "hrnext_tmm2023_coco_val2017.csv"),
    "ochuman": (PAPER_OCHUMAN_VAL, "val", "gt", "hrnext_tmm2023_ochuman_val.csv"),
}


def paper_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """A results root holding only what git holds (runs/ and profiles/ are local and ignored)."""
    root = tmp_path_factory.mktemp("results")
    shutil.copytree(RESULTS / "reported", root / "reported")
    return root


@pytest.fixture(scope="module")
def frame(fresh_clone):
    return load_results(fresh_clone, strict=True)


@pytest.mark.parametrize("dataset", sorted(TABLES))
def test_reported_rows_match_the_paper_exactly(frame, dataset):
    text, split, boxes, _ = TABLES[dataset]
    got = frame[(frame["kind"] == "reported") & (frame["dataset"] == dataset)].reset_index(drop=True)
    expected = paper_rows(text)
    assert len(got) == len(expected) == 10
    for row, (name, pre, size, params, flops, *metrics) in zip(got.itertuples(index=False), expected):
        h, w = (int(v) for v in size.split("x"))
        assert row.display_name == name
        assert row.model == name.lower()
        assert row.family == name.split("-")[0]
        assert row.pretrain == {"Y": "imagenet", "N": "none"}[pre]
        assert (row.input_h, row.input_w) == (h, w)
        assert row.params_m == float(params.rstrip("M"))
        assert row.gflops == float(flops.rstrip("G"))
        assert (row.split, row.boxes) == (split, boxes)
        assert "10.1109/TMM.2023.3248144" in row.source
        assert row.params is pd.NA  # the paper gives 0.1 M only: no exact count is invented
    for i, (*_, m1, m2, m3, m4, m5, m6) in enumerate(expected):
        assert [got.loc[i, m] for m in METRICS] == [float(v) for v in (m1, m2, m3, m4, m5, m6)]


@pytest.mark.parametrize("dataset", sorted(TABLES))
def test_reported_csv_text_keeps_the_papers_digits(dataset):
    """The CSV cells are the printed strings (trailing zeros kept, e.g. 0.690, 16.0)."""
    text, _, _, fname = TABLES[dataset]
    with open(RESULTS / "reported" / fname, newline="") as f:
        rows = list(csv.DictReader(f))
    for row, (name, pre, size, params, flops, *metrics) in zip(rows, paper_rows(text), strict=True):
        assert row["display_name"] == name and row["kind"] == "reported"
        assert f"{row['input_h']}x{row['input_w']}" == size
        assert row["params_m"] + "M" == params and row["gflops"] + "G" == flops
        assert [row[m] for m in METRICS] == metrics


@pytest.mark.parametrize("dataset", sorted(TABLES))
def test_generated_table_prints_the_papers_rows(fresh_clone, tmp_path, dataset, capsys):
    """The Markdown table built from a fresh clone (reported rows only) shows the paper's rows verbatim."""
    text, *_ = TABLES[dataset]
    fake = {"params": 1_000_000, "gflops": 1.0}
    table = make_table(dataset, fresh_clone, tmp_path, live_profile=lambda m, hw: fake)
    md = (tmp_path / f"{dataset}.md").read_text()
    assert capsys.readouterr().out.strip() == md.strip()
    for name, pre, size, params, flops, *metrics in paper_rows(text):
        cells = [name, pre, size.replace("x", "×"), params.rstrip("M"), flops.rstrip("G")] + metrics
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name} | {pre} | {size.replace('x', '×')} |"))
        # Bold marks the best value of a column; the digits are the paper's.
        assert [c.strip().strip("*") for c in line.strip("|").split("|")][:11] == cells
    assert list(table["Source"].unique()) == ["reported [1]"]
