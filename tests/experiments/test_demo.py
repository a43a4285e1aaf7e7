"""`make demo` smoke run: tiny data, two iterations per family, all three families through the real
engine, evaluation, records, table and plot; then reuse, force, and the failure paths."""
from __future__ import annotations

import argparse
import json

import cv2
import pandas as pd
import pytest
import torch

import harness.engine
from harness.commands import demo as demo_cmd
from harness.experiments.demo import (EXPECTED_OVERHEAD, FAMILIES, TABLE_COLUMNS, DemoConfig, DemoError, expected_seconds,
                                     experiment, run_demo)
from harness.experiments.runner import makespan
from harness.results import load_results


@pytest.fixture(scope="module", autouse=True)
def _threads():
    # One thread: on a shared 2-core CI box, OpenMP spin-waiting of 2 threads costs more than it gains.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _cfg(root, **kw) -> DemoConfig:
    return DemoConfig.smoke_preset(data_root=str(root / "data"), out_dir=str(root / "out"),
                                   work_dir=str(root / "wd"), progress=False, **kw)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return root, run_demo(_cfg(root, jobs=2))  # the families side by side in two worker processes


@pytest.mark.slow
def test_smoke_run_writes_table_plot_and_records(smoke):
    root, res = smoke
    out = root / "out"
    assert res["cached"] == []
    assert [r["family"] for r in res["results"]] == list(FAMILIES)
    # Table: one row per family, the documented columns, in Markdown and CSV.
    csv = pd.read_csv(out / "table.csv")
    assert list(csv.columns) == list(TABLE_COLUMNS)
    assert list(csv["model"]) == ["HRNet-DEMO", "HRFormer-DEMO", "HRNeXt-DEMO"]
    for col in ("AP", "AP .5", "AP .75", "AP occluded", "untrained AP"):
        assert csv[col].between(0, 1).all(), col
    assert csv["params (M)"].between(1.0, 1.6).all()  # the demo variants: 1.3-1.5M parameters
    assert (csv["GFLOPs"] > 0).all() and (csv["latency (ms)"] > 0).all()
    md = (out / "table.md").read_text()
    assert r"\begin{tabular}{lrrrrrrrr}" in (out / "table.tex").read_text()
    table, _, stats = md.partition("\n\n**")
    assert md.startswith("| model | AP |") and table.count("-DEMO |") == 3 and "64x48 input" in md
    # Below it: val AP with bootstrap intervals (differences from HRNet) and the occluded split by MaxIoU.
    assert "Val AP, 95% intervals" in md and "Δ vs HRNet-DEMO" in md and md.count("| HRNet-DEMO |") == 1 + 4
    assert "Occluded split (GT boxes): AP by MaxIoU" in md
    assert cv2.imread(str(out / "occluded_ap_by_occlusion.png")) is not None
    # Plot: a real PNG of the figure's size.
    img = cv2.imread(str(out / "accuracy_vs_cost.png"))
    assert img is not None and img.shape[0] > 400 and img.shape[1] > 1000
    # Records under out/runs (never results/runs): val (det boxes) and occluded (GT boxes) per family.
    df = load_results(out, strict=True)
    runs = df[df["kind"] == "measured"]
    assert len(runs) == 6
    assert set(zip(runs["model"], runs["split"], runs["boxes"])) == {
        (f"{f}-demo", s, b) for f in FAMILIES for s, b in (("val", "det"), ("occluded", "gt"))}
    assert (runs["input_h"] == 64).all() and (runs["input_w"] == 48).all()
    # Training really ran through the engine: 2 iterations each, checkpoint and config saved.
    for r in res["results"]:
        assert r["iterations"] == 2
        wd = root / "wd" / r["family"]
        assert (wd / "last.pth").is_file() and (wd / "config.json").is_file() and (wd / "demo_result.json").is_file()
        cfg = json.loads((wd / "config.json").read_text())["config"]
        assert cfg["data"]["input_size"] == [64, 48] and cfg["optim"]["lr"] == DemoConfig().lr and cfg["train"]["max_iters"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["wall_seconds"] > 0 and set(summary["families"]) == set(FAMILIES)


@pytest.mark.slow
def test_identical_recipe_across_families(smoke):
    root, _ = smoke
    from harness.config import diff, load_config

    cfgs = [load_config(root / "wd" / f / "config.json") for f in FAMILIES]
    for other in cfgs[1:]:
        # Only the model (and the experiment's name/work dir) differ between families.
        keys = set(diff(cfgs[0], other))
        assert keys <= {"model.name", "work_dir"}, keys


@pytest.mark.slow
def test_rerun_reuses_finished_runs(smoke, monkeypatch):
    root, _ = smoke

    class NoTraining:
        def __init__(self, *a, **k):
            raise AssertionError("a finished family was retrained")

    monkeypatch.setattr(harness.engine, "Trainer", NoTraining)
    res = run_demo(_cfg(root))
    assert res["cached"] == list(FAMILIES)
    assert len(load_results(root / "out")) == 6  # no new records


def test_expected_duration_comes_from_a_probe_of_each_family(smoke):
    root, _ = smoke
    cfg = _cfg(root, jobs=2)
    seconds, per_iter = expected_seconds(cfg, list(FAMILIES))
    assert set(per_iter) == set(FAMILIES) and all(v > 0 for v in per_iter.values())
    iters = experiment(cfg, "hrnet").train.max_iters  # the smoke preset: 2 iterations per family
    assert iters == 2
    assert seconds == pytest.approx(EXPECTED_OVERHEAD * makespan([iters * v for v in per_iter.values()], 2))


@pytest.mark.slow
def test_force_retrains_and_replaces_records(smoke, caplog):
    root, _ = smoke
    old = json.loads((root / "wd" / "hrnet" / "demo_result.json").read_text())
    with caplog.at_level("INFO", logger="harness.experiments.demo"):
        res = run_demo(_cfg(root, families=("hrnet",), force=True))
    assert "demo: expected to take about" in caplog.text and "hrnet " in caplog.text
    assert res["cached"] == []
    new = json.loads((root / "wd" / "hrnet" / "demo_result.json").read_text())
    assert new["records"] != old["records"] and new["iterations"] == 2
    runs = load_results(root / "out")
    assert (runs["model"] == "hrnet-demo").sum() == 2  # the earlier hrnet records were replaced, not added to
    # Deterministic training: the retrained weights score exactly as before.
    assert new["val"] == old["val"]


def test_changed_settings_retrain_instead_of_reusing(tmp_path):
    """A marker from other settings is not reused; an interrupted run with other settings is cleared."""
    cfg = _cfg(tmp_path, families=("hrnet",), max_iters=1)
    wd = tmp_path / "wd" / "hrnet"
    wd.mkdir(parents=True)
    (wd / "demo_result.json").write_text(json.dumps({"key": "something else", "config_hash": "0" * 64}))
    res = run_demo(cfg)
    assert res["cached"] == [] and res["results"][0]["iterations"] == 1


def test_bad_settings_name_the_field(tmp_path, capsys):
    with pytest.raises(DemoError, match="DemoConfig.epochs"):
        DemoConfig(epochs=0)
    with pytest.raises(DemoError, match="DemoConfig.families"):
        DemoConfig(families=("resnet",))
    with pytest.raises(DemoError, match="DemoConfig.input_size"):
        DemoConfig(input_size=(130, 96))
    with pytest.raises(DemoError, match="DemoConfig.lr"):
        DemoConfig(lr=float("nan"))
    with pytest.raises(DemoError, match="synth_"):
        DemoConfig(synth_image_size=(32, 32)).synth_config()

    parser = argparse.ArgumentParser()
    demo_cmd.add_parser(parser.add_subparsers())
    for argv, needle in ((["demo", "--families", "hrnet,vit"], "DemoConfig.families"),
                         (["demo", "--input-size", "big"], "--input-size"),
                         (["demo", "--epochs", "0"], "DemoConfig.epochs")):
        args = parser.parse_args(argv + ["--out", str(tmp_path / "o")])
        assert args.func(args) == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_demo_defaults_are_the_registered_demo_experiments():
    # `python -m harness train demo-<family>` trains exactly what `make demo` trains.
    from harness.config import diff, get_experiment
    for family in FAMILIES:
        assert set(diff(get_experiment(f"demo-{family}"), experiment(DemoConfig(), family))) == {"work_dir"}
