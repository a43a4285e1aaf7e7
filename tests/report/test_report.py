"""Comparison tables and accuracy-vs-cost figures built from fixture records."""
from __future__ import annotations

import argparse
import logging
import math
import shutil
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.commands import report as report_cmd
from harness.report import figures as figures_mod
from harness.report import labels as labels_mod
from harness.report.figures import make_figures, pareto_front
from harness.report.tables import make_table
from harness.report.costs import cached_profiles, default_live_profile
from harness.results import load_results
from support.paths import REPO, FIXTURES as _FIXTURES

FIXTURES = _FIXTURES / "records"
BAD = {"hrformer-b/20261105T080000_e5f60718_4246_4d5e6f.json", "hrnet-w48/20261107T080000_07182930_4248_6f7081.json",
       "hrnext-b/20261106T080000_f6071829_4247_5e6f70.json"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """reported/ from the repo plus the fixture runs/ (incl. malformed/partial) and profiles/."""
    r = tmp_path_factory.mktemp("results")
    shutil.copytree(REPO / "results" / "reported", r / "reported")
    shutil.copytree(FIXTURES / "runs", r / "runs")
    shutil.copytree(FIXTURES / "profiles", r / "profiles")
    return r


def fake_live(model: str, hw: tuple[int, int]) -> dict:
    """Deterministic stand-in for the profiler: cost grows with the input area."""
    base = {"hrnet-w32": 28.0, "hrnet-w48": 63.0, "hrformer-s": 7.5, "hrformer-b": 43.0,
            "hrnext-s": 9.4, "hrnext-b": 31.6}[model]
    return {"params": int(base * 1e6), "gflops": base / 4 * hw[0] * hw[1] / (256 * 192)}


# ------------------------------------------------------------------------------------------- tables


def test_coco_table_merges_reported_and_measured(root, tmp_path, capsys):
    t = make_table("coco", root, tmp_path, live_profile=fake_live)
    assert list(t.columns) == ["Backbone", "Pretrain", "Input", "#Params (M)", "GFLOPs", "AP", "AP50", "AP75",
                               "APM", "APL", "AR", "Params (live, M)", "GFLOPs (live)", "Source"]
    assert len(t) == 12  # 10 reported + 2 valid measured (the malformed hrformer-b/hrnet-w48 runs are out)
    # Paper order, the measured row right after the reported row of the same model and size.
    assert t["Backbone"].tolist()[:3] == ["HRNet-W32", "HRNet-W32", "HRNet-W32"]
    assert t["Source"].tolist()[:3] == ["reported [1]", "measured: baseline (seed 0, 2026-11-01)", "reported [1]"]
    assert t["Backbone"].tolist()[-3:] == ["HRNeXt-S", "HRNeXt-S", "HRNeXt-B"]
    m = t.iloc[1]
    assert (m["Input"], m["Pretrain"], m["AP"], m["AR"]) == ("256x192", "Y", 0.729, 0.784)
    assert m["#Params (M)"] == pytest.approx(28.536785) and m["GFLOPs"] == 7.12
    assert m["Params (live, M)"] == 28.0 and m["GFLOPs (live)"] == pytest.approx(7.0)
    assert t.iloc[2]["GFLOPs (live)"] == pytest.approx(7.0 * 384 * 288 / (256 * 192))

    md = (tmp_path / "coco.md").read_text()
    assert capsys.readouterr().out.strip() == md.strip()
    assert "| HRNet-W32 | Y | 256×192 | 28.5 | 7.1 | 0.729 | 0.893 | 0.801 | 0.698 | 0.795 | 0.784 | 28.00 | 7.00 |" in md
    assert "| **0.772** |" in md  # HRFormer-B 384x288: best AP
    assert "[1] Zhang et al., HRNeXt" in md
    assert "Skipped 3 malformed result file(s)" in md and all(b in md for b in BAD)

    tex = (tmp_path / "coco.tex").read_text()
    for token in (r"\toprule", r"\bottomrule", r"\#Params (M)", r"AP$^{50}$", r"256$\times$192", r"\textbf{0.772}",
                  r"\label{tab:coco}", r"\begin{tabular}{lccrrrrrrrrrrl}"):
        assert token in tex
    assert tex.count(r"\midrule") == 3  # after the header and between the three families
    assert r"hrformer-b/20261105T080000\_e5f60718\_4246\_4d5e6f.json" in tex  # notes are escaped

    back = pd.read_csv(tmp_path / "coco.csv")
    assert back.shape == t.shape and list(back.columns) == list(t.columns)
    np.testing.assert_allclose(back["AP"].to_numpy(), t["AP"].to_numpy())
    assert back["Source"].tolist() == t["Source"].tolist()


def test_ochuman_table_shows_missing_values_as_dashes(root, tmp_path):
    t = make_table("ochuman", root, tmp_path, live_profile=fake_live, echo=False)
    assert len(t) == 11
    run = t[t["Source"].str.startswith("measured")].iloc[0]
    assert run["Backbone"] == "HRFormer-S" and run["AP"] == 0.579
    assert math.isnan(run["APM"]) and math.isnan(run["GFLOPs"])  # -1 and null in the record
    assert "| HRFormer-S | Y | 256×192 | 7.9 | – | 0.579 | 0.751 | 0.627 | – | 0.579 |" in (tmp_path / "ochuman.md").read_text()


def test_crowdpose_table_and_grid_before_any_run(root, tmp_path):
    t = make_table("crowdpose", root, tmp_path, live_profile=fake_live, echo=False)
    assert t.columns.tolist()[5:12] == ["AP", "AP50", "AP75", "APE", "APM", "APH", "AR"]
    assert len(t) == 1 and t.iloc[0]["APH"] == 0.574

    fresh = tmp_path / "fresh"
    shutil.copytree(REPO / "results" / "reported", fresh / "reported")
    g = make_table("crowdpose", fresh, tmp_path / "out", live_profile=fake_live, echo=False)
    assert len(g) == 10 and set(g["Source"]) == {"no result yet"}
    assert g["AP"].isna().all() and g["GFLOPs (live)"].notna().all()


def test_live_profile_failure_leaves_cells_empty(root, tmp_path, caplog):
    def flaky(model, hw):
        if model == "hrnext-b":
            raise RuntimeError("out of memory")
        return fake_live(model, hw)

    with caplog.at_level(logging.WARNING, logger="harness.report.costs"):
        t = make_table("coco", root, tmp_path, live_profile=flaky, echo=False)
    row = t[t["Backbone"] == "HRNeXt-B"].iloc[0]
    assert math.isnan(row["GFLOPs (live)"]) and math.isnan(row["Params (live, M)"])
    assert any("hrnext-b 384x288: out of memory" in r.getMessage() for r in caplog.records)
    assert t["GFLOPs (live)"].notna().sum() == len(t) - 1


def test_default_live_profile_falls_back_to_cached_profiles(root, monkeypatch):
    import harness.report.costs as costs

    df = load_results(root)
    cache = cached_profiles(df)
    assert cache("hrnext-s", (256, 192)) == {"params": 9479249.0, "gflops": 2.54}
    with pytest.raises(LookupError, match="no cached profile for hrnet-w48 at 256x192"):
        cache("hrnet-w48", (256, 192))

    calls = []

    def profile_static(name, hw):
        calls.append((name, hw))
        if name == "hrnet-w32":
            raise KeyError("not registered")
        return types.SimpleNamespace(params=123, gflops_fvcore=4.0, gflops_paper_convention=None)

    monkeypatch.setattr(costs, "profile_static", profile_static)
    live = default_live_profile(df)
    assert live("hrnext-s", (256, 192)) == {"params": 123.0, "gflops": 4.0}
    assert live("hrnet-w32", (256, 192)) == {"params": 28536785.0, "gflops": 7.12}  # failed live -> cache
    assert calls == [("hrnext-s", (256, 192)), ("hrnet-w32", (256, 192))]
    assert cached_profiles(df)("hrnet-w32", (384, 288))["gflops"] == 16.02


def test_bad_dataset_is_rejected(root, tmp_path):
    with pytest.raises(ValueError, match="no results for 'mpii'"):
        make_table("mpii", root, tmp_path, live_profile=fake_live)
    with pytest.raises(ValueError, match="dataset: expected"):
        make_table("", root, tmp_path, live_profile=fake_live)


# ------------------------------------------------------------------------------------------ figures


def test_pareto_front_is_the_upper_left_envelope():
    x = np.array([2.5, 7.1, 2.8, 10.8, 16.0, 26.8, 10.8, 1.0])
    y = np.array([0.761, 0.734, 0.740, 0.770, 0.758, 0.772, 0.765, 0.5])
    assert pareto_front(x, y).tolist() == [7, 0, 3, 5]  # cheapest first; a tie in cost keeps the better
    assert pareto_front(np.array([1.0, 1.0]), np.array([0.5, 0.5])).tolist() == [0]
    assert pareto_front(np.zeros(0), np.zeros(0)).tolist() == []


@pytest.fixture(scope="module")
def figs(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    return make_figures(root, out), out


def test_figures_are_written_and_distinguish_everything(figs):
    result, out = figs
    names = sorted(p.name for p in result.files)
    assert names == sorted(f"{s}.{e}" for s in ("accuracy_vs_cost", "coco_ap_vs_gflops", "coco_ap_vs_params",
                                                 "ochuman_ap_vs_gflops", "ochuman_ap_vs_params")
                           for e in ("png", "pdf"))
    assert sorted(p.name for p in out.iterdir()) == names  # no temp files left
    for p in result.files:
        assert p.read_bytes()[:8].startswith(b"\x89PNG\r\n\x1a\n" if p.suffix == ".png" else b"%PDF-")
        assert p.stat().st_size > 10_000
    from matplotlib.image import imread
    img = imread(out / "accuracy_vs_cost.png")[..., :3]  # (H, W, 3) in [0, 1]
    assert img.shape[1] >= 2000  # 200 dpi, 11.2 in wide
    for hex_color in figures_mod.FAMILY_COLORS.values():  # every family is drawn in its colour
        rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]) / 255
        assert (np.abs(img - rgb).max(axis=-1) < 0.02).sum() > 500
    assert {Path(b["file"]).relative_to(Path(b["file"]).parents[1]).as_posix() for b in result.bad_files} == BAD


def test_panels_points_front_and_labels(figs):
    result, _ = figs
    panels = {(p.dataset, p.x): p for p in result.panels}
    assert set(panels) == set(figures_mod.PANELS)
    assert (panels[("coco", "gflops")].n_reported, panels[("coco", "gflops")].n_measured) == (10, 2)
    # The OCHuman run recorded no GFLOPs; the cached profile supplies it, so it is still plotted.
    assert (panels[("ochuman", "gflops")].n_reported, panels[("ochuman", "gflops")].n_measured) == (10, 1)
    assert panels[("coco", "gflops")].front == ["HRNeXt-S 256x192", "HRNeXt-B 384x288", "HRFormer-B 384x288"]
    assert panels[("ochuman", "gflops")].front == ["HRNeXt-S 256x192", "HRNeXt-B 384x288"]
    assert panels[("ochuman", "params_m")].front == ["HRFormer-S 384x288", "HRNeXt-S 256x192",
                                                     "HRNet-W32 384x288", "HRNeXt-B 384x288"]
    for p in result.panels:
        assert p.label_overlaps == 0 and p.labels_outside == 0, p
    assert labels_mod.LABEL_FONT >= 9 and figures_mod.FONT - 1 >= 9  # tick labels are FONT - 1


def test_figures_from_a_fresh_clone_and_from_nothing(tmp_path):
    fresh = tmp_path / "fresh"
    shutil.copytree(REPO / "results" / "reported", fresh / "reported")
    df = load_results(fresh)
    res = make_figures(df, tmp_path / "a")  # an already-loaded frame is accepted too
    assert all(p.n_measured == 0 and p.n_reported == 10 and p.label_overlaps == 0 for p in res.panels)
    empty = make_figures(tmp_path / "empty", tmp_path / "b")
    assert len(empty.files) == 10 and all(p.n_reported == 0 and p.front == [] for p in empty.panels)


# ---------------------------------------------------------------------------------------------- CLI


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    report_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_table_and_figures(root, tmp_path, capsys):
    assert cli("table", "coco", "--no-live", "--results", str(root), "--out", str(tmp_path / "t")) == 0
    out = capsys.readouterr().out
    assert "### COCO val2017" in out and "| HRNeXt-S | N | 256×192 | 9.5 | 2.5 | 0.761 |" in out
    t = pd.read_csv(tmp_path / "t" / "coco.csv")
    assert t.loc[t["Backbone"] == "HRNeXt-S", "GFLOPs (live)"].tolist() == [2.54, 2.54]  # cached profile
    assert cli("figures", "--results", str(root), "--out", str(tmp_path / "f")) == 0
    # 5 accuracy-vs-cost figures + AP per occlusion level for coco, ochuman, crowdpose
    assert len(list((tmp_path / "f").glob("*.png"))) == 5 + 3
    assert (tmp_path / "f" / "ochuman_ap_by_occlusion.png").is_file()
    assert (tmp_path / "t" / "coco_breakdown.md").is_file() and (tmp_path / "t" / "coco_intervals.md").is_file()
    with pytest.raises(SystemExit):
        cli("table", "mpii")


def test_rows_of_another_protocol_get_their_own_heading(root, tmp_path):
    """Issue 15: a 32-image coco-mini GT-box record is not a row of "COCO val2017 (person detector boxes)"."""
    import json

    from harness.results import write_record

    r = tmp_path / "results"
    shutil.copytree(root, r)
    rec = json.loads(next(p for p in sorted((r / "runs" / "coco").rglob("*.json"))
                          if p.parent.name == "hrnet-w32").read_text())
    rec.update(boxes="gt", split="val", experiment="coco-mini-hrnet", metrics={"AP": 0.999, "AR": 0.999})
    write_record(rec, root=r / "runs")
    t = make_table("coco", r, tmp_path / "out", live_profile=fake_live, echo=False)
    assert len(t) == 12 and 0.999 not in t["AP"].tolist()  # the main table is unchanged
    (other,) = t.attrs["other_protocols"]
    assert other.attrs["title"] == "COCO val (ground-truth boxes): not the table's protocol"
    assert other["AP"].tolist() == [0.999] and other["Source"].iloc[0].startswith("measured: coco-mini-hrnet")
    md = (tmp_path / "out" / "coco.md").read_text()
    assert md.index("### COCO val2017 (person detector boxes)") < md.index("### COCO val (ground-truth boxes)")
    assert (tmp_path / "out" / "coco.val-gt.csv").is_file()
