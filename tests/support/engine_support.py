"""Shared helpers for the engine tests: tiny stand-ins and a subprocess entry point.

The engine reaches models, data and evaluation only through ``harness.engine.builders``; these
helpers replace those seams with small deterministic pieces so the loop itself can be tested in
seconds (and in subprocesses: ``python tests/support/engine_support.py train EXP ...`` or under
``torchrun``). The stand-ins are used only where a test is about the engine; the coco-mini test
trains the real models on real data.

Run as a script: ``python tests/support/engine_support.py [--model tiny|real] [--data tiny]
COMMAND ARGS...`` where COMMAND is ``train`` or ``test`` (the CLI's own sub-commands).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

if __name__ == "__main__":  # run as a script from anywhere: the repository and tests/ on sys.path
    sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]


class TinyPoseDataset(Dataset):
    """``n`` synthetic crops with one bright blob per keypoint; targets are Gaussians there.

    Items follow the data contract: ``img`` (3, H, W), ``heatmaps`` (K, H/4, W/4), ``target_weight``
    (K,). Augmentation noise is a function of (seed, epoch, index), like the real dataset.
    """

    def __init__(self, n: int = 40, input_size=(32, 32), num_keypoints: int = 4, seed: int = 0, train: bool = True):
        self.n, self.hw, self.k, self.seed, self.train = n, tuple(input_size), num_keypoints, seed, train
        self.epoch = 0
        rng = np.random.default_rng(1234)
        h, w = self.hw
        # (n, K, 2) keypoint positions in input pixels (x, y), away from the border.
        self.kps = np.stack([rng.uniform(4, w - 4, (n, num_keypoints)), rng.uniform(4, h - 4, (n, num_keypoints))], -1)
        self.ann_file = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        h, w = self.hw
        ys, xs = np.mgrid[0:h, 0:w]
        img = np.zeros((3, h, w), np.float32)
        hh, hw_ = h // 4, w // 4
        hys, hxs = np.mgrid[0:hh, 0:hw_]
        heat = np.zeros((self.k, hh, hw_), np.float32)
        for j, (x, y) in enumerate(self.kps[i]):
            img[j % 3] += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 8.0)
            heat[j] = np.exp(-((hxs - x / 4) ** 2 + (hys - y / 4) ** 2) / 2.0)
        if self.train:  # "augmentation": noise drawn from (seed, epoch, index)
            img += 0.05 * np.random.default_rng([self.seed, self.epoch, i]).standard_normal(img.shape).astype(np.float32)
        return {"img": torch.from_numpy(img), "heatmaps": torch.from_numpy(heat),
                "target_weight": torch.ones(self.k), "index": i}


class TinyPoseNet(nn.Module):
    """BN-free conv net, stride 4: exact DDP-vs-single-process comparisons need no batch statistics."""

    def __init__(self, num_keypoints: int = 4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
        self.head = nn.Module()
        self.head.final_layer = nn.Conv2d(16, num_keypoints, 1)

    def forward(self, x):
        return self.head.final_layer(self.backbone(x))


def tiny_build_dataset(exp, split, *, train, eval_set=False):
    n = 40 if train else 16
    return TinyPoseDataset(n=n, input_size=exp.data.input_size, num_keypoints=exp.model.num_keypoints,
                           seed=exp.train.seed, train=True)  # targets needed for the stand-in evaluator


def tiny_build_model(exp):
    torch.manual_seed(exp.train.seed)  # identical initial weights on every rank and run
    return TinyPoseNet(exp.model.num_keypoints)


@torch.no_grad()
def tiny_evaluate(model, dataset, exp, *, device, progress=True, on_eval=None):
    """Stand-in metric: a monotone function of the heatmap MSE on ``dataset`` ("AP" in (0, 1])."""
    model.eval()
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    mse = float(((model(batch["img"].to(device)).float().cpu() - batch["heatmaps"]) ** 2).mean())
    return {"AP": 1.0 / (1.0 + 100.0 * mse), "AR": math.exp(-100.0 * mse)}


def install(monkeypatch=None, *, model: str = "tiny", data: str = "tiny") -> None:
    """Swap the builders' seams for the stand-ins (via ``monkeypatch`` in-process, else directly)."""
    from harness.engine import builders

    patches = {}
    if model == "tiny":
        patches["build_model"] = tiny_build_model
    if data == "tiny":
        patches["build_dataset"] = tiny_build_dataset
        patches["evaluate"] = tiny_evaluate
    for name, fn in patches.items():
        if monkeypatch is not None:
            monkeypatch.setattr(builders, name, fn)
        else:
            setattr(builders, name, fn)


def tiny_overrides(**extra) -> list[str]:
    """--set items for a tiny run on the stand-ins (K=4, 32x32, batch 8, 5 iterations/epoch)."""
    base = {"model.num_keypoints": 4, "data.input_size": "32x32", "train.batch_size": 8, "train.epochs": 3,
            "train.val_interval": 3, "train.ckpt_interval": 100, "train.log_interval": 1, "train.deterministic": "true",
            "data.num_workers": 0, "optim.lr": 0.01, "sched.warmup_iters": 2}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def run_cli(argv: list[str]) -> int:
    """Run a sub-command through the CLI's entry point (its one error path: exit 2, ``error: ...``)."""
    from harness.cli import main

    return main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    model, data = "tiny", "tiny"
    while argv and argv[0] in ("--model", "--data"):
        opt, val = argv[0], argv[1]
        argv = argv[2:]
        if opt == "--model":
            model = val
        else:
            data = val
    torch.set_num_threads(1)  # same arithmetic in every process -> comparable runs
    from support import coco_mini

    coco_mini.register()
    install(model=model, data=data)
    return run_cli(argv)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
