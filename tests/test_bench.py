"""`python -m harness bench` (make bench): settings, report rendering, and one small --quick run."""
from __future__ import annotations

import json

import pytest

from harness.commands import bench


def test_bench_quick_writes_the_report_with_ratios(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "bench"
    rc = main(["bench", "--quick", "--models", "hrnet-demo", "--batch", "1", "--iters", "1", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    md = (out / "report.md").read_text()
    rep = json.loads((out / "report.json").read_text())
    assert "| ratio |" in md and "ratio (mmpose / ours)" in md and "ratio to the whole evaluation" in md
    assert "torch" in md and rep["machine"]["threads"] == rep["settings"]["threads"] == 2
    assert rep["settings"]["quick"] is True and rep["refkit"] is None
    rows = rep["models"]
    assert {(r["model"], r["mode"]) for r in rows} == {("hrnet-demo", "train"), ("hrnet-demo", "infer")}
    for r in rows:
        assert r["kind"] == "channels_last vs default"
        assert r["speedup"] > 0 and abs(r["speedup"] - r["ours_s"] / r["channels_last_s"]) < 1e-12
        assert f"{r['speedup']:.2f}x" in md
    assert rep["data"]["ours"]["images_per_s"] > 0 and rep["data"]["ours"]["samples"] > 0
    ev = rep["eval"]
    assert ev["predictions"] == 500 * 20 and 0 < ev["kept_after_nms"] < ev["predictions"]
    assert 0 < ev["nms_share_of_evaluate"] < 1 and 0 <= ev["AP_sanity"] <= 1
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]  # no temp files left
    assert "wrote" in capsys.readouterr().out


def test_settings_are_validated():
    with pytest.raises(ValueError, match="BenchSettings.batch"):
        bench.BenchSettings(batch=0)
    with pytest.raises(ValueError, match="BenchSettings.modes"):
        bench.BenchSettings(modes=("eval",))
    with pytest.raises(ValueError, match="BenchSettings.warmup"):
        bench.BenchSettings(warmup=-1)
    q = bench.BenchSettings.quick_settings()
    assert q.quick and set(q.models) == set(bench.QUICK_MODELS)
    assert bench.BenchSettings().models == ("hrnet-w32", "hrformer-s", "hrnext-s")


def test_refkit_lookup(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="--refkit"):
        bench.find_refkit(str(tmp_path / "missing-python"))
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert bench.find_refkit(str(fake)) == str(fake)
    monkeypatch.setenv("REFKIT_PYTHON", str(fake))
    assert bench.find_refkit(None) == str(fake)


def test_cli_rejects_bad_arguments(capsys):
    from harness.cli import main

    assert main(["bench", "--quick", "--batch", "0"]) == 2
    assert main(["bench", "--quick", "--models", "hrnet-w33"]) == 2
    assert "BenchSettings.batch" in capsys.readouterr().err


def test_render_markdown_with_reference_rows():
    report = {
        "date": "2026-01-01T00:00:00+00:00", "refkit": "/x/python",
        "machine": {"cpu": "CPU", "cpu_count": 2, "torch": "2.x", "python": "3.11"},
        "settings": {"quick": False, "threads": 2},
        "models": [{"kind": "ours vs reference", "model": "hrnet-w32", "mode": "train", "batch": 8, "threads": 2,
                    "ours_s": 1.0, "reference_s": 1.5, "speedup": 1.5}],
        "data": {"ours": {"ms_per_sample": 5.0, "ms_per_sample_without_decode": 2.0, "images_per_s": 200.0,
                          "samples": 10},
                 "mmpose": {"ms_per_sample": 10.0, "ms_per_sample_without_decode": 6.0}, "speedup": 2.0,
                 "speedup_without_decode": 3.0},
        "eval": {"error": "not run"},
    }
    md = bench.render_markdown(report)
    assert "| hrnet-w32 | train | 8 | 2 | ours vs reference | 1.000 | 1.500 | 1.50x |" in md
    assert "| mmpose | 10.00 | 6.00 | 100.0 | 2.00x (3.00x without decode) |" in md
    assert "not measured: not run" in md
