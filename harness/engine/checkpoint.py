"""Atomic checkpoints with everything a bit-exact resume needs.

A checkpoint is a dict: ``model``, ``optimizer``, ``scaler``, ``ema`` (state dicts or None),
``epoch`` (current epoch), ``iter_in_epoch`` (batches of that epoch already done), ``global_iter``,
``best_ap``, ``rng`` (python, numpy, torch CPU and CUDA generator states), ``config_hash`` and
``meta``, plus ``checksum``: the sha256 of every tensor in it (names, dtypes, shapes, bytes), verified
on load, so a flipped bit is an error naming the file instead of a silently different weight. Files are
written to a temporary name in the same directory and renamed, so a run killed mid-write never leaves
a truncated ``last.pth`` (the temporary file it may leave is removed on resume).
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import CheckpointError
from harness.io import atomic_path
from harness.workdir import BEST, LAST

log = logging.getLogger(__name__)

__all__ = ["BEST", "LAST", "CheckpointError", "ForeignCheckpointError", "atomic_save", "load_checkpoint", "tensor_checksum", "find_resume",
           "rng_state", "set_rng_state"]


class ForeignCheckpointError(CheckpointError):
    """The file is unreadable as, or is not, a training checkpoint of this project (it may still be a
    weights file for :func:`harness.weights.load_weights`)."""


def tensor_checksum(obj: Any) -> str:
    """sha256 over every tensor reachable in ``obj`` (dicts in key order, lists in order): each one's
    path, dtype, shape and bytes. Non-tensor values do not enter it."""
    h = hashlib.sha256()

    def visit(x: Any, where: str) -> None:
        if torch.is_tensor(x):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"{where}|{x.dtype}|{tuple(x.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                visit(x[k], f"{where}.{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                visit(v, f"{where}[{i}]")

    visit(obj, "")
    return h.hexdigest()


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to ``path`` atomically (temp file in the same folder, fsync, os.replace), with the
    ``checksum`` of its tensors added (see :func:`tensor_checksum`)."""
    payload = {k: v for k, v in obj.items() if k != "checksum"} if isinstance(obj, dict) else obj
    if isinstance(payload, dict):
        payload["checksum"] = tensor_checksum(payload)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint written by :func:`atomic_save` (``last.pth``/``best.pth``).

    ``torch.load(weights_only=True)``: nothing in the file can execute code. Raises
    :class:`~harness.errors.CheckpointError` naming the file when it is missing, unreadable or truncated,
    not a training checkpoint (no ``model`` entry), damaged (its tensors no longer match the stored
    ``checksum``: a flipped bit) or holding non-finite model/EMA weights. Returns the checkpoint dict
    (described in the module docstring); checkpoints from before checksums existed load unverified.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated/corrupt file: name it
        raise ForeignCheckpointError(f"{path}: cannot read checkpoint, the file is truncated or corrupt "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ForeignCheckpointError(f"{path}: not a hrbench training checkpoint (no 'model' entry)")
    stored = ckpt.pop("checksum", None)
    if stored is not None and tensor_checksum(ckpt) != stored:
        raise CheckpointError(f"{path}: checksum mismatch: the file's tensors changed after it was written "
                              f"(disk or copy corruption); use another checkpoint")
    for part in ("model", "ema"):
        sd = ckpt.get(part)
        sd = sd.get("module", sd) if isinstance(sd, dict) and part == "ema" else sd
        if isinstance(sd, dict):
            bad = [k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
            if bad:
                raise CheckpointError(f"{path}: checkpoint has non-finite weights ({len(bad)} tensors in '{part}', "
                                      f"e.g. {bad[0]})")
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
