"""The real thing, small: each family's demo variant trains on coco-mini and its loss goes down.

Real models (``harness.create_pose_model``), real data (``harness.data.build_dataset`` on
``../shared/data/coco-mini``), real evaluation (xtcocotools) -- 20 iterations of batch 8 at 64x48.
"""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from harness.config import get_experiment
from harness.engine import Trainer, load_checkpoint
from support.paths import COCO_MINI

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.mark.slow
@pytest.mark.parametrize("family", ["hrnet", "hrformer", "hrnext"])
def test_demo_variant_learns_on_coco_mini(family, tmp_path):
    assert COCO_MINI.is_dir(), f"shared data missing: {COCO_MINI}"
    exp = get_experiment(f"coco-mini-{family}", [f"data.root={COCO_MINI}"])
    assert exp.model.name == f"{family}-demo" and exp.data.input_size == (64, 48)
    result = Trainer(exp, work_dir=tmp_path, progress=False).fit()
    losses = result.losses
    assert len(losses) == 20 and all(l == l for l in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.9 * first, (family, losses)
    # Validation ran through the real COCO evaluator and left a record and a best checkpoint.
    assert set(result.val_metrics) >= {"AP", "AP .5", "AR"} and 0.0 <= result.val_metrics["AP"] <= 1.0
    recs = list((tmp_path / "records").rglob("*.json"))
    assert len(recs) == 1
    rec = json.loads(recs[0].read_text())
    assert (rec["model"], rec["dataset"], rec["split"], rec["input_size"]) == (f"{family}-demo", "coco", "val", [64, 48])
    ckpt = load_checkpoint(tmp_path / "last.pth")
    assert ckpt["global_iter"] == 20 and (tmp_path / "best.pth").is_file()
    print(f"{family}-demo: {result.sec_per_iter:.3f} s/iteration (batch 8, 64x48), loss {first:.5f} -> {last:.5f}")


class _SignalAt(torch.utils.data.Dataset):
    """Delegates to the real dataset; sends SIGTERM to this process on the ``at``-th item fetched."""

    def __init__(self, inner, at: int):
        self.inner, self.at, self.calls = inner, at, 0

    def __len__(self):
        return len(self.inner)

    def set_epoch(self, epoch):
        self.inner.set_epoch(epoch)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.inner[i]


def test_interrupted_and_resumed_run_on_real_data_is_bit_identical(tmp_path, monkeypatch):
    """Real augmentation (a function of seed, epoch, index) + drop-path RNG survive a mid-epoch resume."""
    from harness.engine import TrainingInterrupted, builders

    sets = [f"data.root={COCO_MINI}", "model.overrides.drop_path_rate=0.1", "train.max_iters=14",
            "train.val_interval=0"]
    exp = get_experiment("coco-mini-hrformer", sets)
    ref = Trainer(exp, work_dir=tmp_path / "ref", progress=False).fit()

    real = builders.build_dataset
    monkeypatch.setattr(builders, "build_dataset", lambda e, split, *, train, eval_set=False:
                        _SignalAt(real(e, split, train=train, eval_set=eval_set), at=8 * 11 + 1) if train
                        else real(e, split, train=train, eval_set=eval_set))
    with pytest.raises(TrainingInterrupted):
        Trainer(exp, work_dir=tmp_path / "run", progress=False).fit()
    assert load_checkpoint(tmp_path / "run" / "last.pth")["global_iter"] == 12  # epoch 1, batch 2 of 10
    monkeypatch.setattr(builders, "build_dataset", real)
    resumed = Trainer(exp, work_dir=tmp_path / "run", resume="auto", progress=False).fit()
    assert resumed.losses == ref.losses[12:]
    a, b = load_checkpoint(tmp_path / "ref" / "last.pth"), load_checkpoint(tmp_path / "run" / "last.pth")
    assert a["global_iter"] == b["global_iter"] == 14
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
