"""The optional mmpose registration: registers a working backbone, and says clearly when mmpose is absent."""
import sys

import pytest
import torch

from backbones.mmpose_compat import HRBenchBackbone, register_mmpose


class FakeRegistry:
    def __init__(self):
        self.modules = {}

    def register_module(self, name=None, module=None, force=False):
        self.modules[name] = module

    def build(self, cfg):
        cfg = dict(cfg)
        return self.modules[cfg.pop("type")](**cfg)


def test_registers_a_buildable_backbone():
    reg = FakeRegistry()
    register_mmpose(reg)
    net = reg.build(dict(type="HRBenchBackbone", name="hrnet-demo", drop_path_rate=0.0)).eval()
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 48))
    assert isinstance(feats, tuple) and feats[0].shape == (1, 16, 16, 12)


def test_clear_error_without_mmpose(monkeypatch):
    monkeypatch.setitem(sys.modules, "mmpose", None)  # import of mmpose fails
    with pytest.raises(ImportError, match=r"mmpose is not importable.*\[mmpose\]"):
        register_mmpose()
