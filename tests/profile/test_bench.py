"""`python -m harness bench` (make bench) and harness.profile.sidebyside: settings, the alternating
protocol, ratios with spread, the torch-version refusal, the reference-kit set-up, one small --quick run."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest
import torch

from harness.commands import bench
from harness.profile import sidebyside
from harness.profile.sidebyside import RefKit, RefKitError, SideTiming, TorchMismatchError
from support.paths import FIXTURES as _FIXTURES, TESTS

FIXTURES = _FIXTURES / "reference"


def _timing(impl: str, name: str, mode: str, median: float, torch_version: str) -> SideTiming:
    line = json.dumps(dict(impl=impl, name=name, mode=mode, batch=8, threads=2, median_s=median,
                           min_s=median * 0.9, torch=torch_version, weights="reference", times_s=[median]))
    return SideTiming.from_json(line, impl)


class FakeRunner:
    """Answers each command with the next scripted median; records the order of the processes."""

    def __init__(self, ours: list[float], ref: list[float], ref_torch: str = torch.__version__):
        self.ours, self.ref, self.ref_torch, self.calls = list(ours), list(ref), ref_torch, []

    def __call__(self, cmd: list[str], threads: int) -> SideTiming:
        is_ref = cmd[1].endswith("time_ref.py")
        self.calls.append("ref" if is_ref else "ours")
        name, mode = cmd[2] if is_ref else cmd[3], cmd[cmd.index("--mode") + 1]
        if is_ref:
            return _timing("reference", name, mode, self.ref.pop(0), self.ref_torch)
        return _timing("hrbench", name, mode, self.ours.pop(0), torch.__version__)


def _fake_kit(tmp_path: Path, time_ref: str = "") -> RefKit:
    kit = tmp_path / "shared" / "tools" / "refkit"
    kit.mkdir(parents=True)
    (kit / "time_ref.py").write_text(time_ref)
    ref = tmp_path / "shared" / "reference"
    ref.mkdir()
    (ref / "refweights.py").write_text("")
    return RefKit.discover(sys.executable, kit)


def test_compare_alternates_and_reports_the_median_ratio_with_its_spread(tmp_path):
    kit = _fake_kit(tmp_path)
    run = FakeRunner(ours=[1.0, 2.0, 1.0], ref=[1.5, 2.0, 3.0])
    rows = sidebyside.compare(["hrnet-w32"], ["train"], kit, rounds=3, runner=run, progress=False)
    assert run.calls == ["ours", "ref"] * 3  # A B A B A B
    (r,) = rows
    assert r["ratios"] == [1.5, 1.0, 3.0]
    assert (r["ratio"], r["ratio_min"], r["ratio_max"]) == (1.5, 1.0, 3.0)
    assert r["ours_s"] == 1.0 and r["reference_s"] == 2.0 and r["rounds"] == 3
    assert r["ours_torch"] == r["reference_torch"] == torch.__version__ and not r["torch_mismatch"]
    with pytest.raises(ValueError, match="at least 3 rounds"):
        sidebyside.compare(["hrnet-w32"], ["train"], kit, rounds=2, runner=run, progress=False)


def test_the_bench_refuses_a_ratio_across_torch_versions(tmp_path):
    kit = _fake_kit(tmp_path)
    run = FakeRunner(ours=[1.0] * 3, ref=[2.0] * 3, ref_torch="2.13.0")
    with pytest.raises(TorchMismatchError, match=r"ours ran torch .*, the reference torch 2\.13\.0"):
        sidebyside.compare(["hrnext-s"], ["train"], kit, runner=run, progress=False)
    assert run.calls == ["ours", "ref"]  # refused after the first pair, before more time is spent
    # Nothing is written by a refused bench.
    s = bench.BenchSettings(models=("hrnet-w32",), modes=("train",))
    with pytest.raises(TorchMismatchError):
        bench.run_bench(s, kit=kit, out_dir=tmp_path / "out", runner=FakeRunner([1.0] * 3, [2.0] * 3, "2.13.0"),
                        progress=False)
    assert not (tmp_path / "out").exists()


def test_allow_mismatch_reports_the_row_loudly_labelled(tmp_path):
    kit = _fake_kit(tmp_path)
    run = FakeRunner(ours=[1.0] * 3, ref=[2.0] * 3, ref_torch="2.13.0")
    (r,) = sidebyside.compare(["hrnet-w32"], ["infer"], kit, runner=run, allow_mismatch=True, progress=False)
    assert r["torch_mismatch"] and r["reference_torch"] == "2.13.0" and r["ratio"] == 2.0
    report = {"date": "d", "machine": {"cpu": "CPU", "cpu_count": 2, "torch": torch.__version__, "python": "3.11"},
              "settings": {"quick": False, "threads": 2, "batch": 8}, "refkit": {"python": "/x/python"},
              "models": [r], "data": {"error": "not run"}, "eval": {"error": "not run"}}
    md = bench.render_markdown(report)
    assert (f"| hrnet-w32 | infer | ours vs reference **TORCH MISMATCH: not comparable** | 3 | 1.000 | 2.000 | "
            f"2.00x (2.00-2.00) | {torch.__version__} / 2.13.0 |") in md


@pytest.mark.slow
def test_cli_refuses_a_reference_that_reports_another_torch(tmp_path, capsys):
    """End to end through `bench`: our side really runs (one step of hrnet-w32 with the reference weights);
    the reference kit's timer is a stand-in whose JSON says it ran torch 2.13.0."""
    line = dict(name="hrnet-w32", mode="infer", batch=1, threads=1, median_s=1.0, min_s=1.0, torch="2.13.0",
                impl="reference", weights="reference", times_s=[1.0])
    kit = _fake_kit(tmp_path, time_ref=f"import json\nprint(json.dumps({line!r}))\n")
    # Our side loads the reference weights through the kit's rule: here the tests' own implementation.
    (kit.reference_dir / "refweights.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from support.reference_rule import rule_tensor\n"
        "def reference_state_dict(keys):\n"
        "    return {k: rule_tensor(k, v['shape']) for k, v in keys.items() if v['dtype'].startswith('torch.float')}\n")
    (kit.reference_dir / "hrnet-w32.manifest.json").write_text((FIXTURES / "hrnet-w32.manifest.json").read_text())
    from harness.cli import main

    out = tmp_path / "bench"
    rc = main(["bench", "--refkit", sys.executable, "--refkit-dir", str(kit.kit_dir), "--models", "hrnet-w32",
               "--modes", "infer", "--batch", "1", "--threads", "1", "--iters", "1", "--no-progress",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "the reference torch 2.13.0" in err and "--allow-mismatch" in err
    assert not out.exists()


def test_refkit_discovery_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("REFKIT_DIR", raising=False)
    monkeypatch.delenv("REFKIT_PYTHON", raising=False)
    with pytest.raises(RefKitError, match="REFKIT_DIR"):
        RefKit.discover(sys.executable, tmp_path / "nowhere")
    kit = _fake_kit(tmp_path)
    with pytest.raises(RefKitError, match="setup.sh"):
        RefKit.discover(tmp_path / "missing-python", kit.kit_dir)
    monkeypatch.setenv("REFKIT_DIR", str(kit.kit_dir))
    monkeypatch.setenv("REFKIT_PYTHON", sys.executable)
    found = RefKit.discover()
    assert found.python == Path(sys.executable) and found.reference_dir == kit.reference_dir
    kit = RefKit(kit.python, kit.kit_dir, kit.reference_dir, src_dir=tmp_path / "src")
    assert "HRNEXT_MIRROR" in kit.available("hrnext-s") and kit.available("hrnet-w32") is None
    assert "no reference implementation" in kit.available("hrnet-demo")


def test_ensure_refkit_builds_with_the_projects_torch_spec(tmp_path):
    """A missing (or other-torch) kit is built by setup.sh with TORCH_SPEC and HRNEXT_MIRROR passed through;
    a kit that still runs another torch is refused."""
    kit = _fake_kit(tmp_path)
    # A stand-in setup.sh: its "python" prints the torch spec it was built with as torch.__version__.
    (kit.kit_dir / "setup.sh").write_text(
        'set -e\nmkdir -p "$REFKIT_VENV/bin" "$REFSPEED_SRC/hrnext_authors"\n'
        'printf \'#!/bin/sh\\necho "%s"\\n\' "$TORCH_SPEC" > "$REFKIT_VENV/bin/python"\n'
        'chmod +x "$REFKIT_VENV/bin/python"\n'
        'echo "$HRNEXT_MIRROR" > "$REFSPEED_SRC/hrnext_authors/hrnext.py"\n')
    kit = RefKit(tmp_path / "venv" / "bin" / "python", kit.kit_dir, kit.reference_dir, src_dir=tmp_path / "src")
    with pytest.raises(RefKitError, match="--torch-spec"):
        sidebyside.ensure_refkit(kit, "9.9.9")
    sidebyside.ensure_refkit(kit, "9.9.9", torch_spec="9.9.9", mirror="/mirror/HRNeXt.git")
    assert sidebyside.interpreter_torch(kit.python) == "9.9.9"
    assert (kit.src_dir / "hrnext_authors" / "hrnext.py").read_text().strip() == "/mirror/HRNeXt.git"
    sidebyside.ensure_refkit(kit, "9.9.9", setup=False)  # reused as it is
    with pytest.raises(RefKitError, match="does not give the project's torch"):
        sidebyside.ensure_refkit(kit, "9.9.10", torch_spec="9.9.9")


def test_side_timing_parse_errors_name_the_source():
    with pytest.raises(RuntimeError, match="time_ref.py: expected one JSON line"):
        SideTiming.from_json("Traceback ...", "time_ref.py")
    t = _timing("hrbench", "hrnet-w32", "train", 0.5, "2.14.1")
    assert (t.median_s, t.torch, t.times_s) == (0.5, "2.14.1", (0.5,))


@pytest.mark.slow
def test_bench_quick_writes_the_report_with_ratios(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "bench"
    rc = main(["bench", "--quick", "--models", "hrnet-demo", "hrnext-demo", "--modes", "infer", "--batch", "1",
               "--iters", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    md = (out / "report.md").read_text()
    rep = json.loads((out / "report.json").read_text())
    assert "| ratio (spread) |" in md and "ratio (mmpose / ours)" in md and "ratio to the whole evaluation" in md
    assert rep["machine"]["threads"] == rep["settings"]["threads"] == 2 and rep["machine"]["torch"] == torch.__version__
    assert rep["settings"]["quick"] is True and rep["refkit"] is None
    (r,) = rep["models"]
    assert (r["model"], r["mode"], r["kind"]) == ("hrnext-demo", "infer", "channels_last vs default")
    assert rep["always_channels_last"] == ["hrnet-demo"] and "hrnet-demo: no channels_last vs default row" in md
    assert r["ratio"] > 0 and r["ratio"] == statistics.median(r["ratios"])
    assert abs(r["ratio"] - r["ours_s"] / r["channels_last_s"]) < 1e-12  # one round
    assert r["ours_torch"] == torch.__version__
    assert f"{r['ratio']:.2f}x" in md
    assert rep["data"]["ours"]["images_per_s"] > 0 and rep["data"]["ours"]["samples"] > 0
    restart_marked = rep["data"]["restart_marked"]  # needs jpegtran: .ci/run installs libjpeg-turbo-progs
    assert "rows" in restart_marked, restart_marked.get("error")
    rows = restart_marked["rows"]
    assert [r["decode"] for r in rows] == ["full", "roi", "scaled"]
    assert all(r["ours_ms"] > 0 and r["samples"] == rep["data"]["ours"]["samples"] for r in rows)
    assert "| roi |" in md
    ev = rep["eval"]
    assert ev["predictions"] == 500 * 20 and 0 < ev["kept_after_nms"] < ev["predictions"]
    assert 0 < ev["nms_share_of_evaluate"] < 1 and 0 <= ev["AP_sanity"] <= 1
    bs = ev["bootstrap"]  # the paired bootstrap of two models on the same synthetic set
    assert bs["images"] == 500 and bs["resamples"] == 100 and bs["seconds_resamples"] > 0
    lo, hi = bs["diff"][1], bs["diff"][2]
    assert lo <= bs["diff"][0] <= hi and "Paired bootstrap: 500 images" in md
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
    assert bench.BenchSettings().rounds >= sidebyside.MIN_ROUNDS


def test_cli_rejects_bad_arguments(capsys):
    from harness.cli import main

    assert main(["bench", "--quick", "--batch", "0"]) == 2
    assert main(["bench", "--quick", "--models", "hrnet-w33"]) == 2
    assert "BenchSettings.batch" in capsys.readouterr().err
    assert main(["bench", "--refkit-dir", "/nonexistent/refkit", "--models", "hrnet-w32"]) == 2
    assert "REFKIT_DIR" in capsys.readouterr().err


def test_render_markdown_with_reference_rows():
    report = {
        "date": "2026-01-01T00:00:00+00:00", "refkit": {"python": "/x/python", "torch": "2.14.1"},
        "machine": {"cpu": "CPU", "cpu_count": 2, "torch": "2.14.1", "python": "3.11"},
        "settings": {"quick": False, "threads": 2, "batch": 8},
        "models": [{"kind": "ours vs reference", "model": "hrnet-w32", "mode": "train", "batch": 8, "threads": 2,
                    "rounds": 3, "ours_s": 1.0, "reference_s": 1.5, "ratio": 1.5, "ratio_min": 1.25,
                    "ratio_max": 1.75, "ours_torch": "2.14.1", "reference_torch": "2.14.1", "torch_mismatch": False}],
        "not_compared": {"hrnext-s": "no HRNeXt code"},
        "data": {"ours": {"ms_per_sample": 5.0, "ms_per_sample_without_decode": 2.0, "images_per_s": 200.0,
                          "samples": 10},
                 "mmpose": {"ms_per_sample": 10.0, "ms_per_sample_without_decode": 6.0}, "speedup": 2.0,
                 "speedup_without_decode": 3.0,
                 "restart_marked": {"rows": [{"decode": "roi", "ours_ms": 2.5, "mmpose_ms": 6.0, "speedup": 2.4,
                                              "samples": 10},
                                             {"decode": "scaled", "ours_ms": 2.0, "mmpose_ms": None,
                                              "speedup": None, "samples": 10}]}},
        "eval": {"error": "not run"},
    }
    md = bench.render_markdown(report)
    assert "| hrnet-w32 | train | ours vs reference | 3 | 1.000 | 1.500 | 1.50x (1.25-1.75) | 2.14.1 / 2.14.1 |" in md
    assert "hrnext-s: not compared with a reference (no HRNeXt code)" in md
    assert "| mmpose | 10.00 | 6.00 | 100.0 | 2.00x (3.00x without decode) |" in md
    assert "not measured: not run" in md and "(torch 2.14.1)" in md
    assert "| roi | 2.50 | 6.00 | 2.40x |" in md and "| scaled | 2.00 | not available | - |" in md
    assert "Allocator (both sides' processes): glibc defaults" in md
    report["machine"]["malloc"] = {"MALLOC_MMAP_THRESHOLD_": "33554432"}
    assert "Allocator (both sides' processes): MALLOC_MMAP_THRESHOLD_=33554432 (harness.malloc)" in (
        bench.render_markdown(report))
    report["data"]["restart_marked"] = {"error": "jpegtran not found"}
    assert "Restart-marked copy: not measured (jpegtran not found)." in bench.render_markdown(report)
