"""Which optimiser kernels to run: torch's fused Adam/AdamW where they apply.

The fused step updates each parameter in one kernel; it applies the same formula as torch's
per-parameter loop (what the references run on CPU; on GPU they run the ``foreach`` variant), equal to
rounding (``tests/engine/test_engine.py``), and several times faster on CPU, where the loop's dozen
small ops per parameter tensor add up for models of many small tensors.  Measured 2026-12-08 (2-core
CPU, one thread, quiet, medians of 15 steps; the demo models): the step alone 8.6 -> 2.6 ms (hrnet-demo),
12.9 -> 2.3 ms (hrformer-demo), 20.8 -> 3.4 ms (hrnext-demo); a whole training step (batch 32, 128x96,
each tree in fresh processes, 3 alternating rounds) 1.030x (1.018-1.043), 1.032x (0.984-1.077), 1.037x
(0.998-1.039) faster.
"""
from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["fused_ok"]

_FUSED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def fused_ok(params: Iterable[torch.Tensor]) -> bool:
    """Whether torch's fused Adam/AdamW kernels take these parameters (floating point, on CPU or CUDA)."""
    params = list(params)
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_DTYPES for p in params)
