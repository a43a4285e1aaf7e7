"""A run killed with SIGKILL mid-epoch and resumed with ``--resume auto`` ends bit-identical.

The training runs in a subprocess (``tests/support/engine_support.py``: the real CLI handler with a
real HRFormer demo model, drop-path on so the RNG stream matters, and the tiny stand-in data).
Checkpoints are written every 3 iterations with 5 iterations per epoch, so every checkpoint is
mid-epoch; the process is SIGKILLed as soon as the first one exists.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.engine import load_checkpoint
from support import engine_support as support


SCRIPT = Path(support.__file__).resolve()


def _cmd(work_dir: Path, *extra: str) -> list[str]:
    sets = support.tiny_overrides(**{"model.overrides.drop_path_rate": 0.2, "train.ckpt_interval_iters": 3,
                                     "train.epochs": 4, "train.val_interval": 2})
    return [sys.executable, str(SCRIPT), "--model", "real", "train", "coco-mini-hrformer",
            *sum((["--set", s] for s in sets), []), "--work-dir", str(work_dir), "--no-progress", *extra]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _column(path: Path, col: str) -> list[tuple[str, str]]:
    with open(path, newline="") as f:
        return [(r["iter"], r[col]) for r in csv.DictReader(f)]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a hung child, not a slow one
def test_sigkill_mid_epoch_then_resume_auto_matches_uninterrupted(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    _run(_cmd(ref_dir))

    proc = subprocess.Popen(_cmd(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while not (run_dir / "last.pth").exists():  # a hang: the timeout mark, no time bound
            assert proc.poll() is None, f"training ended before the first checkpoint: {proc.stderr.read()[-2000:]}"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run_dir / "last.pth")
    # Killed mid-epoch, well before the end (20 iterations).
    assert killed_at["iter_in_epoch"] > 0 and killed_at["global_iter"] < 20

    out = _run(_cmd(run_dir, "--resume", "auto"))
    assert f"resumed from {run_dir / 'last.pth'}" in out.stderr

    a, b = load_checkpoint(ref_dir / "last.pth"), load_checkpoint(run_dir / "last.pth")
    assert a["global_iter"] == b["global_iter"] == 20
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
    assert a["best_ap"] == b["best_ap"]
    # Same losses at every logged iteration and the same validation metrics.
    assert _column(ref_dir / "log.csv", "loss") == _column(run_dir / "log.csv", "loss")
    assert _column(ref_dir / "val.csv", "AP") == _column(run_dir / "val.csv", "AP")
    assert len(_column(run_dir / "val.csv", "AP")) == 2


@pytest.mark.slow
def test_persistent_workers_match_in_process_loading_and_resume_bit_identical(tmp_path, monkeypatch):
    """Two persistent workers give the same run as loading in the main process (so each epoch's
    augmentation reaches the workers), and a run stopped mid-epoch resumes to the same weights."""
    import pytest

    from harness.config import get_experiment
    from harness.engine import Trainer, TrainingInterrupted

    from harness.engine import builders

    class WithEpoch(support.TinyPoseDataset):  # items say which epoch's stream built them
        def __getitem__(self, i):
            return {**super().__getitem__(i), "epoch": self.epoch}

    support.install(monkeypatch)
    monkeypatch.setattr(builders, "build_dataset", lambda exp, split, *, train, eval_set=False:
                        WithEpoch(40, exp.data.input_size, exp.model.num_keypoints, exp.train.seed)
                        if train else support.tiny_build_dataset(exp, split, train=False))
    torch.set_num_threads(1)
    step = Trainer._step
    seen: list[tuple[int, int]] = []

    def record(self, batch):
        seen.extend((int(e), self.state.epoch) for e in batch["epoch"])
        return step(self, batch)

    def exp(workers: int):
        return get_experiment("coco-mini-hrnet", support.tiny_overrides(**{
            "data.num_workers": workers, "data.persistent_workers": "true"}))

    ref = Trainer(exp(0), work_dir=tmp_path / "ref", progress=False).fit()
    monkeypatch.setattr(Trainer, "_step", record)
    workers = Trainer(exp(2), work_dir=tmp_path / "workers", progress=False).fit()
    assert workers.losses == ref.losses and len(ref.losses) == 15
    assert len(seen) == 15 * 8 and all(built == trained for built, trained in seen)

    def stop_at_8(self, batch):  # SIGTERM from the main process during iteration 8 (epoch 1, batch 3)
        if self.state.global_iter == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, batch)

    monkeypatch.setattr(Trainer, "_step", stop_at_8)
    with pytest.raises(TrainingInterrupted):
        Trainer(exp(2), work_dir=tmp_path / "run", progress=False).fit()
    ckpt = load_checkpoint(tmp_path / "run" / "last.pth")
    assert (ckpt["epoch"], ckpt["iter_in_epoch"], ckpt["global_iter"]) == (1, 3, 8)
    monkeypatch.setattr(Trainer, "_step", step)
    resumed = Trainer(exp(2), work_dir=tmp_path / "run", resume="auto", progress=False).fit()
    assert resumed.losses == ref.losses[8:]
    a, b = load_checkpoint(tmp_path / "ref" / "last.pth"), load_checkpoint(tmp_path / "run" / "last.pth")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
