"""The ablation runner: a tiny real grid (hrnext-demo on a few synthetic images) trains, writes its
table and plot, skips finished cells, resumes an interrupted one, aggregates seeds, and rejects bad grids."""
from __future__ import annotations

import dataclasses
import json
import os
import signal

import pandas as pd
import pytest
import torch

from harness import ablation as A
from harness.ablation import Ablation, AblationError, Variation, get_ablation, run_ablation
from harness.data.synthetic import SynthConfig


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("ablation")


def tiny(tmp, **kw) -> Ablation:
    """Baseline + two variations; 4 training images (about 10 people) -> 2 iterations of batch 4."""
    return Ablation(
        name="tiny", base_experiment="demo-hrnext", description="test grid",
        variations=[Variation("no-gate", {"gate": False}, "no spatial gate"),
                    Variation("static-ffn", {"ffn_dynamic": False}, "static FFN")],
        synthetic=SynthConfig(seed=3, image_size=(128, 128), people_per_image=(2, 3),
                              num_images={"train": 4, "val": 2, "occluded": 0}),
        experiment_overrides={"data.root": str(tmp / "data"), "data.input_size": (32, 32), "train.epochs": 1,
                              "train.batch_size": 4, "train.val_interval": 0, "train.ckpt_interval_iters": 1,
                              "train.log_interval": 1, "sched.warmup_iters": 1, "eval.flip_test": False},
        eval_split="val", **kw)


def run(tmp, **kw):
    return run_ablation(tiny(tmp), out_dir=tmp / "out", work_root=tmp / "work", progress=False, **kw)


def test_grid_trains_every_cell_and_writes_table_plot_json(tmp):
    res = run(tmp)
    assert (res.trained, res.skipped) == (3, 0)
    out = tmp / "out" / "tiny"
    names = {p.name for p in out.iterdir()}
    assert {"table.md", "table.tex", "table.csv", "delta_ap_vs_cost.png", "results.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]  # atomic writes leave no temp files
    table = pd.read_csv(out / "table.csv")
    assert list(table["variation"]) == ["baseline", "no-gate", "static-ffn"]
    base = table.iloc[0]
    assert base["dAP"] == 0 and base["dparams_M"] == 0 and base["dGFLOPs"] == 0
    # Costs are the real models' (seed-independent): the gate off removes params and FLOPs.
    from harness import create_pose_model

    n = lambda **ov: sum(p.numel() for p in create_pose_model("hrnext-demo", **ov).parameters())  # noqa: E731
    assert table.loc[1, "dparams_M"] * 1e6 == pytest.approx(n(gate=False) - n(), abs=0.5)
    assert table.loc[2, "dparams_M"] * 1e6 == pytest.approx(n(ffn_dynamic=False) - n(), abs=0.5)
    assert table.loc[1, "dGFLOPs"] < 0 and table.loc[2, "dGFLOPs"] < 0
    assert (table["train_img_per_s"] > 0).all()
    assert (table["val_loss"] > 0).all() and (table["final_train_loss"] > 0).all()
    assert table.loc[1, "dval_loss"] == pytest.approx(table.loc[1, "val_loss"] - base["val_loss"])
    assert table["AP"].between(0, 1).all()
    for row in table.itertuples():
        assert row.dAP == pytest.approx(row.AP - base["AP"])
    md = (out / "table.md").read_text()
    assert "| baseline |" in md and "gate=False" in md and "ffn_dynamic=False" in md and "one seed" in md
    tex = (out / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and "no-gate" in tex and "gate=False" in tex
    png = (out / "delta_ap_vs_cost.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    payload = json.loads((out / "results.json").read_text())
    assert len(payload["cells"]) == 3 and payload["run"]["trained"] == 3
    assert {c["variation"] for c in payload["cells"]} == {"baseline", "no-gate", "static-ffn"}
    # Each cell trained in its own work dir keyed by its config, with the engine's files and a done marker.
    dirs = sorted(p.name for p in (tmp / "work" / "tiny").iterdir())
    assert len(dirs) == 3 and all((tmp / "work" / "tiny" / d / A.MARKER).is_file() for d in dirs)
    cells = tiny(tmp).cells()
    assert sorted(c.work_dir(tmp / "work").name for c in cells) == dirs
    assert len({c.key for c in cells}) == 3


def test_cells_side_by_side_give_the_same_numbers(tmp, monkeypatch):
    # jobs=2: the cells train in two spawned single-threaded workers; results equal the one-by-one run's.
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    res = run_ablation(tiny(tmp), out_dir=tmp / "out-par", work_root=tmp / "work-par", progress=False, jobs=2)
    assert (res.trained, res.skipped) == (3, 0)
    seq = pd.read_csv(tmp / "out" / "tiny" / "table.csv")
    par = pd.read_csv(tmp / "out-par" / "tiny" / "table.csv")
    assert list(par["variation"]) == list(seq["variation"])
    for col in ("AP", "val_loss", "final_train_loss", "dparams_M", "dGFLOPs"):
        assert par[col].tolist() == pytest.approx(seq[col].tolist(), rel=1e-6, abs=1e-12), col
    assert res.cpu_s > 0  # the workers' CPU time is counted


def test_rerun_skips_finished_cells(tmp, monkeypatch):
    import harness.engine as engine

    def boom(*a, **k):
        raise AssertionError("a finished cell was trained or evaluated again")

    monkeypatch.setattr(engine.Trainer, "fit", boom)
    monkeypatch.setattr(engine, "run_test", boom)
    res = run(tmp)
    assert (res.trained, res.skipped) == (0, 3)
    assert len(res.table) == 3
    # report_only tabulates without training, too, and back-fills a held-out loss missing from an older marker.
    marker = tiny(tmp).cells()[1].work_dir(tmp / "work") / A.MARKER
    old = json.loads(marker.read_text())
    marker.write_text(json.dumps({k: v for k, v in old.items() if k != "val_loss"}))
    assert run(tmp, report_only=True).skipped == 3
    assert json.loads(marker.read_text())["val_loss"] == pytest.approx(old["val_loss"], rel=1e-5)


def test_interrupted_cell_resumes_and_seeds_give_spread(tmp, monkeypatch):
    import harness.engine.trainer as trainer_mod
    from harness.engine import TrainingInterrupted

    # Interrupt the first new cell (baseline, seed 1) after its first iteration, as SIGTERM would.
    real_step = trainer_mod.Trainer._step
    calls = {"n": 0}

    def step_then_signal(self, batch):
        calls["n"] += 1
        if calls["n"] == 1:  # the engine agrees on a pending signal inside the step, stops after it
            self._stop_signal = signal.SIGTERM
        return real_step(self, batch)

    monkeypatch.setattr(trainer_mod.Trainer, "_step", step_then_signal)
    with pytest.raises(TrainingInterrupted):
        run(tmp, seeds=(0, 1))
    cell = next(c for c in tiny(tmp).cells((0, 1)) if c.seed == 1 and c.variation == "baseline")
    wd = cell.work_dir(tmp / "work")
    assert (wd / "last.pth").is_file() and not (wd / A.MARKER).exists()
    assert torch.load(wd / "last.pth", weights_only=False)["global_iter"] == 1
    monkeypatch.setattr(trainer_mod.Trainer, "_step", real_step)
    res = run(tmp, seeds=(0, 1))
    assert (res.trained, res.skipped) == (3, 3)  # seed 0 finished earlier; seed 1: resumed + two fresh
    marker = json.loads((wd / A.MARKER).read_text())
    assert marker["resumed"] is True and marker["iterations"] == 2
    fresh = [m for m in res.cells.to_dict("records") if m["seed"] == 1 and m["variation"] != "baseline"]
    assert [m["resumed"] for m in fresh] == [False, False]
    # Two seeds: mean over seeds, std columns, paired spread of the deltas.
    t = res.table.set_index("variation")
    assert (t["seeds"] == 2).all()
    c = res.cells
    for v in ("baseline", "no-gate"):
        aps = c[c["variation"] == v].sort_values("seed")["AP"].to_numpy()
        assert t.loc[v, "AP"] == pytest.approx(aps.mean())
        assert t.loc[v, "AP_std"] == pytest.approx(aps.std(ddof=1))
    d = (c[c["variation"] == "no-gate"].sort_values("seed")["AP"].to_numpy()
         - c[c["variation"] == "baseline"].sort_values("seed")["AP"].to_numpy())
    assert t.loc["no-gate", "dAP_std"] == pytest.approx(d.std(ddof=1), abs=1e-12)
    md = (tmp / "out" / "tiny" / "table.md").read_text()
    assert "±" in md and "2 seeds" in md


def test_bad_definitions_are_rejected_with_clear_errors(tmp):
    with pytest.raises(AblationError, match=r"unknown switch 'gate_typo'.*dlp_dynamic.*gate_mode"):
        Variation("typo", {"gate_typo": False})
    with pytest.raises(AblationError, match="gate_mode"):  # a bad value fails at definition time
        dataclasses.replace(tiny(tmp), variations=(Variation("max-gate", {"gate_mode": "max"}),))
    with pytest.raises(AblationError, match="reserved"):
        Variation("baseline", {})
    with pytest.raises(AblationError, match="Variation.name"):
        Variation("No Gate", {"gate": False})
    with pytest.raises(AblationError, match="duplicate"):
        Ablation("x", "demo-hrnext", [Variation("a", {"gate": False}), Variation("a", {"gate": True})])
    with pytest.raises(AblationError, match="HRNeXt family"):
        Ablation("x", "demo-hrnet", [Variation("a", {"gate": False})])
    with pytest.raises(AblationError, match="unknown experiment"):
        Ablation("x", "no-such-experiment", [Variation("a", {"gate": False})])
    with pytest.raises(AblationError, match="train.epochs"):
        Ablation("x", "demo-hrnext", [Variation("a", {"gate": False})], experiment_overrides={"train.epochs": 0})
    with pytest.raises(AblationError, match="seeds"):
        Ablation("x", "demo-hrnext", [Variation("a", {"gate": False})], seeds=(0, 0))
    with pytest.raises(AblationError, match="seeds"):
        tiny(tmp).cells(seeds=(-1,))
    with pytest.raises(AblationError, match="unknown ablation 'nope'.*default"):
        get_ablation("nope")
    with pytest.raises(AblationError, match="no finished baseline"):
        run_ablation(tiny(tmp), out_dir=tmp / "out2", work_root=tmp / "empty", progress=False, report_only=True)


def test_registered_grids_and_cli(tmp, capsys):
    from harness.cli import main

    default = get_ablation("default")
    assert default.base_experiment == "demo-hrnext" and default.synthetic is not None
    names = {v.name for v in default.variations}
    assert {"no-gate", "add-gate", "static-ffn", "block-hrformer", "block-hrnet"} <= names
    paper = get_ablation("coco-paper")
    assert paper.experiment().model.name == "hrnext-s" and paper.synthetic is None
    switched = {k for v in paper.variations for k in v.overrides}
    assert {"dlp_dynamic", "dlp_kernel_size", "num_kernels", "gate", "gate_convs", "gate_mode", "ffn_dynamic",
            "mlp_ratio", "layer_scale_init", "drop_path_rate", "branch_norm", "block"} <= switched
    assert main(["ablate", "--list"]) == 0
    assert "coco-paper" in capsys.readouterr().out
    assert main(["ablate", "default", "--dry-run", "--work-root", str(tmp / "nowhere")]) == 0
    out = capsys.readouterr().out
    assert out.count("todo") == len(default.variations) + 1 and "gate=False" in out
    assert main(["ablate", "nope"]) == 2
    assert "unknown ablation" in capsys.readouterr().err
    assert main(["ablate", "default", "--seeds", "a,b", "--dry-run"]) == 2


def test_plot_labels_of_same_cost_variations_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    xs, ys = np.array([0.0, 0.0, 0.0, 0.0, 0.05]), np.array([0.0, 0.02, -0.03, 0.01, 0.0])
    ax.plot(xs, ys, "o")
    ax.set_xlim(-0.1, 0.1)
    ax.set_ylim(-1, 1)
    names = ["baseline", "static-dlp", "add-gate", "static-ffn", "block-hrnet"]
    A._place_labels(ax, xs, ys, names, colors=["C3"] + ["k"] * 4, dpi=fig.dpi)
    fig.canvas.draw()
    texts = [t for t in ax.texts if t.get_text() in names]
    assert sorted(t.get_text() for t in texts) == sorted(names)
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the text itself, not its leader line
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    # Labels keep the vertical order of their points (no label next to the wrong point).
    col = sorted((t for t in texts if t.get_text() != "block-hrnet"), key=lambda t: Text.get_window_extent(t, renderer).y0)
    assert [t.get_text() for t in col] == ["add-gate", "baseline", "static-ffn", "static-dlp"]
    plt.close(fig)
