"""Small building blocks shared by the three families.

Generic layers come from timm (DropPath, LayerNorm2d, trunc_normal_); what lives here is only what the
high-resolution families need on top: a norm factory (BN / SyncBN), conv+norm(+act) stacks whose
``nn.Sequential`` indices reproduce the reference state-dict keys, and the residual blocks of HRNet
(BasicBlock, Bottleneck) that HRFormer reuses for its first stage.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath
from torch.nn.modules.utils import _pair


def is_channels_last(t: torch.Tensor) -> bool:
    """Is ``t`` a channels-last 4-d tensor (and not also a contiguous one, as (N, C, 1, 1) maps are)?"""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a channels-last tensor (:func:`is_channels_last`), else contiguous."""
    return torch.channels_last if is_channels_last(t) else torch.contiguous_format


def in_layout_of(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` in ``x``'s memory layout (channels-last or contiguous), copied only if it differs: for an
    elementwise op between the two, whose CPU kernels are several times slower on mixed layouts."""
    return y.contiguous(memory_format=memory_format_of(x))


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose backward gets the gradient in the memory layout of its input.

    When the gradient arriving at a BN output is channels-last and the BN input contiguous (or the other
    way round), PyTorch's CPU ``native_batch_norm_backward`` falls off its vectorised kernels: measured
    here 5-11x slower than with matching layouts (e.g. (32, 32, 64, 48), one thread: 50 ms vs 4.6 ms).
    HRNeXt mixes the two (its batch-folded 1x1 dynamic convs give contiguous tensors, LayerNorm2d and the
    convs after it channels-last ones), so the gradient is first copied into the input's layout; the
    values are those of the plain layer.  Same parameters, buffers and state-dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if (y.requires_grad and y.dim() == 4 and y.shape[-1] * y.shape[-2] > 1
                and not torch.compiler.is_compiling()):
            y.register_hook(functools.partial(torch.Tensor.contiguous, memory_format=memory_format_of(y)))
        return y


NORM_LAYERS: dict[str, type[nn.Module]] = {
    "bn": BatchNorm2d,
    # SyncBN falls back to plain batch norm when no process group is initialised, so the same config
    # trains on one CPU and on many GPUs.
    "syncbn": nn.SyncBatchNorm,
}

ACT_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "gelu": nn.GELU,
}


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-d norm layer by name ('bn' or 'syncbn')."""
    try:
        return NORM_LAYERS[kind](channels)
    except KeyError:
        raise ValueError(f"norm_layer={kind!r}: expected one of {sorted(NORM_LAYERS)}") from None


def make_act(kind: str) -> nn.Module:
    try:
        return ACT_LAYERS[kind]()
    except KeyError:
        raise ValueError(f"act={kind!r}: expected one of {sorted(ACT_LAYERS)}") from None


def conv_norm(in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, groups: int = 1,
              norm: str = "bn", act: str | None = None) -> nn.Sequential:
    """``Sequential(conv, norm[, act])``: keys ``0.weight`` / ``1.*`` as in the references."""
    layers = [nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2,
                        groups=groups, bias=False), make_norm(norm, out_ch)]
    if act is not None:
        layers.append(make_act(act))
    return nn.Sequential(*layers)


def dw_sep_norm(in_ch: int, out_ch: int, *, stride: int = 2, norm: str = "bn",
                act: str | None = None) -> nn.Sequential:
    """Depthwise 3x3 (strided) + norm + pointwise 1x1 + norm [+ act]: HRFormer/HRNeXt's cheap downsampler."""
    layers = [
        nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch, bias=False),
        make_norm(norm, in_ch),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        make_norm(norm, out_ch),
    ]
    if act is not None:
        layers.append(make_act(act))
    return nn.Sequential(*layers)


class SameConv2d(nn.Conv2d):
    """Stride-1 "same" conv (padding ``dilation * (k - 1) / 2``), computed in the cheapest exact way.

    * Taps that only ever see the zero padding are skipped: a tap at offset ``o = (i - k // 2) * dilation``
      touches the input only if ``|o| < size``; on maps smaller than the kernel's reach (HRNeXt's 7x7
      dilation-3 gate on the 1/16 and 1/32 branches) the other taps multiply zeros.
    * A dilated depthwise conv runs as a dense one on the ``dilation**2`` phase sub-grids of the padded
      input (:func:`dilated_depthwise_conv2d`), which CPU conv kernels do several times faster than the
      dilated form (the dilated depthwise conv has no fast CPU kernel, least of all in channels-last).

    Both give the same output and the same gradients as the plain conv (the skipped taps' are exactly 0).
    The parameter keeps its full shape, so state dicts are unchanged.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, dilation: int = 1, groups: int = 1,
                 bias: bool = False):
        if kernel_size % 2 == 0:
            raise ValueError(f"SameConv2d: kernel_size={kernel_size} must be odd")
        super().__init__(in_ch, out_ch, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                         dilation=dilation, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, d = self.kernel_size[0] // 2, self.dilation[0]
        mh, mw = min(r, (x.shape[-2] - 1) // d), min(r, (x.shape[-1] - 1) // d)
        w = self.weight if mh == r and mw == r else self.weight[:, :, r - mh:r + mh + 1, r - mw:r + mw + 1]
        depthwise = self.groups == self.in_channels == self.out_channels
        if d > 1 and depthwise and (is_channels_last(x) or x.shape[-2] * x.shape[-1] >= 100):
            return dilated_depthwise_conv2d(x, w, self.bias, d)
        return F.conv2d(x, w, self.bias, padding=(mh * d, mw * d), dilation=d, groups=self.groups)


def dilated_depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                             dilation: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding="same", dilation=dilation, groups=C)`` for odd kernels, exactly.

    Output pixel ``(i, j)`` only reads input pixels congruent to it modulo ``dilation``, so the padded
    input splits into ``dilation**2`` phase sub-grids (folded into the batch, channels-last) on which the
    dilated kernel is a dense one; the outputs interleave back.  x: (B, C, H, W); weight: (C, 1, kh, kw);
    returns (B, C, H, W) in x's memory format.
    """
    b, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    d = dilation
    hq, wq = -(-h // d), -(-w // d)  # output rows/cols per phase (the last phase may overshoot: cropped)
    hp, wp = hq + kh - 1, wq + kw - 1  # padded input rows/cols per phase
    top, left = kh // 2 * d, kw // 2 * d
    xp = F.pad(x, (left, wp * d - w - left, top, hp * d - h - top))
    xs = xp.view(b, c, hp, d, wp, d).permute(0, 3, 5, 2, 4, 1).reshape(b * d * d, hp, wp, c)
    y = F.conv2d(xs.permute(0, 3, 1, 2), weight, bias, groups=c)  # (B*d*d, C, hq, wq), channels-last
    y = y.permute(0, 2, 3, 1).reshape(b, d, d, hq, wq, c)
    if is_channels_last(x):
        y = y.permute(0, 3, 1, 4, 2, 5).reshape(b, hq * d, wq * d, c)[:, :h, :w].permute(0, 3, 1, 2)
        return y.contiguous(memory_format=torch.channels_last)
    y = y.permute(0, 5, 3, 1, 4, 2).reshape(b, c, hq * d, wq * d)
    return y[:, :, :h, :w].contiguous()


class _SpatialMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.mean((2, 3), keepdim=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        h, w = ctx.shape[-2:]
        return (grad / (h * w)).expand(ctx.shape)


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean((2, 3), keepdim=True)`` whose backward hands autograd the gradient as a broadcast view.

    ``mean``'s own backward divides the *expanded* gradient, writing a full (B, C, H, W) tensor that the
    engine then adds to the input's other gradient; here the division runs on the (B, C, 1, 1) gradient
    and the broadcast goes straight into that add.  The values are bitwise those of ``mean``'s backward
    (the same ``grad / (H * W)`` per entry); one full-size pass and allocation fewer.
    """
    return _SpatialMean.apply(x)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a conv into that conv, in place.

    ``BN(conv(x)) = conv'(x)`` with ``W' = W * s`` and ``b' = (b - mean) * s + beta``,
    ``s = gamma / sqrt(var + eps)``; the BN becomes ``nn.Identity``.  Pairs are found in ``nn.Sequential``
    runs (conv, BN) and in the ``fuse_pairs`` ``(conv_attr, norm_attr)`` that blocks declare.  A conv that
    is not an ``nn.Conv2d`` folds the BN itself through its ``fold_batchnorm(scale, shift)`` method (HRNeXt's
    dynamic convs); a BN after anything else is left as it is.  Only valid for inference (running statistics).
    """
    def pairs(m):
        if isinstance(m, nn.Sequential):
            names = [n for n, _ in m.named_children()]
            yield from zip(names, names[1:])
        yield from getattr(m, "fuse_pairs", ())

    for parent in list(model.modules()):
        for conv_name, norm_name in list(pairs(parent)):
            conv, norm = getattr(parent, conv_name, None), getattr(parent, norm_name, None)
            if not (isinstance(norm, nn.modules.batchnorm._BatchNorm)
                    and (isinstance(conv, nn.Conv2d) or hasattr(conv, "fold_batchnorm"))):
                continue
            scale = torch.rsqrt(norm.running_var + norm.eps)
            shift = -norm.running_mean * scale
            if norm.affine:
                scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
            if isinstance(conv, nn.Conv2d):
                bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
                conv.weight.copy_(conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1))))
                conv.bias = nn.Parameter(bias * scale + shift)
            else:
                conv.fold_batchnorm(scale, shift)
            setattr(parent, norm_name, nn.Identity())
    return model


def _onednn_inference(x: torch.Tensor) -> bool:
    """Whether ``x`` can take oneDNN's fused inference kernels: CPU float32, no autograd, no CPU autocast
    (which would run the standard ops in bf16/fp16), and neither a JIT trace (the cost counters trace the
    standard ops) nor ``torch.compile`` (inductor picks its own kernels and lowers these ops only for
    frozen, constant weights)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available()
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) that on CPU float32 without autograd runs as one
    oneDNN matmul with the bias added in its epilogue (``torch.ops.mkldnn._linear_pointwise``), where
    ``F.linear``'s ``addmm`` first copies the bias into every output row (HRFormer's qkv/proj: 4-5% of an
    inference pass); elsewhere ``F.linear``.  Equal up to float rounding; a module, so hooks (the cost
    counters') see it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_inference(x):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def activate(y: torch.Tensor, act: str | None) -> torch.Tensor:
    """``y`` through the activation named ``act``: None, "relu" or "gelu" (erf, as ``nn.GELU()``)."""
    return F.relu(y) if act == "relu" else F.gelu(y) if act == "gelu" else y


def conv2d_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: str | None, *,
               stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1) -> torch.Tensor:
    """``act(F.conv2d(x, weight, bias, ...))`` for ``act`` None, "relu" or "gelu" (erf): one oneDNN call
    with the activation as a post-op where :func:`_onednn_inference` allows, else op by op."""
    stride, padding, dilation = (list(_pair(v)) for v in (stride, padding, dilation))
    if x.dim() == 4 and _onednn_inference(x):  # algorithm "none": oneDNN's erf GELU, as nn.GELU()
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, stride, dilation, groups,
                                                       act or "none", [None], "none" if act == "gelu" else "")
    return activate(F.conv2d(x, weight, bias, stride, padding, dilation, groups), act)


class PointwiseConv2d(nn.Conv2d):
    """An inference conv with its bias, an optional residual ``other`` and a ReLU or GELU in the same pass.

    ``PointwiseConv2d.wrap(conv, act)`` shares ``conv``'s parameters (same state-dict keys).  On CPU
    float32 without autograd it is one oneDNN call with post-ops (``torch.ops.mkldnn._convolution_pointwise``,
    the kernel ``torch.compile`` itself lowers to on CPU), which saves a pass over the output per
    post-op; elsewhere (CUDA, float64, bf16, autograd) it runs the same ops one by one.  Equal up to
    float rounding (oneDNN's erf GELU agrees with ``F.gelu`` to ~5e-8 relative).
    """

    act: str | None = None

    @classmethod
    def wrap(cls, conv: nn.Conv2d, act: str | None) -> "PointwiseConv2d":
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise TypeError(f"PointwiseConv2d.wrap: a plain zero-padded nn.Conv2d is needed, got {conv!r}")
        if act not in (None, "relu", "gelu"):
            raise ValueError(f"PointwiseConv2d: act={act!r}: expected None, 'relu' or 'gelu' (erf)")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        new.weight, new.bias, new.act = conv.weight, conv.bias, act
        return new

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        if other is None:
            return conv2d_act(x, self.weight, self.bias, self.act, stride=self.stride, padding=self.padding,
                              dilation=self.dilation, groups=self.groups)
        if x.dim() == 4 and _onednn_inference(x):
            args = (self.weight, self.bias, list(self.padding), list(self.stride), list(self.dilation), self.groups)
            if self.act == "gelu":  # oneDNN fuses only ReLU after a binary post-op
                return F.gelu(torch.ops.mkldnn._convolution_pointwise.binary(x, other, *args, "add", None, None,
                                                                             [None], ""))
            return torch.ops.mkldnn._convolution_pointwise.binary(x, other, *args, "add", None, self.act, [None], "")
        return activate(super().forward(x) + other, self.act)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", act={self.act}"


def _folded(norm: nn.Module | None) -> bool:
    return isinstance(norm, nn.Identity)


@torch.no_grad()
def fuse_conv_activations(model: nn.Module) -> nn.Module:
    """After :func:`fold_batchnorm`: give every folded conv followed by a ReLU or GELU (and, in residual
    blocks, the residual add) to :class:`PointwiseConv2d`, in place.  Sequential runs ``conv, Identity, ReLU``
    (the folded ``conv_norm(..., act="relu")``) are rewritten here; blocks whose forward owns the activation
    do it in their ``fuse_activations()``, called when every BN they declare in ``fuse_pairs`` is folded."""
    for m in list(model.modules()):
        if isinstance(m, nn.Sequential):
            names = [n for n, _ in m.named_children()]
            for a, b, c in zip(names, names[1:], names[2:]):
                conv, norm, act = getattr(m, a), getattr(m, b), getattr(m, c)
                if type(conv) is nn.Conv2d and _folded(norm) and isinstance(act, nn.ReLU):
                    setattr(m, a, PointwiseConv2d.wrap(conv, "relu"))
                    setattr(m, c, nn.Identity())
        elif hasattr(m, "fuse_activations") and all(_folded(getattr(m, n)) for _, n in m.fuse_pairs):
            m.fuse_activations()
    return model


def drop_path_or_identity(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0.0 else nn.Identity()


class BasicBlock(nn.Module):
    """HRNet's 3x3-3x3 residual block (keys conv1/bn1/conv2/bn2[/downsample])."""

    expansion = 1
    fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, in_ch: int, out_ch: int, *, norm: str = "bn", drop_path: float = 0.0,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = make_norm(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path_or_identity(drop_path)

    def fuse_activations(self) -> None:
        """Inference (after BN folding): conv1 + ReLU, conv2 + residual + ReLU, each one pass."""
        self.conv1 = PointwiseConv2d.wrap(self.conv1, "relu")
        self.conv2 = PointwiseConv2d.wrap(self.conv2, "relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        if isinstance(self.conv2, PointwiseConv2d):
            return self.conv2(self.conv1(x), other=identity)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(self.drop_path(out) + identity)


class Bottleneck(nn.Module):
    """1x1-3x3-1x1 residual block with 4x expansion (HRNet/HRFormer stage 1)."""

    expansion = 4
    fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_ch: int, out_ch: int, *, norm: str = "bn", drop_path: float = 0.0,
                 downsample: nn.Module | None = None):
        super().__init__()
        mid = out_ch // self.expansion
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = make_norm(norm, mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path_or_identity(drop_path)

    def fuse_activations(self) -> None:
        """Inference (after BN folding): each conv with its ReLU (conv3 also with the residual) in one pass."""
        self.conv1 = PointwiseConv2d.wrap(self.conv1, "relu")
        self.conv2 = PointwiseConv2d.wrap(self.conv2, "relu")
        self.conv3 = PointwiseConv2d.wrap(self.conv3, "relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        if isinstance(self.conv3, PointwiseConv2d):
            return self.conv3(self.conv2(self.conv1(x)), other=identity)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.drop_path(out) + identity)


def residual_layer(block: type[BasicBlock] | type[Bottleneck], in_ch: int, out_ch: int, num_blocks: int,
                   *, norm: str = "bn", drop_paths: list[float] | None = None) -> list[nn.Module]:
    """``num_blocks`` residual blocks; the first gets a 1x1 projection when the width changes."""
    drop_paths = drop_paths or [0.0] * num_blocks
    downsample = conv_norm(in_ch, out_ch, 1, norm=norm) if in_ch != out_ch else None
    blocks = [block(in_ch, out_ch, norm=norm, drop_path=drop_paths[0], downsample=downsample)]
    blocks += [block(out_ch, out_ch, norm=norm, drop_path=drop_paths[i]) for i in range(1, num_blocks)]
    return blocks


def drop_path_schedule(rate: float, depths: list[int]) -> list[list[float]]:
    """Linearly increasing stochastic-depth rates over all blocks, split per stage (timm/mmpose rule)."""
    total = sum(depths)
    rates = torch.linspace(0, rate, total).tolist() if total else []
    out, start = [], 0
    for d in depths:
        out.append(rates[start:start + d])
        start += d
    return out
