"""Optional: make hrbench's backbones buildable from mmpose 1.x configs.

    from backbones.mmpose_compat import register_mmpose
    register_mmpose()
    # in an mmpose config:  backbone=dict(type="HRBenchBackbone", name="hrnext-s", drop_path_rate=0.1)

mmpose is not a dependency of hrbench (it does not install on current torch without compiled mmcv ops);
this module imports it only when called.
"""
from __future__ import annotations

import torch.nn as nn

from .registry import create_backbone


class HRBenchBackbone(nn.Module):
    """An hrbench backbone behind mmpose's backbone interface (forward returns a tuple of maps)."""

    def __init__(self, name: str, init_cfg=None, **overrides):
        super().__init__()
        self.net = create_backbone(name, **overrides)
        self.init_cfg = init_cfg

    def init_weights(self):
        self.net.init_weights()

    def forward(self, x):
        return tuple(self.net(x))


def register_mmpose(registry=None) -> None:
    """Register ``HRBenchBackbone`` into mmpose's MODELS registry (or the given one)."""
    if registry is None:
        try:
            from mmpose.registry import MODELS as registry
        except ImportError as e:
            raise ImportError("mmpose is not importable here: install the optional extra "
                              "(`pip install -e .[mmpose]`) where mmpose and mmcv work") from e
    registry.register_module(name="HRBenchBackbone", module=HRBenchBackbone, force=True)
