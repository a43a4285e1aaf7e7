"""Atomic checkpoints with everything a bit-exact resume needs.

A checkpoint is a dict: ``model``, ``optimizer``, ``scaler``, ``ema`` (state dicts or None),
``epoch`` (current epoch), ``iter_in_epoch`` (batches of that epoch already done), ``global_iter``,
``best_ap``, ``rng`` (python, numpy, torch CPU and CUDA generator states), ``config_hash`` and
``meta``. Files are written to a temporary name in the same directory and renamed, so a run killed
mid-write never leaves a truncated ``last.pth``.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.io import atomic_path

log = logging.getLogger(__name__)

LAST = "last.pth"
BEST = "best.pth"


class CheckpointError(RuntimeError):
    pass


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to ``path`` atomically (temp file in the same folder, fsync, os.replace)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated/corrupt file: name it
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a hrbench training checkpoint (no 'model' entry)")
    return ckpt


def find_resume(work_dir: str | os.PathLike) -> Path | None:
    """``last.pth`` in ``work_dir`` if present (what ``--resume auto`` continues from)."""
    p = Path(work_dir) / LAST
    return p if p.is_file() else None


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states, as plain types and tensors only, so
    checkpoints load with ``torch.load(weights_only=True)``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
