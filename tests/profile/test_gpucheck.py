"""`python -m harness gpu-check`: its CPU path end to end (so the GPU script cannot rot), and its pieces."""
from __future__ import annotations

import json

import pytest
import torch

from harness.engine.checkpoint import atomic_save
from harness.profile import gpucheck


@pytest.mark.slow
def test_cpu_path_measures_everything_and_resumes_to_equal_weights(tmp_path, capsys):
    from harness.cli import main

    out, work = tmp_path / "bench", tmp_path / "work"
    rc = main(["gpu-check", "--cpu", "--out", str(out), "--work-dir", str(work), "--no-progress"])
    assert rc == 0, capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["gpu-cpu.json", "gpu-cpu.md"]
    rep = json.loads((out / "gpu-cpu.json").read_text())
    s = gpucheck.GpuCheckSettings.cpu_smoke()
    # Every (model, mode) under fp32 and bf16+channels_last, plus the compile cells.
    cells = {(r["model"], r["mode"], r["variant"]) for r in rep["steps"]}
    want = {(m, mode, v) for m, _ in s.models for mode in ("train", "infer") for v in gpucheck.VARIANTS[:2]}
    want |= {(m, mode, "compile") for m in s.compile_models for mode in ("train", "infer")}
    assert cells == want
    for r in rep["steps"]:
        assert "error" not in r and "skipped" not in r, r
        assert r["images_per_s"] > 0 and r["peak_mem_mb"] >= 0 and r["batch"] == s.batch
        assert ("compile_s" in r) == (r["variant"] == "compile")
    loader = rep["loader"]
    assert [r["workers"] for r in loader["rows"]] == list(s.loader_workers)
    assert all(r["images_per_s"] > 0 for r in loader["rows"])
    assert set(loader["needed"]) == {m for m, _ in s.models}
    t = rep["training"]
    assert t["ok"] and t["equal"] and t["max_abs_diff"] == 0.0 and t["backend"] == "gloo" and t["nproc"] == 2
    assert t["interrupted"] and 0 < t["interrupted_at"] < s.train_iters
    assert t["final_iters"] == [s.train_iters, s.train_iters]
    assert rep["machine"]["torch"] == torch.__version__
    md = (out / "gpu-cpu.md").read_text()
    assert "Final checkpoints equal: **True**" in md and "| hrnext-demo | 64x48 | train | bf16+channels_last |" in md
    assert "failed" not in md


def test_workers_needed_measured_or_extrapolated():
    rows = [{"workers": 0, "images_per_s": 500.0, "images_per_s_per_worker": 500.0},
            {"workers": 1, "images_per_s": 300.0, "images_per_s_per_worker": 300.0},
            {"workers": 4, "images_per_s": 1000.0, "images_per_s_per_worker": 250.0}]
    assert gpucheck.workers_needed(200.0, rows) == {"workers": 1, "extrapolated": False}
    assert gpucheck.workers_needed(900.0, rows) == {"workers": 4, "extrapolated": False}
    assert gpucheck.workers_needed(2600.0, rows) == {"workers": 11, "extrapolated": True}  # 2600 / 250 per worker
    assert gpucheck.workers_needed(10.0, rows[:1]) == {"workers": None, "extrapolated": True}


def test_compare_checkpoints(tmp_path):
    a = {"model": {"w": torch.ones(3), "b": torch.zeros(2)}}
    atomic_save(a, tmp_path / "a.pth")
    atomic_save({"model": {"w": torch.ones(3), "b": torch.zeros(2)}}, tmp_path / "b.pth")
    atomic_save({"model": {"w": torch.tensor([1.0, 1.5, 1.0]), "b": torch.zeros(2)}}, tmp_path / "c.pth")
    assert gpucheck.compare_checkpoints(tmp_path / "a.pth", tmp_path / "b.pth") == {"equal": True, "max_abs_diff": 0.0}
    assert gpucheck.compare_checkpoints(tmp_path / "a.pth", tmp_path / "c.pth") == {"equal": False, "max_abs_diff": 0.5}


def test_settings_are_validated_and_cuda_is_required_for_the_gpu_path(tmp_path):
    with pytest.raises(ValueError, match="GpuCheckSettings.train_iters"):
        gpucheck.GpuCheckSettings(train_iters=2)
    with pytest.raises(ValueError, match="GpuCheckSettings.device"):
        gpucheck.GpuCheckSettings(device="tpu")
    g = gpucheck.GpuCheckSettings.gpu()
    assert [m for m, _ in g.models] == ["hrnet-w32", "hrnet-w48", "hrformer-s", "hrformer-b", "hrnext-s", "hrnext-b"]
    assert dict(g.models)["hrnext-b"] == (384, 288) and dict(g.models)["hrnext-s"] == (256, 192)
    assert g.budget_s < 8 * 60 and g.device == "cuda"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            gpucheck.run_check(g, tmp_path, tmp_path)
