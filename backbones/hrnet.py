"""HRNet (Sun et al., "Deep High-Resolution Representation Learning for Human Pose Estimation", CVPR 2019).

Blocks: Bottleneck in stage 1, BasicBlock in stages 2-4; 3x3 strided-conv downsampling and nearest
upsampling in the fusion, ReLU everywhere.  State-dict layout = mmpose 1.x ``HRNet``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import BasicBlock, Bottleneck, PointwiseConv2d, make_norm, residual_layer
from .registry import register_family
from .scaffold import Branch, FusionStyle, HRConfig, HRNetBase


class BottleneckStem:
    """Two strided 3x3 convs + a stage 1 of Bottlenecks (HRNet's; HRFormer reuses it)."""

    fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def _build_stem(self, cfg: HRConfig) -> None:
        w = cfg.stem_width
        self.conv1 = nn.Conv2d(cfg.in_channels, w, 3, stride=2, padding=1, bias=False)
        self.bn1 = make_norm(cfg.norm_layer, w)
        self.conv2 = nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False)
        self.bn2 = make_norm(cfg.norm_layer, w)
        self.relu = nn.ReLU(inplace=True)

    def fuse_activations(self) -> None:
        """Inference (after BN folding): each stem conv with its ReLU in one pass."""
        self.conv1 = PointwiseConv2d.wrap(self.conv1, "relu")
        self.conv2 = PointwiseConv2d.wrap(self.conv2, "relu")

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.conv2, PointwiseConv2d):
            return self.conv2(self.conv1(x))
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))

    def _build_layer1(self, cfg: HRConfig) -> int:
        out = cfg.stem_width * Bottleneck.expansion
        self.layer1 = Branch(*residual_layer(Bottleneck, cfg.stem_width, out, cfg.stage1_blocks,
                                             norm=cfg.norm_layer, drop_paths=self.stage1_drop_paths))
        return out


@dataclass
class HRNetConfig(HRConfig):
    """HRNet's config: the :class:`HRConfig` fields with HRNet-W32's stage layout as defaults
    (stage 1 of 4 Bottlenecks; 1, 4, 3 modules of 4 BasicBlocks per branch in stages 2-4)."""

    stage1_blocks: int = 4
    num_modules: tuple[int, int, int] = (1, 4, 3)
    num_blocks: tuple[int, int, int] = (4, 4, 4)


class HRNet(BottleneckStem, HRNetBase):
    """HRNet backbone (mmpose 1.x ``HRNet`` layout).

    ``HRNet(cfg)(x)``: x (N, in_channels, H, W) -> list of feature maps, the
    first (N, widths[0], H/4, W/4); all four branches (1/4 ... 1/32) when ``cfg.multiscale_output``.
    """

    fusion = FusionStyle(upsample="nearest", downsample="conv3x3", act="relu")
    act = "relu"
    # oneDNN's convolutions then skip their layout reorders (batch 8, 2 CPU threads: training step ~1.1x,
    # fused inference 1.2-1.3x).  Not for HRNeXt, whose depthwise and batch-folded convs are slower so.
    channels_last = True

    def _build_branch(self, stage, module, branch, width):
        return residual_layer(BasicBlock, width, width, self.cfg.num_blocks[stage], norm=self.cfg.norm_layer,
                              drop_paths=self.drop_paths(stage, module))


def _widths(w: int) -> tuple[int, int, int, int]:
    return (w, 2 * w, 4 * w, 8 * w)


register_family(
    "hrnet", HRNet, HRNetConfig,
    variants={
        "hrnet-w18": HRNetConfig(widths=_widths(18)),
        "hrnet-w32": HRNetConfig(widths=_widths(32)),
        "hrnet-w48": HRNetConfig(widths=_widths(48)),
        # CPU demo: same code paths, 1.3M params.
        "hrnet-demo": HRNetConfig(widths=_widths(16), stem_width=32, stage1_blocks=1, num_modules=(1, 1, 1),
                                  num_blocks=(2, 2, 2)),
    },
    paper={"hrnet-w32": "256x192", "hrnet-w48": "256x192"},
)
