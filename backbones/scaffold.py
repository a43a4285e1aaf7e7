"""The high-resolution scaffold shared by HRNet, HRFormer and HRNeXt.

All three families are the same macro-architecture (Sun et al., CVPR 2019): a stem down to 1/4
resolution, a first stage at one resolution, then stages 2-4 that keep 2, 3 and 4 parallel branches
(1/4 ... 1/32) and exchange information through multi-resolution fusion after every module.  They
differ only in

* the stem and stage-1 layer (``HRNetBase._build_stem`` / ``_build_layer1``),
* the block that fills each branch (``_build_branch``),
* three fusion details, captured by :class:`FusionStyle`: how a lower-resolution branch is brought up
  (1x1 conv + BN + nearest/bilinear upsampling), how a higher-resolution branch is brought down
  (3x3 strided conv chains, or depthwise-separable ones), and the activation after each sum.

Module and attribute names follow the reference layouts (``transition1``, ``stage2.0.branches.1.0``,
``fuse_layers.i.j``), so checkpoints of mmpose and of the HRNeXt authors load with at most a key rename.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from .layers import conv_norm, drop_path_schedule, dw_sep_norm, make_act, make_norm, NORM_LAYERS


@dataclass(frozen=True)
class FusionStyle:
    """How branches are exchanged inside a module (see the module docstring)."""

    upsample: str = "nearest"  # "nearest" (HRNet) or "bilinear" (HRFormer, HRNeXt; align_corners=False)
    downsample: str = "conv3x3"  # "conv3x3" (HRNet) or "dwsep" (HRFormer, HRNeXt)
    act: str = "relu"  # after each fused sum and inside multi-step downsampling chains
    mid_act: str | None = None  # activation between downsampling steps (defaults to ``act``)


@dataclass
class HRConfig:
    """Fields every high-resolution backbone has; each family's config extends it.

    ``widths`` are the channels of the 1/4, 1/8, 1/16 and 1/32 branches; ``num_modules`` and
    ``num_blocks`` give, for stages 2-4, the number of multi-resolution modules and the number of
    blocks per branch inside each module.
    """

    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    stem_width: int = 64
    stage1_blocks: int = 4
    num_modules: tuple[int, int, int] = (1, 4, 3)
    num_blocks: tuple[int, int, int] = (4, 4, 4)
    in_channels: int = 3
    drop_path_rate: float = 0.0
    norm_layer: str = "bn"
    with_cp: bool = False
    multiscale_output: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        def positive_ints(name, value, n):
            if len(value) != n or not all(isinstance(v, int) and v > 0 for v in value):
                raise ValueError(f"{name}={value!r}: expected {n} positive integers")

        self.widths = tuple(self.widths)
        self.num_modules = tuple(self.num_modules)
        self.num_blocks = tuple(self.num_blocks)
        positive_ints("widths", self.widths, 4)
        positive_ints("num_modules", self.num_modules, 3)
        positive_ints("num_blocks", self.num_blocks, 3)
        for name in ("stem_width", "stage1_blocks", "in_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name}={v!r}: expected a positive integer")
        if not 0.0 <= float(self.drop_path_rate) < 1.0:
            raise ValueError(f"drop_path_rate={self.drop_path_rate!r}: expected a value in [0, 1)")
        if self.norm_layer not in NORM_LAYERS:
            raise ValueError(f"norm_layer={self.norm_layer!r}: expected one of {sorted(NORM_LAYERS)}")

    def replace(self, **overrides) -> "HRConfig":
        """A copy with ``overrides`` applied; unknown names raise listing the valid fields."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {unknown}; valid fields: {sorted(valid)}")
        return dataclasses.replace(self, **overrides)


class Branch(nn.Sequential):
    """The blocks of one branch; runs them under activation checkpointing when asked."""

    with_cp: bool = False

    def forward(self, x):
        for block in self:
            if self.with_cp and x.requires_grad and torch.is_grad_enabled():
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class Upsample(nn.Module):
    """Integer-factor upsampling (mmpose's ``nn.Upsample(scale_factor=2**k)``), parameter-free."""

    def __init__(self, scale_factor: int, mode: str):
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode

    def forward(self, x: torch.Tensor, size: torch.Size | None = None) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None
        y = F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=align)
        if size is not None and y.shape[-2:] != size:
            # Only for inputs whose size is not a multiple of 32 (the references then crash or resize).
            y = F.interpolate(y, size=size, mode=self.mode, align_corners=align)
        return y

    def extra_repr(self):
        return f"scale_factor={self.scale_factor}, mode={self.mode}"


def make_fuse_layers(widths: list[int], num_out: int, style: FusionStyle, norm: str) -> nn.ModuleList:
    """``fuse_layers[i][j]`` maps branch j to branch i's resolution and width (None when i == j)."""
    mid_act = style.mid_act or style.act
    fuse = nn.ModuleList()
    for i in range(num_out):
        row = nn.ModuleList()
        for j in range(len(widths)):
            if j > i:
                row.append(nn.Sequential(
                    nn.Conv2d(widths[j], widths[i], 1, bias=False),
                    make_norm(norm, widths[i]),
                    Upsample(2 ** (j - i), style.upsample)))
            elif j == i:
                row.append(None)
            else:
                steps = []
                for k in range(i - j):
                    last = k == i - j - 1
                    out_ch = widths[i] if last else widths[j]
                    act = None if last else mid_act
                    if style.downsample == "conv3x3":
                        steps.append(conv_norm(widths[j], out_ch, 3, stride=2, norm=norm, act=act))
                    elif style.downsample == "dwsep":
                        steps.append(dw_sep_norm(widths[j], out_ch, stride=2, norm=norm, act=act))
                    else:
                        raise ValueError(f"FusionStyle.downsample={style.downsample!r}")
                row.append(nn.Sequential(*steps))
        fuse.append(row)
    return fuse


class HRModule(nn.Module):
    """Parallel branches followed by multi-resolution fusion (one "module" of stages 2-4)."""

    def __init__(self, branches: list[nn.Module], widths: list[int], style: FusionStyle, norm: str,
                 multiscale_output: bool = True):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        num_out = len(widths) if multiscale_output else 1
        self.fuse_layers = make_fuse_layers(widths, num_out, style, norm) if len(widths) > 1 else None
        self.act = make_act(style.act)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                if j > i:
                    z = layer[2](layer[1](layer[0](xs[j])), size=xs[i].shape[-2:])
                else:
                    z = layer(xs[j])
                y = y + z
            out.append(self.act(y))
        return out


def make_transition(prev: list[int], cur: list[int], norm: str, act: str) -> nn.ModuleList:
    """Adapt stage k's branches to stage k+1: width changes by 3x3 conv, new branches by strided 3x3."""
    layers = nn.ModuleList()
    for i, width in enumerate(cur):
        if i < len(prev):
            layers.append(conv_norm(prev[i], width, 3, norm=norm, act=act) if prev[i] != width else None)
        else:
            steps = []
            for j in range(i + 1 - len(prev)):
                out_ch = width if j == i - len(prev) else prev[-1]
                steps.append(conv_norm(prev[-1], out_ch, 3, stride=2, norm=norm, act=act))
            layers.append(nn.Sequential(*steps))
    return layers


class HRNetBase(nn.Module):
    """Stem -> layer1 -> (transition, stage) x 3.  Returns a list of feature maps, highest resolution
    first (one map unless ``multiscale_output``).

    Subclasses set ``fusion`` and ``act`` and implement ``_build_stem``, ``forward_stem``,
    ``_build_layer1`` (returning its output width) and ``_build_branch``.
    """

    fusion: FusionStyle = FusionStyle()
    act: str = "relu"  # of the transition layers
    stage1_in_drop_path: bool = False  # does the stochastic-depth schedule start at stage 1 (HRNeXt)?
    #: Run channels-last: 4-d weights are stored channels-last and the input is converted on entry, so every
    #: activation (and the output) is channels-last whatever the caller's layout; the values are the same.
    #: Set by the families whose CPU convolutions are faster that way.
    channels_last: bool = False

    def __init__(self, cfg: HRConfig):
        super().__init__()
        self.cfg = cfg
        depths = [cfg.num_modules[s] * cfg.num_blocks[s] for s in range(3)]
        if self.stage1_in_drop_path:
            depths = [cfg.stage1_blocks] + depths
        rates = drop_path_schedule(cfg.drop_path_rate, depths)
        self.stage1_drop_paths = rates.pop(0) if self.stage1_in_drop_path else [0.0] * cfg.stage1_blocks
        self._stage_drop_paths = rates
        self._build_stem(cfg)
        prev = [self._build_layer1(cfg)]
        for s in range(3):  # stages 2, 3, 4
            widths = list(cfg.widths[: s + 2])
            setattr(self, f"transition{s + 1}", make_transition(prev, widths, cfg.norm_layer, self.act))
            modules = []
            for m in range(cfg.num_modules[s]):
                last = m == cfg.num_modules[s] - 1
                multiscale = cfg.multiscale_output or s < 2 or not last
                branches = [self._make_branch(s, m, b, widths[b]) for b in range(len(widths))]
                modules.append(HRModule(branches, widths, self.fusion, cfg.norm_layer, multiscale))
            setattr(self, f"stage{s + 2}", nn.Sequential(*modules))
            prev = widths
        self.out_channels = list(cfg.widths) if cfg.multiscale_output else [cfg.widths[0]]
        self.set_grad_checkpointing(cfg.with_cp)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    # -- family hooks -------------------------------------------------------------------------------
    def _build_stem(self, cfg: HRConfig) -> None:
        raise NotImplementedError

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _build_layer1(self, cfg: HRConfig) -> int:
        raise NotImplementedError

    def _build_branch(self, stage: int, module: int, branch: int, width: int) -> list[nn.Module]:
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------------
    def drop_paths(self, stage: int, module: int) -> list[float]:
        """Per-block drop-path rates of one module of stage ``stage + 2``; every branch uses the same."""
        n = self.cfg.num_blocks[stage]
        return self._stage_drop_paths[stage][module * n:(module + 1) * n]

    def _make_branch(self, stage: int, module: int, branch: int, width: int) -> Branch:
        return Branch(*self._build_branch(stage, module, branch, width))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward (timm's API name)."""
        self.with_cp = enable
        for m in self.modules():
            if isinstance(m, Branch):
                m.with_cp = enable

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.layer1(self.forward_stem(x))
        ys = [x]
        for s in range(3):
            transition = getattr(self, f"transition{s + 1}")
            xs = []
            for i, t in enumerate(transition):
                src = ys[i] if i < len(ys) else ys[-1]
                xs.append(src if t is None else t(src))
            ys = getattr(self, f"stage{s + 2}")(xs)
        return ys

    def init_weights(self) -> None:
        """The references' from-scratch init: conv weights ~ N(0, 0.001), norms at identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # Drawn in logical order (a contiguous draw, then copied): the same seed gives the same
                # weights whatever the memory layout (``channels_last``); normal_ fills memory in order.
                with torch.no_grad():
                    m.weight.copy_(nn.init.normal_(torch.empty_like(m.weight, memory_format=torch.contiguous_format),
                                                   std=0.001))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)


__all__ = ["FusionStyle", "HRConfig", "HRModule", "HRNetBase", "Branch", "Upsample", "make_transition",
           "make_fuse_layers"]
