"""Exponential moving average of model weights."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * weights`` after every optimiser step.

    The decay ramps up as ``decay * (1 - exp(-updates / 2000))`` so that early, mostly random
    weights are forgotten quickly (the usual YOLO/timm-style warm-up). Buffers (BN statistics)
    are copied, not averaged. The EMA model lives on the same device as the source model.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup: float = 2000.0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay: must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.updates = 0

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.warmup))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        src = model.state_dict()
        for name, ema_v in self.module.state_dict().items():
            v = src[name].detach()
            if ema_v.dtype.is_floating_point and name in self._param_names:
                ema_v.mul_(d).add_(v.to(ema_v.dtype), alpha=1.0 - d)
            else:
                ema_v.copy_(v)

    @property
    def _param_names(self) -> set[str]:
        if not hasattr(self, "_names"):
            self._names = {n for n, _ in self.module.named_parameters()}
        return self._names

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
