"""The deterministic weights and input behind ``tests/fixtures/reference/*.heatmaps.npy``.

Our own implementation of the rule documented with the reference outputs: every floating-point
state-dict entry is drawn from a generator seeded with the CRC32 of its key, scaled by its role
(BN statistics, relative-position tables, fan-in scaled kernels, unit-centred scales, small biases).
"""
from __future__ import annotations

import json
import zlib
from math import prod

import numpy as np
import torch
from support.paths import FIXTURES as _FIXTURES

FIXTURES = _FIXTURES / "reference"
PAPER_MODELS = ["hrnet-w32", "hrnet-w48", "hrformer-s", "hrformer-b", "hrnext-s", "hrnext-b"]


def _rng(key: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(key.encode()))


def rule_tensor(key: str, shape: list[int]) -> torch.Tensor:
    g, shape, leaf = _rng(key), tuple(shape), key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 1.0 + 0.5 * torch.rand(shape, generator=g)
    if leaf == "running_mean":
        return 0.1 * torch.randn(shape, generator=g)
    if "relative_position_bias_table" in key:
        return 0.02 * torch.randn(shape, generator=g)
    if len(shape) >= 2:
        # kernels are fan-in scaled; a 5-d dynamic-kernel bank (K, out, in/g, k, k) per kernel
        fan_in = prod(shape[2:]) if len(shape) == 5 else prod(shape[1:])
        return torch.randn(shape, generator=g) / fan_in ** 0.5
    if leaf in ("weight", "gamma") or "layer_scale" in key:
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


def manifest(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.manifest.json").read_text())


def reference_state_dict(name: str) -> dict[str, torch.Tensor]:
    return {k: rule_tensor(k, v["shape"]) for k, v in manifest(name)["keys"].items()
            if v["dtype"].startswith("torch.float")}


def reference_input(height: int, width: int) -> torch.Tensor:
    return torch.randn((1, 3, height, width), generator=_rng("input"))


def expected_heatmaps(name: str) -> np.ndarray:
    return np.load(FIXTURES / f"{name}.heatmaps.npy")


GRAD_PROBE_HW = (128, 96)
GRAD_PROBE_BATCH = 4


def grad_probe_batch(dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient fixtures' input (four different N(0, 1) images) and the loss weights ``R`` of
    ``(heatmaps * R).sum()``.

    Four independent samples keep every batch statistic well conditioned.  HRNeXt's kernel attention
    batch-normalises one pooled vector per sample; with the two mirrored samples used before, the two
    vectors nearly coincided, gradients reached 3e10 and float64 rounding (which another CPU or thread
    count orders differently) was amplified to 1e-5..1e-4 relative.  Here one and two threads agree to
    ~5e-12 on every HRNeXt-B gradient."""
    h, w = GRAD_PROBE_HW
    x = torch.randn((GRAD_PROBE_BATCH, 3, h, w), generator=_rng("grad-input")).to(dtype)
    probe = torch.randn((GRAD_PROBE_BATCH, 17, h // 4, w // 4), generator=_rng("grad-probe")).to(dtype)
    return x, probe


def gradient_probe(key: str, shape) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=_rng("probe:" + key), dtype=torch.float64)


def fingerprint(key: str, t: torch.Tensor) -> list[float]:
    """[sum of squares, dot with ``gradient_probe(key)``] of a tensor, in float64."""
    t = t.detach().double()
    return [float(t.square().sum()), float((t * gradient_probe(key, t.shape)).sum())]
