"""HRFormer (Yuan et al., "HRFormer: High-Resolution Transformer for Dense Prediction", NeurIPS 2021).

Blocks: HRNet's Bottleneck in stage 1; in stages 2-4 local-window multi-head self-attention with a
relative position bias, followed by a depthwise-conv FFN.  Fusion downsamples with depthwise-separable
convs and upsamples bilinearly.  State-dict layout = mmpose 1.x ``HRFormer``.

Faithful to the reference: windows are zero-padded (centred) *after* the LayerNorm and, unless
``with_pad_mask``, the padded tokens take part in the softmax.  Attention is written out in training and
runs through ``F.scaled_dot_product_attention`` (the relative-position bias as an additive mask) without
autograd; tokens stay in (B, H, W, C) views so the FFN convs see channels-last memory and no layout copies
are made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from .hrnet import BottleneckStem
from .layers import Linear, PointwiseConv2d, drop_path_or_identity, make_norm
from .registry import register_family
from .scaffold import FusionStyle, HRConfig, HRNetBase


def relative_position_index(wh: int, ww: int) -> torch.Tensor:
    """(wh*ww, wh*ww) index into a ((2wh-1)*(2ww-1), heads) bias table (Swin's convention)."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


class WindowMSA(nn.Module):
    """Multi-head self-attention inside (B*num_windows, N, C) windows with a relative position bias."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], with_rpe: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.window = window
        self.with_rpe = with_rpe
        if with_rpe:
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), num_heads))
            self.register_buffer("relative_position_index", relative_position_index(*window))
        self.qkv = Linear(dim, dim * 3)  # nn.Linear with a fused-bias inference kernel
        self.proj = Linear(dim, dim)

    def position_bias(self) -> torch.Tensor | None:
        if not self.with_rpe:
            return None
        n = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        # (1, heads, N, N): 4-d, as F.scaled_dot_product_attention needs to take its CPU flash kernel
        return bias.view(n, n, self.num_heads).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B', N, C); mask: additive, broadcastable to (B', heads, N, N)."""
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.position_bias()
        if mask is not None:
            bias = mask if bias is None else bias + mask
        if bias is not None:
            bias = bias.to(qkv.dtype)
        q, k, v = qkv.unbind(0)
        if not torch.is_grad_enabled():
            # Inference: one fused kernel (PyTorch's flash attention on CPU, which takes the strided q/k/v
            # views as they are; CUDA's fused kernels); it is chosen only for a 4-d mask (a 3-d one runs the
            # math path).  Written out instead (scale and bias in place), HRFormer-S's CPU pass was 1.05x
            # faster at 2 threads but hrformer-demo's 0.95x at 1 thread (AMD EPYC, 2026-12-08): kept as is.
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            # Training: written out (as the reference does). F.scaled_dot_product_attention's backward on
            # CPU is no faster here, and its math path adds a "safe softmax" scan for all -inf rows, which
            # the window partition never makes (~7% of an HRFormer-S forward pass).
            attn = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
            if bias is not None:
                attn = attn + bias
            out = attn.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LocalWindowSelfAttention(nn.Module):
    """Partition a (B, H, W, C) map into padded windows, attend within each, and merge back."""

    def __init__(self, dim: int, num_heads: int, window_size: int, with_rpe: bool = True,
                 with_pad_mask: bool = False):
        super().__init__()
        self.window = (window_size, window_size)
        self.with_pad_mask = with_pad_mask
        self.attn = WindowMSA(dim, num_heads, self.window, with_rpe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        wh, ww = self.window
        nh, nw = math.ceil(h / wh), math.ceil(w / ww)
        ph, pw = nh * wh - h, nw * ww - w
        pads = (0, 0, pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        x = F.pad(x, pads)
        x = x.view(b, nh, wh, nw, ww, c).transpose(2, 3).reshape(b * nh * nw, wh * ww, c)
        mask = None
        if self.with_pad_mask and (ph or pw):
            valid = F.pad(x.new_zeros(1, h, w, 1), pads, value=float("-inf"))
            valid = valid.view(1, nh, wh, nw, ww).transpose(2, 3).reshape(nh * nw, 1, 1, wh * ww)
            mask = valid.repeat(b, 1, 1, 1)  # (B*nW, 1, 1, N): masks keys
        out = self.attn(x, mask)
        out = out.view(b, nh, nw, wh, ww, c).transpose(2, 3).reshape(b, nh * wh, nw * ww, c)
        return out[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]


class CrossFFN(nn.Module):
    """1x1 expand -> depthwise 3x3 -> 1x1 project, each followed by BN + GELU (on NCHW maps)."""

    fuse_pairs = (("fc1", "norm1"), ("dw3x3", "norm2"), ("fc2", "norm3"))

    def __init__(self, dim: int, hidden: int, norm: str = "bn"):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act1 = nn.GELU()
        self.norm1 = make_norm(norm, hidden)
        self.dw3x3 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act2 = nn.GELU()
        self.norm2 = make_norm(norm, hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.act3 = nn.GELU()
        self.norm3 = make_norm(norm, dim)

    def fuse_activations(self) -> None:
        """Inference (after BN folding): each conv with its GELU in one pass."""
        self.fc1 = PointwiseConv2d.wrap(self.fc1, "gelu")
        self.dw3x3 = PointwiseConv2d.wrap(self.dw3x3, "gelu")
        self.fc2 = PointwiseConv2d.wrap(self.fc2, "gelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.fc2, PointwiseConv2d):
            return self.fc2(self.dw3x3(self.fc1(x)))
        x = self.act1(self.norm1(self.fc1(x)))
        x = self.act2(self.norm2(self.dw3x3(x)))
        return self.act3(self.norm3(self.fc2(x)))


class HRFormerBlock(nn.Module):
    expansion = 1

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, norm: str = "bn", with_rpe: bool = True, with_pad_mask: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = LocalWindowSelfAttention(dim, num_heads, window_size, with_rpe, with_pad_mask)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = CrossFFN(dim, int(dim * mlp_ratio), norm)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
        t = t + self.drop_path(self.attn(self.norm1(t)))
        ffn = self.ffn(self.norm2(t).permute(0, 3, 1, 2))
        t = t + self.drop_path(ffn.permute(0, 2, 3, 1))
        return t.permute(0, 3, 1, 2)


@dataclass
class HRFormerConfig(HRConfig):
    """HRFormer's config: :class:`HRConfig` plus the transformer blocks' ``num_heads`` (per branch),
    ``mlp_ratio`` (FFN width / block width), ``window_size`` (square local windows), ``with_rpe``
    (relative position bias) and ``with_pad_mask`` (mask padded tokens; off in the reference)."""

    stage1_blocks: int = 2
    num_modules: tuple[int, int, int] = (1, 4, 2)
    num_blocks: tuple[int, int, int] = (2, 2, 2)
    num_heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    mlp_ratio: float = 4.0
    window_size: int = 7
    with_rpe: bool = True
    with_pad_mask: bool = False

    def validate(self):
        super().validate()
        self.num_heads = tuple(self.num_heads)
        if len(self.num_heads) != 4 or any(w % h for w, h in zip(self.widths, self.num_heads)):
            raise ValueError(f"num_heads={self.num_heads!r}: need 4 head counts dividing widths={self.widths}")
        if self.window_size < 1:
            raise ValueError(f"window_size={self.window_size!r}: expected a positive integer")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio={self.mlp_ratio!r}: expected > 0")


class HRFormer(BottleneckStem, HRNetBase):
    """HRFormer backbone (mmpose 1.x ``HRFormer`` layout).

    ``HRFormer(cfg)(x)``: x (N, in_channels, H, W) -> list of feature maps, the first
    (N, widths[0], H/4, W/4); all four branches when ``cfg.multiscale_output``.
    """

    fusion = FusionStyle(upsample="bilinear", downsample="dwsep", act="relu")
    act = "relu"
    # The blocks' (B, H, W, C) token views are then free, and the FFN's depthwise convs run ~2x faster on
    # CPU (same outputs and gradients, tested).
    channels_last = True

    def _build_branch(self, stage, module, branch, width):
        cfg = self.cfg
        return [HRFormerBlock(width, cfg.num_heads[branch], cfg.window_size, cfg.mlp_ratio, rate,
                              cfg.norm_layer, cfg.with_rpe, cfg.with_pad_mask)
                for rate in self.drop_paths(stage, module)]

    def init_weights(self):
        super().init_weights()
        for m in self.modules():
            if isinstance(m, WindowMSA):
                if m.with_rpe:
                    trunc_normal_(m.relative_position_bias_table, std=0.02)
                m.qkv.reset_parameters()
                m.proj.reset_parameters()


register_family(
    "hrformer", HRFormer, HRFormerConfig,
    variants={
        "hrformer-s": HRFormerConfig(widths=(32, 64, 128, 256), num_heads=(1, 2, 4, 8), drop_path_rate=0.1),
        "hrformer-b": HRFormerConfig(widths=(78, 156, 312, 624), num_heads=(2, 4, 8, 16), drop_path_rate=0.2),
        # CPU demo: same code paths, 1.4M params.
        "hrformer-demo": HRFormerConfig(widths=(32, 64, 128, 256), num_heads=(1, 2, 4, 8), stem_width=16,
                                        stage1_blocks=1, num_modules=(1, 1, 1), num_blocks=(1, 1, 1),
                                        mlp_ratio=2.0),
    },
    paper={"hrformer-s": "256x192", "hrformer-b": "256x192"},
)
