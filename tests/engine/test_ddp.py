"""DistributedDataParallel on CPU (gloo, 2 processes under torchrun) vs one process, same global batch."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.engine import load_checkpoint
from support import engine_support as support


SCRIPT = str(Path(support.__file__).resolve())
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _sets(**extra) -> list[str]:
    return sum((["--set", s] for s in support.tiny_overrides(**extra)), [])


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    return out


def _torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


@pytest.mark.slow
def test_gloo_two_processes_match_one_process(tmp_path):
    sets = _sets(**{"train.epochs": 2, "train.val_interval": 2})
    _run([sys.executable, SCRIPT, "train", "coco-mini-hrnet", *sets, "--work-dir", str(tmp_path / "one"),
          "--device", "cpu", "--no-progress"])
    out = _run([*_torchrun(2), SCRIPT, "train", "coco-mini-hrnet", *sets, "--work-dir", str(tmp_path / "two"),
                "--device", "cpu", "--no-progress"])
    assert "cpu x2" in out.stderr  # both ranks joined one group
    one, two = load_checkpoint(tmp_path / "one" / "last.pth"), load_checkpoint(tmp_path / "two" / "last.pth")
    assert one["global_iter"] == two["global_iter"] == 10
    assert two["world_size"] == 2 and len(two["rng"]) == 2  # every rank's RNG state is kept for resume
    # Gradients averaged over 2 half-batches == gradient of the full batch, up to float rounding.
    for k in one["model"]:
        assert torch.allclose(one["model"][k], two["model"][k], rtol=1e-4, atol=1e-6), k
    assert abs(one["best_ap"] - two["best_ap"]) < 1e-4
    # Rank-0 logging: one row per iteration, not one per rank.
    with open(tmp_path / "two" / "log.csv", newline="") as f:
        assert [int(r["iter"]) for r in csv.DictReader(f)] == list(range(1, 11))
    assert out.stdout.count("coco-mini-hrnet: 10 iterations") == 1


@pytest.mark.slow
def test_gloo_real_model_with_batchnorm_trains_and_resumes(tmp_path):
    """A real demo backbone (BatchNorm: per-rank statistics on CPU) under DDP, cut short and resumed."""
    common = {"train.epochs": 2, "train.val_interval": 0, "train.ckpt_interval": 1}
    out = _run([*_torchrun(2), SCRIPT, "--model", "real", "train", "coco-mini-hrnet",
                *_sets(**common, **{"train.max_iters": 6}), "--work-dir", str(tmp_path), "--device", "cpu",
                "--no-progress"])
    ckpt = load_checkpoint(tmp_path / "last.pth")
    assert ckpt["global_iter"] == 6 and (ckpt["epoch"], ckpt["iter_in_epoch"]) == (1, 1)
    # Continue to the end under DDP: max_iters only caps the run, so the config still matches.
    out = _run([*_torchrun(2), SCRIPT, "--model", "real", "train", "coco-mini-hrnet", *_sets(**common),
                "--work-dir", str(tmp_path), "--device", "cpu", "--no-progress", "--resume", "auto"])
    assert "resumed from" in out.stderr and "epoch 1, batch 1/5, iteration 6" in out.stderr
    done = load_checkpoint(tmp_path / "last.pth")
    assert done["global_iter"] == 10 and (done["epoch"], done["iter_in_epoch"]) == (2, 0)
    assert all(torch.isfinite(v).all() for v in done["model"].values() if v.is_floating_point())
