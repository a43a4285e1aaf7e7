"""HRNeXt (Zhang et al., "HRNeXt: High-Resolution Context Network for Crowd Pose Estimation", IEEE TMM 2023).

Every branch, stage 1 included, is a stack of high-resolution context blocks followed by a LayerNorm:

    x = x + ls1 * DLP(x)              dynamic local perception: (dynamic) depthwise 3x3 + BN + GELU
    x = x + ls2 * GlobalFFN(BN(x))    1x1 + BN + GELU -> spatial gate (dw5x5, dw7x7 d3, 1x1, each + BN;
                                       multiplies the features) -> 1x1 + BN, plus an inner shortcut
    x = x + ls3 * DynamicFFN(BN(x))   (dynamic) 1x1 expand + BN -> (dynamic) dw3x3 + BN + GELU
                                       -> (dynamic) 1x1 project + BN

A dynamic conv mixes ``num_kernels`` kernels with per-sample sigmoid weights from a pooled
"kernel attention" branch.  We never loop over samples: depthwise kernels run as one grouped conv with
the batch folded into the groups (as the authors do), 1x1 kernels as one batched matmul.

Every component is a config switch (defaults = the paper's model) so ablations change one field:
``dlp_dynamic``, ``dlp_kernel_size``, ``gate``, ``gate_convs``, ``gate_mode``, ``ffn_dynamic``,
``num_kernels``, ``mlp_ratio``, ``layer_scale_init``, ``drop_path_rate``, ``branch_norm`` and
``block`` (swap in HRFormer's or HRNet's block at equal scaffolding).

Our state-dict layout differs from the authors' release only in the dynamic-conv wrapper names and the
branch LayerNorm (see ``harness.weights``); both load.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d

from .hrformer import HRFormerBlock
from .layers import (BasicBlock, PointwiseConv2d, SameConv2d, activate, conv2d_act, drop_path_or_identity,
                     in_layout_of, is_channels_last, make_norm, spatial_mean)
from .registry import register_family
from .scaffold import Branch, FusionStyle, HRConfig, HRNetBase


class KernelAttention(nn.Module):
    """Per-sample mixing weights (B, K) for K kernels: GAP -> 1x1 -> BN -> GELU -> 1x1 -> sigmoid.

    The BN sees a (B, C/4, 1, 1) tensor, so training needs batch >= 2 (as in the reference).
    """

    fuse_pairs = (("conv1", "norm"),)

    def __init__(self, channels: int, num_kernels: int, norm: str = "bn", reduction: int = 4):
        super().__init__()
        mid = channels // reduction if channels != 3 else num_kernels
        self.conv1 = nn.Conv2d(channels, mid, 1, bias=False)
        self.norm = make_norm(norm, mid)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(mid, num_kernels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            raise ValueError("HRNeXt's kernel attention normalises over the batch: train with batch size >= 2 "
                             "(or use static convs: dlp_dynamic=False, ffn_dynamic=False)")
        a = spatial_mean(x)
        a = self.conv2(self.act(self.norm(self.conv1(a))))
        return torch.sigmoid(a.flatten(1))


class DynamicConv2d(nn.Module):
    """Conv whose kernel is a per-sample mixture of ``num_kernels`` kernels; weight (K*out, in/g, k, k)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, padding: int = 0, dilation: int = 1,
                 groups: int = 1, bias: bool = False, num_kernels: int = 4, norm: str = "bn"):
        super().__init__()
        self.in_ch, self.out_ch, self.groups = in_ch, out_ch, groups
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.num_kernels = num_kernels
        self.attention = KernelAttention(in_ch, num_kernels, norm)
        # The K kernels stacked along the output dim, (K*out, in/g, k, k): a 4-d tensor so that
        # ``model.to(memory_format=torch.channels_last)`` works (the authors keep it 5-d).
        self.weight = nn.Parameter(torch.empty(num_kernels * out_ch, in_ch // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(num_kernels, out_ch)) if bias else None
        # Set for inference by fold_batchnorm() and fuse_activations(): a per-channel shift added after the
        # mixing, and the activation run with the conv.
        self.register_parameter("shift", None)
        self.act: str | None = None
        self.reset_parameters()

    def reset_parameters(self):
        for w in self.weight.view(self.num_kernels, self.out_ch, *self.weight.shape[1:]).unbind(0):
            nn.init.kaiming_uniform_(w)  # the authors' init: kaiming-uniform per kernel

    @torch.no_grad()
    def fold_batchnorm(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Inference: absorb the eval-mode BN that follows, ``scale * conv(x) + shift`` (see
        ``backbones.layers.fold_batchnorm``).  Scaling every kernel of the bank (and the bias bank) scales
        any mixture of them; the shift is added after the mixing, whose weights need not sum to 1."""
        if self.shift is not None:
            raise RuntimeError("DynamicConv2d.fold_batchnorm: a BatchNorm is folded in already")
        self.weight.mul_(scale.repeat(self.num_kernels).view(-1, 1, 1, 1))
        if self.bias is not None:
            self.bias.mul_(scale)
        self.shift = nn.Parameter(shift.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        attn = self.attention(x)  # (B, K)
        weight = (attn @ self.weight.reshape(self.num_kernels, -1)).view(b * self.out_ch, *self.weight.shape[1:])
        bias = (attn @ self.bias).reshape(-1) if self.bias is not None else None
        if self.shift is not None:
            shift = self.shift.repeat(b)
            bias = shift if bias is None else bias + shift
        if self.kernel_size == 1 and self.groups == 1:
            # Per-sample 1x1 conv = one batched matmul (B, out, in) @ (B, in, HW); contiguous output.
            y = torch.matmul(weight.view(b, self.out_ch, c), x.reshape(b, c, h * w))
            if bias is not None:
                y = y + bias.view(b, self.out_ch, 1)
            return activate(y, self.act).view(b, self.out_ch, h, w)
        # Fold the batch into the groups: one grouped conv for all samples, on (1, B*C, H, W).  From
        # channels-last input that map is built channels-last too ((H, W, B, C) in memory: one copy, as
        # the contiguous fold costs), where oneDNN's depthwise kernel is faster than on NCHW (fwd+bwd at
        # (8, 128, 64, 48), 2 threads: 16 vs 28.5 ms).
        conv = dict(padding=self.padding, dilation=self.dilation, groups=self.groups * b)
        if is_channels_last(x):
            y = conv2d_act(x.permute(2, 3, 0, 1).reshape(1, h, w, b * c).permute(0, 3, 1, 2), weight, bias,
                           self.act, **conv)
            oh, ow = y.shape[-2:]
            y = y.permute(0, 2, 3, 1).reshape(oh, ow, b, self.out_ch).permute(2, 3, 0, 1)
            return y.contiguous(memory_format=torch.channels_last)
        y = conv2d_act(x.reshape(1, b * c, h, w), weight, bias, self.act, **conv)
        return y.view(b, self.out_ch, y.shape[-2], y.shape[-1])

    def extra_repr(self):
        return (f"{self.in_ch}, {self.out_ch}, kernel_size={self.kernel_size}, groups={self.groups}, "
                f"num_kernels={self.num_kernels}")


def with_activation(conv: nn.Module, act: str) -> nn.Module:
    """Inference (after BN folding): ``conv`` running ``act`` in the same pass; a static conv becomes a
    ``PointwiseConv2d``, a dynamic one runs it itself."""
    if isinstance(conv, DynamicConv2d):
        conv.act = act
        return conv
    return PointwiseConv2d.wrap(conv, act)


def dconv(in_ch: int, out_ch: int, kernel_size: int, *, groups: int = 1, dilation: int = 1, num_kernels: int = 1,
          dynamic: bool = True, norm: str = "bn") -> nn.Module:
    """Dynamic conv when ``dynamic`` and more than one kernel, else a plain conv (the reference's rule)."""
    padding = dilation * (kernel_size - 1) // 2
    if dynamic and num_kernels > 1:
        return DynamicConv2d(in_ch, out_ch, kernel_size, padding=padding, dilation=dilation, groups=groups,
                             num_kernels=num_kernels, norm=norm)
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, dilation=dilation, groups=groups, bias=False)


class DynamicLocalPerception(nn.Module):
    fuse_pairs = (("dw3x3", "norm"),)

    def __init__(self, dim: int, kernel_size: int = 3, num_kernels: int = 1, dynamic: bool = True,
                 norm: str = "bn"):
        super().__init__()
        self.dw3x3 = dconv(dim, dim, kernel_size, groups=dim, num_kernels=num_kernels, dynamic=dynamic, norm=norm)
        self.norm = make_norm(norm, dim)
        self.act = nn.GELU()

    def fuse_activations(self) -> None:
        """Inference (after BN folding): the conv with its GELU in one pass."""
        self.dw3x3, self.act = with_activation(self.dw3x3, "gelu"), nn.Identity()

    def forward(self, x):
        return self.act(self.norm(self.dw3x3(x)))


class SpatialGate(nn.Module):
    """Large-receptive-field gate: depthwise convs (default 5x5 and 7x7 dilation 3) -> 1x1, each + BN,
    then ``x * gate`` (or ``x + gate``).  No nonlinearity inside, as in the reference."""

    def __init__(self, dim: int, convs: tuple[tuple[int, int], ...] = ((5, 1), (7, 3)), mode: str = "mul",
                 norm: str = "bn"):
        super().__init__()
        self.mode = mode
        self.names = []
        for i, (k, d) in enumerate(convs):
            name = {0: "dw", 1: "dwd"}.get(i, f"dw{i}")  # the reference's names for the default pair
            self.add_module(name, SameConv2d(dim, dim, k, dilation=d, groups=dim))
            self.add_module(f"norm{i + 1}", make_norm(norm, dim))
            self.names.append((name, f"norm{i + 1}"))
        self.pw = nn.Conv2d(dim, dim, 1, bias=False)
        self.add_module(f"norm{len(convs) + 1}", make_norm(norm, dim))
        self.names.append(("pw", f"norm{len(convs) + 1}"))

    @property
    def fuse_pairs(self):
        return tuple(self.names)

    def forward(self, x):
        g = x
        for conv, norm in self.names:
            g = getattr(self, norm)(getattr(self, conv)(g))
        return x * g if self.mode == "mul" else x + g


class GlobalFFN(nn.Module):
    fuse_pairs = (("proj1", "norm1"), ("proj2", "norm2"))

    def __init__(self, dim: int, gate: bool = True, gate_convs=((5, 1), (7, 3)), gate_mode: str = "mul",
                 norm: str = "bn"):
        super().__init__()
        self.proj1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.norm1 = make_norm(norm, dim)
        self.act = nn.GELU()
        self.spatial_gate = SpatialGate(dim, gate_convs, gate_mode, norm) if gate else nn.Identity()
        self.proj2 = nn.Conv2d(dim, dim, 1, bias=False)
        self.norm2 = make_norm(norm, dim)

    def fuse_activations(self) -> None:
        """Inference (after BN folding): proj1 with its GELU, proj2 with the inner shortcut, one pass each."""
        self.proj1 = PointwiseConv2d.wrap(self.proj1, "gelu")
        self.proj2 = PointwiseConv2d.wrap(self.proj2, None)

    def forward(self, x):
        if isinstance(self.proj2, PointwiseConv2d):
            return self.proj2(self.spatial_gate(self.proj1(x)), other=x)
        y = self.spatial_gate(self.act(self.norm1(self.proj1(x))))
        return self.norm2(self.proj2(y)) + x


class DynamicFFN(nn.Module):
    fuse_pairs = (("proj1", "norm1"), ("dw", "norm2"), ("proj2", "norm3"))

    def __init__(self, dim: int, hidden: int, num_kernels: int = 1, dynamic: bool = True, norm: str = "bn"):
        super().__init__()
        kw = dict(num_kernels=num_kernels, dynamic=dynamic, norm=norm)
        self.proj1 = dconv(dim, hidden, 1, **kw)
        self.norm1 = make_norm(norm, hidden)
        self.dw = dconv(hidden, hidden, 3, groups=hidden, **kw)
        self.norm2 = make_norm(norm, hidden)
        self.act = nn.GELU()
        self.proj2 = dconv(hidden, dim, 1, **kw)
        self.norm3 = make_norm(norm, dim)

    def fuse_activations(self) -> None:
        """Inference (after BN folding): the depthwise conv with its GELU in one pass."""
        self.dw, self.act = with_activation(self.dw, "gelu"), nn.Identity()

    def forward(self, x):
        x = self.norm1(self.proj1(x))
        x = self.act(self.norm2(self.dw(x)))
        return self.norm3(self.proj2(x))


class HRNeXtBlock(nn.Module):
    """High-resolution context block (see the module docstring)."""

    expansion = 1

    def __init__(self, dim: int, cfg: "HRNeXtConfig", num_kernels: int, drop_path: float = 0.0):
        super().__init__()
        norm = cfg.norm_layer
        self.dlp = DynamicLocalPerception(dim, cfg.dlp_kernel_size, num_kernels, cfg.dlp_dynamic, norm)
        self.norm1 = make_norm(norm, dim)
        self.mlp1 = GlobalFFN(dim, cfg.gate, cfg.gate_convs, cfg.gate_mode, norm)
        self.norm2 = make_norm(norm, dim)
        self.mlp2 = DynamicFFN(dim, int(dim * cfg.mlp_ratio), num_kernels, cfg.ffn_dynamic, norm)
        self.drop_path = drop_path_or_identity(drop_path)
        if cfg.layer_scale_init is not None:
            for i in (1, 2, 3):
                self.register_parameter(f"layer_scale_{i}", nn.Parameter(torch.full((dim,), cfg.layer_scale_init)))
        self.layer_scale = cfg.layer_scale_init is not None

    def _scaled(self, i: int, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = in_layout_of(y, x)  # the FFN's 1x1 dynamic convs end contiguous; x may be channels-last
        if self.layer_scale:
            y = getattr(self, f"layer_scale_{i}").view(1, -1, 1, 1) * y
        return self.drop_path(y)

    def forward(self, x):
        x = x + self._scaled(1, self.dlp(x), x)
        x = x + self._scaled(2, self.mlp1(self.norm1(x)), x)
        return x + self._scaled(3, self.mlp2(self.norm2(x)), x)


BLOCKS = ("hrnext", "hrformer", "hrnet")


@dataclass
class HRNeXtConfig(HRConfig):
    """HRNeXt's config: :class:`HRConfig` plus the dynamic-kernel counts (``num_kernels`` per branch,
    ``stage1_kernels``), ``mlp_ratio`` and the ablation switches listed in the module docstring."""

    stage1_blocks: int = 2
    num_modules: tuple[int, int, int] = (2, 4, 2)
    num_blocks: tuple[int, int, int] = (2, 2, 2)
    num_kernels: tuple[int, int, int, int] = (4, 2, 1, 1)  # per branch (1/4 ... 1/32)
    stage1_kernels: int = 4
    mlp_ratio: float = 4.0
    # --- ablation switches (defaults = the paper's model) ---
    dlp_dynamic: bool = True
    dlp_kernel_size: int = 3
    gate: bool = True
    gate_convs: tuple[tuple[int, int], ...] = ((5, 1), (7, 3))  # (kernel, dilation) of the depthwise convs
    gate_mode: str = "mul"  # "mul" | "add"
    ffn_dynamic: bool = True
    layer_scale_init: float | None = 1e-2  # None: no layer scale
    branch_norm: bool = True  # LayerNorm at the end of every branch
    block: str = "hrnext"  # "hrnext" | "hrformer" | "hrnet": swap the block, keep the scaffold
    num_heads: tuple[int, int, int, int] = (1, 2, 4, 8)  # only for block="hrformer"
    window_size: int = 7  # only for block="hrformer"

    def validate(self):
        super().validate()
        self.num_kernels = tuple(self.num_kernels)
        self.gate_convs = tuple(tuple(c) for c in self.gate_convs)
        self.num_heads = tuple(self.num_heads)
        if len(self.num_kernels) != 4 or not all(isinstance(k, int) and k >= 1 for k in self.num_kernels):
            raise ValueError(f"num_kernels={self.num_kernels!r}: expected 4 integers >= 1")
        if not isinstance(self.stage1_kernels, int) or self.stage1_kernels < 1:
            raise ValueError(f"stage1_kernels={self.stage1_kernels!r}: expected an integer >= 1")
        if self.dlp_kernel_size < 1 or self.dlp_kernel_size % 2 == 0:
            raise ValueError(f"dlp_kernel_size={self.dlp_kernel_size!r}: expected an odd positive integer")
        if not self.gate_convs or any(len(c) != 2 or c[0] < 1 or c[0] % 2 == 0 or c[1] < 1 for c in self.gate_convs):
            raise ValueError(f"gate_convs={self.gate_convs!r}: expected (odd kernel, dilation >= 1) pairs")
        if self.gate_mode not in ("mul", "add"):
            raise ValueError(f"gate_mode={self.gate_mode!r}: expected 'mul' or 'add'")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r}: expected > 0")
        if self.block not in BLOCKS:
            raise ValueError(f"block={self.block!r}: expected one of {list(BLOCKS)}")
        if self.block == "hrformer" and any(w % h for w, h in zip(self.widths, self.num_heads)):
            raise ValueError(f"num_heads={self.num_heads!r}: must divide widths={self.widths}")


class HRNeXt(HRNetBase):
    """HRNeXt backbone (the authors' release, with the key renames of ``harness.checkpoint``).

    ``HRNeXt(cfg)(x)``: x (N, in_channels, H, W) -> list of feature maps, the first
    (N, widths[0], H/4, W/4); all four branches when ``cfg.multiscale_output``.  Training with dynamic
    convs needs N >= 2 (their kernel attention uses batch statistics).
    """

    fusion = FusionStyle(upsample="bilinear", downsample="dwsep", act="gelu")
    fuse_pairs = tuple((f"conv{i}", f"bn{i}") for i in (1, 2, 3, 4))
    act = "gelu"
    stage1_in_drop_path = True

    def _build_stem(self, cfg):
        w, n = cfg.stem_width, cfg.norm_layer
        self.conv1 = nn.Conv2d(cfg.in_channels, w, 3, stride=2, padding=1, bias=False)
        self.bn1 = make_norm(n, w)
        self.conv2 = nn.Conv2d(w, w, 3, padding=1, groups=w, bias=False)
        self.bn2 = make_norm(n, w)
        self.conv3 = nn.Conv2d(w, w, 1, bias=False)
        self.bn3 = make_norm(n, w)
        self.conv4 = nn.Conv2d(w, w, 3, stride=2, padding=1, groups=w, bias=False)
        self.bn4 = make_norm(n, w)
        self.gelu = nn.GELU()

    def forward_stem(self, x):
        for i in (1, 2, 3, 4):
            x = self.gelu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return x

    def _blocks(self, width: int, num_kernels: int, drop_paths: list[float], heads: int) -> list[nn.Module]:
        cfg = self.cfg
        if cfg.block == "hrnext":
            blocks = [HRNeXtBlock(width, cfg, num_kernels, r) for r in drop_paths]
        elif cfg.block == "hrformer":
            blocks = [HRFormerBlock(width, heads, cfg.window_size, cfg.mlp_ratio, r, cfg.norm_layer)
                      for r in drop_paths]
        else:
            blocks = [BasicBlock(width, width, norm=cfg.norm_layer, drop_path=r) for r in drop_paths]
        if cfg.branch_norm:
            blocks.append(LayerNorm2d(width, eps=1e-6))
        return blocks

    def _build_layer1(self, cfg):
        heads = max(1, cfg.stem_width // 32)
        self.layer1 = Branch(*self._blocks(cfg.stem_width, cfg.stage1_kernels, self.stage1_drop_paths, heads))
        return cfg.stem_width

    def _build_branch(self, stage, module, branch, width):
        return self._blocks(width, self.cfg.num_kernels[branch], self.drop_paths(stage, module),
                            self.cfg.num_heads[branch])

    def init_weights(self):
        super().init_weights()  # convs ~ N(0, 0.001) (the kernel-attention convs too), norms at identity
        for m in self.modules():
            if isinstance(m, DynamicConv2d):
                m.reset_parameters()
            elif isinstance(m, HRNeXtBlock) and m.layer_scale:
                for i in (1, 2, 3):
                    nn.init.constant_(getattr(m, f"layer_scale_{i}"), self.cfg.layer_scale_init)
            elif isinstance(m, HRFormerBlock):
                nn.init.trunc_normal_(m.attn.attn.relative_position_bias_table, std=0.02)


register_family(
    "hrnext", HRNeXt, HRNeXtConfig,
    variants={
        "hrnext-s": HRNeXtConfig(widths=(32, 64, 128, 256), num_kernels=(4, 2, 1, 1), stage1_kernels=4,
                                 drop_path_rate=0.1),
        "hrnext-b": HRNeXtConfig(widths=(48, 96, 192, 384), num_kernels=(8, 4, 2, 1), stage1_kernels=8,
                                 drop_path_rate=0.1),
        # CPU demo: same code paths (dynamic convs on the two high-resolution branches), 1.5M params.
        "hrnext-demo": HRNeXtConfig(widths=(32, 64, 128, 256), stem_width=32, stage1_blocks=1,
                                    num_modules=(1, 1, 1), num_blocks=(1, 1, 1), num_kernels=(2, 2, 1, 1),
                                    stage1_kernels=2, mlp_ratio=2.0, drop_path_rate=0.0),
    },
    paper={"hrnext-s": "256x192", "hrnext-b": "384x288"},
)
