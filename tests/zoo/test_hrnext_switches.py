"""Every HRNeXt ablation switch changes exactly what it claims.

Params and conv multiply-adds are checked against counts derived from the *config* (not from the
model): removing the spatial gate, making the FFN or the local perception static, dropping layer
scale, the branch LayerNorm or one gate branch.  Outputs are compared between models that share every
common weight (filled by the reference rule, keyed by name), so a difference comes from the switch and
not from a different random draw.  The switch defaults still reproduce the hrnext-s reference heatmaps.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import backbones
from backbones.hrnext import DynamicConv2d, HRNeXtConfig
from harness import create_pose_model, load_weights
from harness.experiments.ablation import get_ablation
from support.reference_rule import expected_heatmaps, manifest, reference_input, reference_state_dict, rule_tensor

pytestmark = pytest.mark.usefixtures("one_thread")


DEMO = "hrnext-demo"
HW = (64, 64)  # branch resolutions 16, 8, 4, 2: no rounding in the analytic counts


# ------------------------------------------------------------------------------------------ helpers
def blocks(cfg: HRNeXtConfig, hw=HW) -> list[tuple[int, int, int, int]]:
    """Every HRNeXt block of the config as (channels, kernels, h, w), from the config alone:
    stage 1 at 1/4 (stem width), then stage s (0..2) has num_modules[s] modules of s + 2 branches,
    num_blocks[s] blocks per branch, branch b at 1/(4 * 2^b)."""
    h4, w4 = -(-hw[0] // 4), -(-hw[1] // 4)
    out = [(cfg.stem_width, cfg.stage1_kernels, h4, w4)] * cfg.stage1_blocks
    for s in range(3):
        for _ in range(cfg.num_modules[s]):
            for b in range(s + 2):
                h, w = -(-h4 // 2 ** b), -(-w4 // 2 ** b)
                out += [(cfg.widths[b], cfg.num_kernels[b], h, w)] * cfg.num_blocks[s]
    return out


def branch_widths(cfg: HRNeXtConfig) -> list[int]:
    """Width of every branch (each ends with a LayerNorm when ``branch_norm``)."""
    out = [cfg.stem_width]
    for s in range(3):
        out += [cfg.widths[b] for _ in range(cfg.num_modules[s]) for b in range(s + 2)]
    return out


def dyn_params(cin: int, cout: int, k: int, groups: int, kernels: int) -> int:
    """Extra params of a dynamic conv over the static one: K-1 more kernels, plus the kernel attention
    (1x1 cin->cin/4 no bias, BN weight+bias, 1x1 cin/4->K with bias)."""
    if kernels == 1:  # one kernel is built as a plain conv (the reference's rule)
        return 0
    w = cout * (cin // groups) * k * k
    mid = cin // 4
    return (kernels - 1) * w + cin * mid + 2 * mid + mid * kernels + kernels


def dyn_macs(cin: int, cout: int, k: int, groups: int, kernels: int) -> tuple[int, int]:
    """(attention conv MACs, kernel-mixing MACs) a dynamic conv adds at batch 1: the attention convs
    run on the pooled 1x1 map; mixing is (1, K) @ (K, cout * cin/g * k * k)."""
    if kernels == 1:
        return 0, 0
    mid = cin // 4
    return cin * mid + mid * kernels, kernels * cout * (cin // groups) * k * k


def ffn_convs(c: int, ratio: float) -> list[tuple[int, int, int, int]]:
    hid = int(c * ratio)
    return [(c, hid, 1, 1), (hid, hid, 3, hid), (hid, c, 1, 1)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(conv multiply-adds, dynamic kernel-mixing multiply-adds) of one forward, by module hooks.
    A dynamic conv counts as the conv with its mixed kernel; its attention convs count as convs."""
    counts = [0, 0]

    def hook(mod, inp, out):
        counts[0] += out.numel() * mod.weight[0].numel()  # weight[0]: (in/groups, k, k)
        if isinstance(mod, DynamicConv2d):
            counts[1] += inp[0].shape[0] * mod.weight.numel()

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, DynamicConv2d))]
    with torch.no_grad():
        model.eval()(x)
    for h in hs:
        h.remove()
    return counts[0], counts[1]


def build(name: str = DEMO, **ov) -> nn.Module:
    """Pose model whose every float tensor comes from the reference rule keyed by its name, so two
    variants share the values of every tensor they have in common (same name and shape)."""
    model = create_pose_model(name, **ov).eval()
    sd = {k: rule_tensor(k, list(v.shape)) for k, v in model.state_dict().items() if v.is_floating_point()}
    model.load_state_dict(sd, strict=False)
    return model


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def demo_cfg() -> HRNeXtConfig:
    return backbones.get_config(DEMO)


@pytest.fixture(scope="module")
def base():
    torch.set_num_threads(1)
    model = build()
    x = torch.randn(1, 3, *HW, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    return model, x, out, n_params(model), conv_macs(model, x)


def keys_removed(a: nn.Module, b: nn.Module) -> set[str]:
    return set(a.state_dict()) - set(b.state_dict())


# --------------------------------------------------------------------------------- analytic switches
def test_block_enumeration_matches_the_model(demo_cfg):
    from backbones.hrnext import HRNeXtBlock

    model = create_pose_model(DEMO)
    widths = [m.norm1.num_features for m in model.modules() if isinstance(m, HRNeXtBlock)]
    assert sorted(widths) == sorted(c for c, *_ in blocks(demo_cfg))
    assert len(widths) == 1 + 2 + 3 + 4  # demo: one block per branch


def test_gate_off_removes_exactly_the_gate(base, demo_cfg):
    model, x, out, p0, (m0, mix0) = base
    off = build(gate=False)
    # Per block: dw5x5 (25C) + dw7x7 d3 (49C) + pw (C*C) + three BNs (2C each).
    want_params = sum(25 * c + 49 * c + c * c + 6 * c for c, *_ in blocks(demo_cfg))
    want_macs = sum((25 * c + 49 * c + c * c) * h * w for c, _, h, w in blocks(demo_cfg))
    assert p0 - n_params(off) == want_params
    m1, mix1 = conv_macs(off, x)
    assert (m0 - m1, mix0 - mix1) == (want_macs, 0)
    removed = keys_removed(model, off)
    assert removed and all(".mlp1.spatial_gate." in k for k in removed)
    assert not keys_removed(off, model)  # nothing new
    with torch.no_grad():
        assert rel_diff(off(x), out) > 1e-3


def test_static_ffn_replaces_each_kernel_bank_by_one_kernel(base, demo_cfg):
    model, x, out, p0, (m0, mix0) = base
    static = build(ffn_dynamic=False)
    convs = [(cin, cout, k, g, kk) for c, kk, _, _ in blocks(demo_cfg)
             for cin, cout, k, g in ffn_convs(c, demo_cfg.mlp_ratio)]
    assert p0 - n_params(static) == sum(dyn_params(*cv) for cv in convs)
    att = sum(dyn_macs(*cv)[0] for cv in convs)
    mix = sum(dyn_macs(*cv)[1] for cv in convs)
    assert att > 0 and mix > 0  # the demo keeps dynamic convs on its two high-resolution branches
    m1, mix1 = conv_macs(static, x)
    # The main convs cost the same either way (a dynamic conv runs one mixed kernel per sample).
    assert (m0 - m1, mix0 - mix1) == (att, mix)
    changed = keys_removed(model, static) | keys_removed(static, model)
    assert changed and all(".mlp2." in k for k in changed)
    with torch.no_grad():
        assert rel_diff(static(x), out) > 1e-3


def test_static_dlp_and_kernel_count(base, demo_cfg):
    model, x, out, p0, (m0, mix0) = base
    k = demo_cfg.dlp_kernel_size
    static = build(dlp_dynamic=False)
    assert p0 - n_params(static) == sum(dyn_params(c, c, k, c, kk) for c, kk, _, _ in blocks(demo_cfg))
    m1, mix1 = conv_macs(static, x)
    assert (m0 - m1, mix0 - mix1) == (sum(dyn_macs(c, c, k, c, kk)[0] for c, kk, _, _ in blocks(demo_cfg)),
                                      sum(dyn_macs(c, c, k, c, kk)[1] for c, kk, _, _ in blocks(demo_cfg)))
    changed = keys_removed(model, static) | keys_removed(static, model)
    assert changed and all(".dlp." in key for key in changed)
    with torch.no_grad():
        assert rel_diff(static(x), out) > 1e-3
    # One kernel everywhere = both static switches at once.
    one = create_pose_model(DEMO, num_kernels=(1, 1, 1, 1), stage1_kernels=1)
    both = create_pose_model(DEMO, dlp_dynamic=False, ffn_dynamic=False)
    assert n_params(one) == n_params(both) < p0


def test_layer_scale_branch_norm_and_gate_branches(base, demo_cfg):
    model, x, out, p0, (m0, _) = base
    bl = blocks(demo_cfg)
    no_ls = build(layer_scale_init=None)
    assert p0 - n_params(no_ls) == sum(3 * c for c, *_ in bl)
    assert all("layer_scale_" in k for k in keys_removed(model, no_ls))
    no_bn = build(branch_norm=False)
    assert p0 - n_params(no_bn) == sum(2 * w for w in branch_widths(demo_cfg))
    only5 = build(gate_convs=((5, 1),))  # drops the 7x7 dilation-3 branch and its BN
    assert p0 - n_params(only5) == sum(49 * c + 2 * c for c, *_ in bl)
    assert m0 - conv_macs(only5, x)[0] == sum(49 * c * h * w for c, _, h, w in bl)
    with torch.no_grad():
        for m in (no_ls, no_bn, only5):
            assert rel_diff(m(x), out) > 1e-3


def test_same_shape_switches_change_outputs_only(base):
    model, x, out, p0, (m0, _) = base
    add = build(gate_mode="add")
    assert n_params(add) == p0 and conv_macs(add, x)[0] == m0
    # Same weights, tensor for tensor: only the gating arithmetic differs.
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), add.state_dict().values()))
    with torch.no_grad():
        assert rel_diff(add(x), out) > 1e-3
    # Drop path changes nothing at inference and the training forward of the same weights.
    dp = build(drop_path_rate=0.5)
    assert n_params(dp) == p0
    with torch.no_grad():
        assert torch.equal(dp(x), out)
        xb = x.repeat(2, 1, 1, 1)
        torch.manual_seed(0)
        y_dp = dp.train()(xb)
        torch.manual_seed(0)
        y0 = model.train()(xb)
        model.eval()
    assert rel_diff(y_dp, y0) > 1e-3


def test_bigger_kernels_and_ratio_grow_the_model(base, demo_cfg):
    model, x, out, p0, (m0, _) = base
    k5 = build(dlp_kernel_size=5)
    # Each of a block's K depthwise kernels grows from 9 to 25 taps; the mixed kernel runs once.
    assert n_params(k5) - p0 == sum(kk * c * (25 - 9) for c, kk, *_ in blocks(demo_cfg))
    assert conv_macs(k5, x)[0] - m0 == sum(c * (25 - 9) * h * w for c, _, h, w in blocks(demo_cfg))
    r1 = build(mlp_ratio=1.0)
    assert n_params(r1) < p0
    with torch.no_grad():
        for m in (k5, r1):
            assert m(x).shape == out.shape and rel_diff(m(x), out) > 1e-3


@pytest.mark.parametrize("block", ["hrformer", "hrnet"])
def test_block_swap_builds_and_trains_a_step(block, base):
    from backbones.hrformer import HRFormerBlock
    from backbones.hrnext import HRNeXtBlock
    from backbones.layers import BasicBlock

    _, x, out, _, _ = base
    torch.manual_seed(0)
    model = create_pose_model(DEMO, block=block)
    kinds = {type(m) for m in model.modules()}
    assert HRNeXtBlock not in kinds and {"hrformer": HRFormerBlock, "hrnet": BasicBlock}[block] in kinds
    # Same scaffold: the HRNeXt stem/fusion/head keys are all still there.
    scaffold = {k for k in create_pose_model(DEMO).state_dict() if ".layer1." not in k and ".branches." not in k}
    assert any(".stage4." in k for k in scaffold) and any(k.startswith("head.") for k in scaffold)
    assert scaffold <= set(model.state_dict())
    xb = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(1))
    target = torch.rand(2, 17, 16, 12, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss = ((model.train()(xb) - target) ** 2).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed > 0.9 * len(before)


def test_every_coco_paper_variation_builds_on_the_demo_and_changes_it(base):
    """The GPU grid's switches, applied to the demo model: each builds, runs and changes the output."""
    _, x, out, p0, _ = base
    abl = get_ablation("coco-paper")
    assert len(abl.variations) >= 15
    for v in abl.variations:
        ov = dict(v.overrides)
        model = build(**ov)
        with torch.no_grad():
            y = model(x)
        assert y.shape == out.shape
        if backbones.get_config(DEMO, **ov) == backbones.get_config(DEMO):
            # The demo already has this value (mlp_ratio 2, no drop path): nothing may change.
            assert torch.equal(y, out), v.name
        else:
            assert rel_diff(y, out) > 1e-4, v.name


# ------------------------------------------------------------------------------------ the paper model
def test_switch_defaults_reproduce_the_hrnext_s_reference_heatmaps():
    name = "hrnext-s"
    defaults = {f.name: getattr(HRNeXtConfig(), f.name) for f in dataclasses.fields(HRNeXtConfig)
                if f.name in ("dlp_dynamic", "dlp_kernel_size", "gate", "gate_convs", "gate_mode", "ffn_dynamic",
                              "layer_scale_init", "branch_norm", "block")}
    # The coco-paper grid's baseline cell is the paper model, with every switch spelt out.
    cell = get_ablation("coco-paper").cells()[0]
    assert cell.variation == "baseline"
    model = create_pose_model(name, **{**cell.overrides, **defaults}).eval()
    m = manifest(name)
    report = load_weights(model, reference_state_dict(name))
    assert report.ok
    with torch.no_grad():
        out = model(reference_input(*m["input_hw"])).numpy()
    expected = expected_heatmaps(name)
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() / np.abs(expected).max() < 1e-3


def test_gate_off_on_hrnext_s_matches_the_analytic_count():
    cfg = backbones.get_config("hrnext-s")
    p0 = n_params(create_pose_model("hrnext-s"))
    p1 = n_params(create_pose_model("hrnext-s", gate=False))
    assert p0 - p1 == sum(74 * c + c * c + 6 * c for c, *_ in blocks(cfg))
