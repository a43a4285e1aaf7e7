"""Counting: parameters and GFLOPs of a pose model under two labelled conventions.

Two FLOP counts are given for every model, always labelled, because papers disagree on what a "FLOP" is:

* ``gflops_fvcore`` (:func:`count_gflops`): fvcore's ``FlopCountAnalysis`` over the traced graph (one
  multiply-add = one flop; convolutions, matmul/bmm/einsum/linear, batch/layer/group norm, upsampling,
  adaptive pooling), plus handles we register for the operators fvcore does not know:
  ``aten::scaled_dot_product_attention`` (HRFormer's window attention: two matmuls, ``B*heads*Nq*Nk*d``
  each).  HRNeXt's dynamic convs trace to ``aten::matmul`` (kernel mixing, and the per-sample 1x1 convs)
  and a grouped ``aten::_convolution`` with the batch folded into the groups; fvcore counts both
  correctly (checked in ``tests/profile/test_profile.py``).  Element-wise operators (add, mul, GELU, ...) are not
  counted by fvcore; they are listed in ``ProfileStatic.fvcore_skipped_ops``.
* ``gflops_paper_convention`` (:func:`paper_gflops`): per family, the convention that best reproduces the
  HRNeXt paper's table (Zhang et al., IEEE TMM 2023, doi:10.1109/TMM.2023.3248144), chosen by
  ``fit_conventions`` over the ten paper (model, input) pairs (see ``PAPER_CONVENTION``).  All candidates
  are computed by our own per-module hook counter (``hook_components``), in the style of mmcv's
  ``get_model_complexity_info``, HRNet's ``get_model_summary`` and the HRNeXt authors' torchstat tool:
  multiply-adds of convolutions (dynamic convs counted as the conv with the aggregated kernel) and linear
  layers, optionally plus one op per element for norms (two when affine), ReLU-family activations,
  pooling and upsampling, and "G" as 1e9 or 2^30 (HRNet's tool divides by 1024^3).

:func:`profile_static` gives both for a registered model (with optional backbone overrides), cached
in-process; it is what result records, tables, the demo and the ablations read.
"""
from __future__ import annotations

import csv
import functools
import json
import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

import backbones
from backbones.hrformer import LocalWindowSelfAttention
from backbones.hrnext import DynamicConv2d
from backbones.scaffold import Upsample as ScaffoldUpsample
from harness.models import create_pose_model

with warnings.catch_warnings():  # fvcore's import warns about torch.jit.script's deprecation
    warnings.simplefilter("ignore")
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
REPORTED_DIR = REPO / "results" / "reported"


# --------------------------------------------------------------------------------------------- paper figures
@dataclass(frozen=True)
class PaperFigure:
    params_m: float
    gflops: float


@functools.lru_cache(maxsize=1)
def paper_figures() -> dict[tuple[str, tuple[int, int]], PaperFigure]:
    """``{(model, (H, W)): PaperFigure}`` from ``results/reported/*.csv`` (first occurrence wins: the
    COCO and OCHuman tables of the paper repeat the same costs)."""
    out: dict[tuple[str, tuple[int, int]], PaperFigure] = {}
    for path in sorted(REPORTED_DIR.glob("*.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    key = (row["model"], (int(row["input_h"]), int(row["input_w"])))
                    fig = PaperFigure(float(row["params_m"]), float(row["gflops"]))
                except (KeyError, ValueError) as e:
                    log.warning("%s: skipping a row without model/input/params/gflops (%s)", path, e)
                    continue
                out.setdefault(key, fig)
    return out


def paper_figure(name: str, input_hw: tuple[int, int]) -> PaperFigure | None:
    return paper_figures().get((name, tuple(input_hw)))


# ------------------------------------------------------------------------------------------------- helpers
def parse_hw(text: str | Iterable[int]) -> tuple[int, int]:
    """``"256x192"`` (or ``(256, 192)``) -> ``(256, 192)``; a clear error otherwise."""
    if isinstance(text, str):
        parts = text.lower().replace("*", "x").split("x")
        try:
            hw = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"input size {text!r}: expected HxW, e.g. 256x192") from None
    else:
        hw = tuple(int(v) for v in text)
    if len(hw) != 2 or min(hw) < 32:
        raise ValueError(f"input size {text!r}: expected HxW with H, W >= 32, e.g. 256x192")
    return hw  # type: ignore[return-value]


def default_input_hw(name: str) -> tuple[int, int]:
    """The paper's input size for the six paper models (the registry's ``paper_input``), else 256x192."""
    entry = backbones.get_entry(name)
    return parse_hw(entry.paper_input) if entry.paper_input else (256, 192)


def count_params(model: nn.Module) -> int:
    """All parameters (trainable or not) of ``model``, shared tensors counted once."""
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


@functools.lru_cache(maxsize=64)
def model_params(name: str, num_keypoints: int = 17) -> int:
    """Parameter count of ``name``'s pose model (built without the weight init, which only costs time)."""
    return count_params(create_pose_model(name, num_keypoints, init=False))


# ------------------------------------------------------------------------------------------- fvcore count
def sdpa_flop_jit(inputs, outputs) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention(q, k, v, ...)``.

    q: (..., Nq, d), k: (..., Nk, d), v: (..., Nk, dv).  Two matmuls, ``Q K^T`` (prod(batch)*Nq*Nk*d
    multiply-adds) and ``softmax(.) V`` (prod(batch)*Nq*Nk*dv); softmax, scaling and the additive mask
    are element-wise and, as everywhere in fvcore, not counted.
    """
    q, k, v = (get_shape(t) for t in inputs[:3])
    *batch, nq, d = q
    nk, dv = k[-2], v[-1]
    b = math.prod(batch)
    return b * nq * nk * d + b * nq * nk * dv


# aten names under which SDPA can appear in a trace, depending on torch version and backend.
SDPA_OPS = ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product_attention_math",
            "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention",
            "aten::_scaled_dot_product_efficient_attention")


def fvcore_flops(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int], dict[str, int]]:
    """fvcore count of ``model(x)`` in eval mode (the mode is restored): ``(total, {operator: flops},
    {skipped operator: calls})``."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():  # no autograd bookkeeping while tracing
            warnings.simplefilter("ignore")
            fca = FlopCountAnalysis(model, x)
            fca.set_op_handle(**{op: sdpa_flop_jit for op in SDPA_OPS})
            fca.unsupported_ops_warnings(False)
            fca.uncalled_modules_warnings(False)
            fca.tracer_warnings("none")
            total = int(fca.total())
            by_op = {k: int(v) for k, v in fca.by_operator().items()}
            skipped = dict(fca.unsupported_ops())
    finally:
        model.train(was_training)
    return total, by_op, skipped


# -------------------------------------------------------------------------------- module-hook counter
# One forward pass with per-module hooks measures every *component* below (multiply-adds for the
# matrix products, one op per element for the rest); a convention is then a selection of components
# and a divisor.  Measuring components once makes it cheap to compare conventions against the paper.
COMPONENTS = {
    "conv": "multiply-adds of convolutions (a dynamic conv counted as the conv with its mixed kernel)",
    "conv_bias": "one add per output element of a conv with bias",
    "bn": "batch norm: one op per element, two when affine",
    "norm_other": "layer/group/instance norm: one op per element, two when affine",
    "relu": "ReLU-family activations: one op per element",
    "gelu": "GELU/sigmoid/SiLU: one op per element",
    "pool": "pooling modules: one op per input element",
    "upsample": "upsampling: one op per output element",
    "linear": "multiply-adds of linear layers (window attention: on the padded windows, as computed)",
    "linear_unpadded": "the same linear layers counted on the tokens before window padding",
    "attention": "the two matmuls of scaled-dot-product attention (B*heads*N*N*d each)",
    "dynamic_mixing": "HRNeXt: the matmul mixing the K kernels of a dynamic conv (B*K*kernel numel)",
}


@dataclass(frozen=True)
class Convention:
    """A FLOP-counting convention: which components it sums and the divisor that makes 'G'."""

    name: str
    description: str
    components: tuple[str, ...]
    divisor: float = 1e9

    def __post_init__(self):
        bad = [c for c in self.components if c not in COMPONENTS]
        if bad:
            raise ValueError(f"Convention.components: unknown {bad}; valid: {sorted(COMPONENTS)}")
        if not self.divisor > 0:
            raise ValueError(f"Convention.divisor={self.divisor!r}: must be positive")

    def gflops(self, components: dict[str, int]) -> float:
        return sum(components.get(c, 0) for c in self.components) / self.divisor


_MMCV = ("conv", "conv_bias", "bn", "norm_other", "relu", "pool", "upsample", "linear")
CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention("hrnet-summary", "conv + linear multiply-adds, no bias, divided by 2^30 (as the HRNet authors' "
               "get_model_summary does)", ("conv", "linear"), 2.0 ** 30),
    Convention("mmcv-style", "mmcv get_model_complexity_info-style module hooks: conv/linear multiply-adds + "
               "bias, norms, ReLU-family, pooling, upsampling (no GELU, attention matmuls or element-wise "
               "ops), /1e9", _MMCV),
    Convention("mmcv-style-2^30", "mmcv get_model_complexity_info-style module hooks (conv/linear multiply-adds "
               "+ bias, dynamic conv = conv with the mixed kernel, norms, ReLU-family, pooling, upsampling; no "
               "GELU, attention matmuls or element-wise ops), divided by 2^30", _MMCV, 2.0 ** 30),
    Convention("torchstat-style-2^30", "the HRNeXt authors' torchstat hooks: conv (dynamic = mixed kernel) + "
               "bias, BN x2, ReLU-family, pooling, upsampling, linear; no LayerNorm/GELU/attention; /2^30",
               ("conv", "conv_bias", "bn", "relu", "pool", "upsample", "linear"), 2.0 ** 30),
    Convention("conv+linear-unpadded", "conv + linear multiply-adds (+ conv bias), window-attention "
               "projections counted on the tokens before window padding, no attention matmuls, /1e9",
               ("conv", "conv_bias", "linear_unpadded")),
    Convention("macs-all", "conv + bias + linear + attention matmuls + dynamic-kernel mixing + norms, /1e9 "
               "(close to fvcore)", ("conv", "conv_bias", "bn", "norm_other", "upsample", "linear",
                                     "attention", "dynamic_mixing")),
)}

# Per family, the convention that reproduces the paper's figures best (chosen by ``fit_conventions``
# over the ten paper (model, input) pairs; the residuals are in tests/profile/test_profile.py and the report):
# HRNet is reproduced exactly by HRNet's own summary (2^30 "G"); HRNeXt by mmcv-style hooks with a 2^30
# "G" (2.50 / 10.75; the authors' torchstat hooks, which skip LayerNorm, give 2.50 / 10.74); HRFormer
# best, within 1.2 % (no candidate matches all four figures), by conv + linear on the unpadded tokens.
PAPER_CONVENTION = {"hrnet": "hrnet-summary", "hrformer": "conv+linear-unpadded", "hrnext": "mmcv-style-2^30"}


class _SDPACounter(torch.overrides.TorchFunctionMode):
    """Counts the two matmuls of every ``F.scaled_dot_product_attention`` call made inside the mode."""

    def __init__(self):
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            b = math.prod(q.shape[:-2])
            self.macs += b * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return func(*args, **kwargs)


def hook_components(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """One no-grad forward of ``model(x)`` with module hooks; returns ``{component: count}`` (see
    ``COMPONENTS``).  x: (N, 3, H, W)."""
    norm_other = (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
    relu_types = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)
    gelu_types = (nn.GELU, nn.Sigmoid, nn.SiLU, nn.Hardswish)
    pool_types = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    counts = dict.fromkeys(COMPONENTS, 0)
    # Fraction of real (unpadded) tokens of the window attention running now; 1 outside one.
    token_fraction = [1.0]

    def conv_hook(mod, inp, out):
        if isinstance(mod, DynamicConv2d):
            counts["dynamic_mixing"] += inp[0].shape[0] * mod.weight.numel()  # (B, K) @ (K, K-th of weight)
        if isinstance(mod, nn.ConvTranspose2d):
            counts["conv"] += inp[0].numel() * mod.weight[0].numel()  # each input scattered through a kernel
        else:
            counts["conv"] += out.numel() * mod.weight[0].numel()  # weight[0]: in/groups * k * k
        if mod.bias is not None:
            counts["conv_bias"] += out.numel()

    def linear_hook(mod, inp, out):
        macs = inp[0].numel() * mod.out_features
        counts["linear"] += macs
        counts["linear_unpadded"] += round(macs * token_fraction[-1])

    def window_pre(mod, inp):
        b, h, w, _ = inp[0].shape
        wh, ww = mod.window
        token_fraction.append((h * w) / (math.ceil(h / wh) * wh * math.ceil(w / ww) * ww))

    def window_post(mod, inp, out):
        token_fraction.pop()

    def elem_hook(kind, use_output=False, affine2=False):
        def hook(mod, inp, out):
            n = (out if use_output else inp[0]).numel()
            if affine2 and (getattr(mod, "affine", False) or getattr(mod, "elementwise_affine", False)):
                n *= 2
            counts[kind] += n
        return hook

    handles = []
    for m in model.modules():
        if isinstance(m, (DynamicConv2d, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            handles.append(m.register_forward_hook(elem_hook("bn", affine2=True)))
        elif isinstance(m, norm_other):
            handles.append(m.register_forward_hook(elem_hook("norm_other", affine2=True)))
        elif isinstance(m, relu_types):
            handles.append(m.register_forward_hook(elem_hook("relu")))
        elif isinstance(m, gelu_types):
            handles.append(m.register_forward_hook(elem_hook("gelu")))
        elif isinstance(m, pool_types):
            handles.append(m.register_forward_hook(elem_hook("pool")))
        elif isinstance(m, (nn.Upsample, ScaffoldUpsample)):
            handles.append(m.register_forward_hook(elem_hook("upsample", use_output=True)))
        elif isinstance(m, LocalWindowSelfAttention):
            handles.append(m.register_forward_pre_hook(window_pre))
            handles.append(m.register_forward_hook(window_post))
    sdpa = _SDPACounter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), sdpa:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    counts["attention"] = sdpa.macs
    return counts


def hook_flops(model: nn.Module, x: torch.Tensor, convention: str | Convention = "mmcv-style") -> float:
    """GFLOPs of ``model(x)`` under one of ``CONVENTIONS`` (or a ``Convention``)."""
    conv = CONVENTIONS[convention] if isinstance(convention, str) else convention
    return conv.gflops(hook_components(model, x))


def fit_conventions(components: dict[tuple[str, tuple[int, int]], dict[str, int]],
                    candidates: Iterable[str] | None = None) -> dict[str, tuple[str, float]]:
    """Per family, the convention whose GFLOPs are closest to the paper's figures.

    ``components``: ``{(model, (H, W)): hook_components(...)}`` for models with a paper figure.
    Returns ``{family: (convention, worst relative error)}``; "closest" = smallest worst-case relative
    error over the family's figures (ties: smaller mean error).
    """
    names = list(candidates or CONVENTIONS)
    errors: dict[str, dict[str, list[float]]] = {}
    for (model, hw), comps in components.items():
        fig = paper_figure(model, hw)
        if fig is None:
            continue
        fam = backbones.get_entry(model).family
        for c in names:
            rel = abs(CONVENTIONS[c].gflops(comps) / fig.gflops - 1)
            errors.setdefault(fam, {}).setdefault(c, []).append(rel)
    best = {}
    for fam, per in errors.items():
        c = min(per, key=lambda k: (max(per[k]), sum(per[k]) / len(per[k])))
        best[fam] = (c, max(per[c]))
    return best


# ------------------------------------------------------------------------------------------ static profile
@dataclass(frozen=True)
class ProfileStatic:
    """Parameters and GFLOPs of a pose model (backbone + 1x1 head) at one input size, batch 1."""

    model: str
    input_hw: tuple[int, int]
    params: int
    gflops_fvcore: float
    gflops_paper_convention: float
    convention: str
    paper_params_m: float | None = None
    paper_gflops: float | None = None
    fvcore_by_operator: dict = field(default_factory=dict)  # {operator: GFLOPs}
    fvcore_skipped_ops: dict = field(default_factory=dict)  # {aten op fvcore does not count: calls}
    components: dict = field(default_factory=dict)  # hook_components(...), raw counts
    num_keypoints: int = 17
    overrides: dict = field(default_factory=dict)  # backbone config fields changed from the variant's

    def __post_init__(self):
        if not isinstance(self.params, int) or self.params <= 0:
            raise ValueError(f"ProfileStatic.params={self.params!r}: expected a positive int")
        for f in ("gflops_fvcore", "gflops_paper_convention"):
            v = getattr(self, f)
            if not (isinstance(v, float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"ProfileStatic.{f}={v!r}: expected a finite float >= 0")
        if self.convention not in CONVENTIONS:
            raise ValueError(f"ProfileStatic.convention={self.convention!r}: expected one of {sorted(CONVENTIONS)}")

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def params_diff_m(self) -> float | None:
        """Ours minus the paper's parameter count, in millions (None without a paper figure)."""
        return None if self.paper_params_m is None else self.params_m - self.paper_params_m

    @property
    def gflops_diff(self) -> float | None:
        """Paper-convention GFLOPs minus the paper's figure (None without a paper figure)."""
        return None if self.paper_gflops is None else self.gflops_paper_convention - self.paper_gflops

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_hw"] = list(self.input_hw)
        return d


# Backbone config fields that change neither the parameters nor the forward's arithmetic (gradient
# checkpointing, drop path, BN vs SyncBN): left out of the architecture a cost is cached for.
COST_NEUTRAL_FIELDS = ("with_cp", "drop_path_rate", "norm_layer")


def profile_static(name: str, input_hw: tuple[int, int] | str = (256, 192), *, num_keypoints: int = 17,
                   overrides: dict | None = None) -> ProfileStatic:
    """Params and GFLOPs (fvcore, and the family's paper convention) of ``name``'s pose model at
    ``input_hw`` = (H, W), batch 1, on the CPU; ``overrides`` are backbone config fields (as
    ``create_pose_model`` takes them).  No timing; cached in-process per (name, size, keypoints, overrides).
    An unknown ``name`` raises ``KeyError`` listing the valid ones."""
    costly = {k: v for k, v in (overrides or {}).items() if k not in COST_NEUTRAL_FIELDS}
    return _profile_static(name, parse_hw(input_hw), int(num_keypoints), json.dumps(costly, sort_keys=True))


@functools.lru_cache(maxsize=128)
def _profile_static(name: str, input_hw: tuple[int, int], num_keypoints: int, overrides_json: str) -> ProfileStatic:
    family = backbones.get_entry(name).family  # KeyError naming the valid models
    convention = PAPER_CONVENTION.get(family, "mmcv-style")
    overrides = json.loads(overrides_json)
    model = create_pose_model(name, num_keypoints, init=False, **overrides).eval()
    x = torch.zeros(1, 3, *input_hw)
    fv_total, by_op, skipped = fvcore_flops(model, x)  # needs real tensors (it traces)
    # The hook counter only needs shapes: the meta device skips the arithmetic.
    comps = hook_components(model.to("meta"), x.to("meta"))
    fig = paper_figure(name, input_hw) if (num_keypoints == 17 and not overrides) else None
    return ProfileStatic(
        model=name, input_hw=input_hw, params=count_params(model), gflops_fvcore=fv_total / 1e9,
        gflops_paper_convention=float(CONVENTIONS[convention].gflops(comps)), convention=convention,
        paper_params_m=fig.params_m if fig else None, paper_gflops=fig.gflops if fig else None,
        fvcore_by_operator={k: v / 1e9 for k, v in sorted(by_op.items())}, fvcore_skipped_ops=skipped,
        components=comps, num_keypoints=num_keypoints, overrides=overrides)


# ------------------------------------------------------------------------------------ counts of a live model
def _zeros_like_input(model: nn.Module, input_hw: tuple[int, int]) -> torch.Tensor:
    p = next(model.parameters())
    return torch.zeros(1, 3, *parse_hw(input_hw), device=p.device, dtype=p.dtype)


def count_gflops(model: nn.Module, input_hw: tuple[int, int] | str) -> float:
    """fvcore GFLOPs (1 multiply-add = 1 flop, with the SDPA handle) of one ``model`` forward at batch 1,
    input (1, 3, H, W) on the model's device.  For a registered model, ``profile_static`` is the cached
    equivalent (``profile_static(name, hw).gflops_fvcore``)."""
    return fvcore_flops(model, _zeros_like_input(model, input_hw))[0] / 1e9


def paper_gflops(model: nn.Module, input_hw: tuple[int, int] | str, family: str | None = None) -> float:
    """GFLOPs of one ``model`` forward at batch 1 under ``family``'s paper convention (``PAPER_CONVENTION``;
    default: ``model.family`` of a ``PoseModel``)."""
    family = family or getattr(model, "family", None)
    if family not in PAPER_CONVENTION:
        raise ValueError(f"paper_gflops: family {family!r} has no paper convention; known: {sorted(PAPER_CONVENTION)}")
    return CONVENTIONS[PAPER_CONVENTION[family]].gflops(hook_components(model, _zeros_like_input(model, input_hw)))


__all__ = ["COMPONENTS", "CONVENTIONS", "COST_NEUTRAL_FIELDS", "Convention", "PAPER_CONVENTION", "PaperFigure", "ProfileStatic",
           "count_gflops", "count_params", "default_input_hw", "fit_conventions", "fvcore_flops", "hook_components",
           "hook_flops", "model_params", "paper_figure", "paper_figures", "paper_gflops", "parse_hw", "profile_static",
           "SDPA_OPS", "sdpa_flop_jit"]
