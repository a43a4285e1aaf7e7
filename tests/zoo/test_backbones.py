"""Every registered backbone: build, forward/backward, checkpointing, channels_last, state dicts, compile."""
import copy

import pytest
import torch
import torch.nn as nn

import backbones
from harness import create_pose_model

ALL = backbones.list_models()
DEMOS = [n for n in ALL if n.endswith("-demo")]
H, W = 64, 48


def _inputs(n=2, seed=0):
    return torch.randn(n, 3, H, W, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_every_family_and_paper_model():
    assert backbones.list_families() == ["hrformer", "hrnet", "hrnext"]
    assert backbones.list_models(paper_only=True) == sorted(
        ["hrnet-w32", "hrnet-w48", "hrformer-s", "hrformer-b", "hrnext-s", "hrnext-b"])
    for family in backbones.list_families():
        assert f"{family}-demo" in ALL


def test_unknown_model_and_bad_overrides_are_clear():
    with pytest.raises(KeyError, match="unknown model 'hrnet-w33'.*Did you mean.*hrnet-w32.*Valid names"):
        backbones.create_backbone("hrnet-w33")
    with pytest.raises(TypeError, match=r"no field\(s\) \['widht'\].*valid fields"):
        backbones.create_backbone("hrnet-demo", widht=3)
    with pytest.raises(ValueError, match="norm_layer='gn'"):
        backbones.create_backbone("hrnet-demo", norm_layer="gn")
    with pytest.raises(ValueError, match="drop_path_rate"):
        backbones.create_backbone("hrformer-demo", drop_path_rate=1.5)
    with pytest.raises(ValueError, match="num_heads"):
        backbones.create_backbone("hrformer-demo", num_heads=(3, 3, 3, 3))
    with pytest.raises(ValueError, match="gate_mode"):
        backbones.create_backbone("hrnext-demo", gate_mode="max")
    with pytest.raises(ValueError, match="num_keypoints"):
        create_pose_model("hrnet-demo", num_keypoints=0)


def test_demo_variants_are_small():
    for name in DEMOS:
        n = sum(p.numel() for p in create_pose_model(name).parameters())
        assert 1e6 < n < 3e6, (name, n)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name):
    model = create_pose_model(name, num_keypoints=5).train()
    out = model(_inputs())
    assert out.shape == (2, 5, H // 4, W // 4)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("name", DEMOS + ["hrnet-w32", "hrformer-s", "hrnext-s"])
def test_gradient_checkpointing_gives_same_gradients(name):
    torch.manual_seed(0)
    ref = create_pose_model(name, drop_path_rate=0.0).train()
    cp_model = copy.deepcopy(ref)
    cp_model.set_grad_checkpointing(True)
    assert cp_model.backbone.with_cp
    x = _inputs()
    grads = []
    for m in (ref, cp_model):
        m(x).square().sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for g_ref, g_cp in zip(*grads):
        torch.testing.assert_close(g_cp, g_ref, rtol=1e-4, atol=1e-7)


def test_with_cp_config_field_enables_checkpointing():
    model = create_pose_model("hrnext-demo", with_cp=True)
    assert model.backbone.with_cp and model.backbone.layer1.with_cp


@pytest.mark.parametrize("name", ALL)
def test_channels_last_gives_same_outputs(name):
    model = create_pose_model(name).eval()
    x = _inputs(seed=1)
    with torch.no_grad():
        ref = model(x)
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def _cl(t):
    return t.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ALL)
def test_channels_last_families_keep_weights_and_activations_channels_last(name):
    model = create_pose_model(name, drop_path_rate=0.0)
    cl = model.backbone.channels_last
    assert cl == (model.family in ("hrnet", "hrformer"))
    kernels = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] * p.shape[2] * p.shape[3] > 1]
    assert all(map(_cl, kernels)) == cl
    # the same seed draws the same initial weights in either layout
    torch.manual_seed(7)
    drawn = create_pose_model(name, drop_path_rate=0.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(drawn.backbone), "channels_last", False)
        torch.manual_seed(7)
        drawn_contiguous = create_pose_model(name, drop_path_rate=0.0)
    assert all(p.is_contiguous() for p in drawn_contiguous.parameters())
    for (k, v), w in zip(drawn.state_dict().items(), drawn_contiguous.state_dict().values()):
        assert torch.equal(v, w), k
    # loading contiguous tensors (another implementation's checkpoint) keeps the layout
    model.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    assert all(map(_cl, kernels)) == cl and all(map(_cl, (p for p in model.parameters() if p.dim() == 4))) == cl
    if not cl:
        return
    # the same weights run in the contiguous layout: same outputs and gradients (float64: rounding only)
    model = model.double().train()
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    plain.backbone.channels_last = False
    x = _inputs(seed=5).double()
    out, out2 = model(x), plain(x)
    assert _cl(out) and not _cl(out2)
    out.square().sum().backward()
    out2.square().sum().backward()
    torch.testing.assert_close(out, out2, rtol=1e-10, atol=1e-12 * out2.abs().max().item())
    biggest = max(p.grad.abs().max().item() for p in plain.parameters())  # some are structural zeros
    for (k, a), b in zip(model.named_parameters(), plain.parameters()):
        assert a.dim() != 4 or _cl(a.grad), k
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12 * biggest, msg=k)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name, tmp_path):
    src = create_pose_model(name).eval()
    with torch.no_grad():  # make BN statistics non-trivial so a lost buffer would show
        for m in src.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    dst = create_pose_model(name).eval()
    dst.load_state_dict(torch.load(tmp_path / "w.pth", weights_only=True))
    x = _inputs(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))


def test_syncbn_and_drop_path_options():
    model = create_pose_model("hrnext-demo", norm_layer="syncbn", drop_path_rate=0.2)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.2) and rates == sorted(rates)
    model.eval()
    with torch.no_grad():  # SyncBN without a process group behaves as BN in one process
        assert model(_inputs()).shape == (2, 17, H // 4, W // 4)


def test_hrnext_training_needs_batch_of_two():
    model = create_pose_model("hrnext-demo").train()
    with pytest.raises(ValueError, match="batch size >= 2"):
        model(_inputs(n=1))
    static = create_pose_model("hrnext-demo", dlp_dynamic=False, ffn_dynamic=False).train()
    static(_inputs(n=1))  # static convs have no kernel attention


@pytest.mark.slow
@pytest.mark.parametrize("name", DEMOS)
def test_torch_compile(name):
    model = create_pose_model(name).eval()
    x = _inputs(seed=3)
    with torch.no_grad():
        ref = model(x)
        out = torch.compile(model)(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hw", [(4, 3), (8, 6), (16, 12), (1, 1), (2, 20)])
def test_same_conv_skips_padding_only_taps_exactly(hw):
    # HRNeXt's 7x7 dilation-3 gate on small maps: cropping the taps that only see zeros changes nothing.
    from backbones.layers import SameConv2d

    torch.manual_seed(0)
    conv = SameConv2d(6, 6, 7, dilation=3, groups=6).double()
    x = torch.randn(2, 6, *hw, dtype=torch.float64, requires_grad=True)
    y = conv(x)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, conv.weight), g)
    ref = torch.nn.functional.conv2d(x, conv.weight, None, padding=9, dilation=3, groups=6)
    rx, rw = torch.autograd.grad(ref, (x, conv.weight), g)
    assert y.shape == ref.shape == x.shape
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx, rx, rtol=0, atol=1e-12)
    torch.testing.assert_close(gw, rw, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="kernel_size=4 must be odd"):
        SameConv2d(6, 6, 4)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("hw", [(64, 48), (16, 12), (8, 6), (10, 11), (32, 24)])
def test_dilated_depthwise_phase_conv_equals_the_dilated_conv(hw, channels_last):
    # HRNeXt's 7x7 dilation-3 gate: the phase-decomposed conv gives the plain conv's outputs and gradients
    from backbones.layers import SameConv2d

    torch.manual_seed(0)
    conv = SameConv2d(5, 5, 7, dilation=3, groups=5, bias=True).double()
    x = torch.randn(2, 5, *hw, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = conv(x)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, conv.weight, conv.bias), g)
    ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=9, dilation=3, groups=5)
    want = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spatial_mean_gradient_is_means_bit_for_bit_without_a_full_size_tensor(dtype):
    # HRNeXt's kernel-attention GAP: same forward and the same gradient bits as x.mean((2, 3)), also when
    # the input has a second consumer (the conv the attention steers), but handed over as a broadcast view.
    from backbones.layers import spatial_mean

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 7, 5, dtype=dtype, generator=g).requires_grad_()
    w = torch.randn(6, 6, 3, 3, dtype=dtype, generator=g)
    gy, ga = torch.randn(4, 6, 7, 5, dtype=dtype, generator=g), torch.randn(4, 6, 1, 1, dtype=dtype, generator=g)
    assert torch.equal(spatial_mean(x), x.mean((2, 3), keepdim=True))
    (alone,) = torch.autograd.grad(spatial_mean(x), x, ga)
    assert alone.stride()[-2:] == (0, 0)  # a broadcast, not a materialised (B, C, H, W) tensor
    assert torch.equal(alone, torch.autograd.grad(x.mean((2, 3), keepdim=True), x, ga)[0])

    def loss(mean):
        return (torch.nn.functional.conv2d(x, w, padding=1) * gy).sum() + (mean(x) * ga).sum()

    got, = torch.autograd.grad(loss(spatial_mean), x)
    want, = torch.autograd.grad(loss(lambda t: t.mean((2, 3), keepdim=True)), x)
    assert torch.equal(got, want)


def _layout(t):
    from backbones.layers import is_channels_last
    return "channels_last" if is_channels_last(t) else ("contiguous" if t.is_contiguous() else "strided")


@pytest.mark.parametrize("x_cl,grad_cl", [(True, False), (False, True), (True, True)])
def test_batchnorm_backward_gets_the_gradient_in_its_input_layout(x_cl, grad_cl):
    # backbones.layers.BatchNorm2d: the same outputs, running statistics and gradients as nn.BatchNorm2d, but
    # native_batch_norm_backward sees the gradient in the input's layout (mixed layouts take a slow CPU path).
    from torch.utils._python_dispatch import TorchDispatchMode

    from backbones.layers import BatchNorm2d, make_norm

    assert type(make_norm("bn", 4)) is BatchNorm2d
    cl = torch.channels_last
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 5, 6, dtype=torch.float64, generator=g)
    gy = torch.randn(3, 4, 5, 6, dtype=torch.float64, generator=g)
    x0 = x0.contiguous(memory_format=cl) if x_cl else x0
    gy = gy.contiguous(memory_format=cl) if grad_cl else gy
    seen = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.native_batch_norm_backward.default:
                seen.append((_layout(args[0]), _layout(args[1])))
            return func(*args, **(kwargs or {}))

    results = []
    for cls in (torch.nn.BatchNorm2d, BatchNorm2d):
        bn = cls(4).double()
        x = x0.clone().requires_grad_()
        with Spy():
            y = bn(x)
            y.backward(gy)
        results.append((y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var))
        assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    want = "channels_last" if x_cl else "contiguous"
    assert seen[0] == (_layout(gy), want)  # the plain layer: whatever arrived
    assert seen[1] == (want, want)  # ours: the gradient in the input's layout


def test_in_layout_of_copies_only_across_layouts():
    from backbones.layers import in_layout_of

    a = torch.randn(2, 3, 4, 5)
    b = a.contiguous(memory_format=torch.channels_last)
    assert in_layout_of(a, a) is a and in_layout_of(b, b) is b
    assert _layout(in_layout_of(a, b)) == "channels_last" and torch.equal(in_layout_of(a, b), a)
    assert _layout(in_layout_of(b, a)) == "contiguous" and torch.equal(in_layout_of(b, a), a)


@pytest.mark.parametrize("kernel_size,groups", [(3, 6), (1, 1)])
def test_dynamic_conv_keeps_channels_last_and_the_same_values(kernel_size, groups):
    # HRNeXt's dynamic conv on channels-last input folds the batch into a channels-last (1, B*C, H, W) map
    # (depthwise) or multiplies the token view; outputs and gradients equal the contiguous computation.
    from backbones.hrnext import DynamicConv2d

    torch.manual_seed(0)
    conv = DynamicConv2d(6, 6, kernel_size, padding=kernel_size // 2, groups=groups, num_kernels=3).double()
    x0 = torch.randn(4, 6, 7, 5, dtype=torch.float64)
    gy = torch.randn(4, 6, 7, 5, dtype=torch.float64)
    out = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        conv.zero_grad()
        x = x0.clone(memory_format=fmt).requires_grad_()
        y = conv(x)
        y.backward(gy)
        out[fmt] = (y.detach(), x.grad, conv.weight.grad.clone())
    y_cl = out[torch.channels_last][0]
    if kernel_size == 3:
        assert _layout(y_cl) == "channels_last"
    for a, b in zip(out[torch.contiguous_format], out[torch.channels_last]):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel_size,groups,bias", [(3, 6, False), (1, 1, False), (3, 6, True), (1, 1, True)])
def test_dynamic_conv_folds_the_batchnorm_and_gelu_after_it(kernel_size, groups, bias, channels_last, dtype):
    # Inference: BN(conv(x)) then GELU equals the conv with the BN folded into its kernel bank (+ a shift)
    # running the GELU itself (one oneDNN call for the batch-folded depthwise conv on CPU float32).
    from backbones.hrnext import DynamicConv2d
    from backbones.layers import fold_batchnorm

    torch.manual_seed(0)
    conv = DynamicConv2d(6, 6, kernel_size, padding=kernel_size // 2, groups=groups, num_kernels=3, bias=bias)
    if bias:
        torch.nn.init.uniform_(conv.bias, -0.3, 0.3)
    seq = _random_bn_statistics(torch.nn.Sequential(conv, torch.nn.BatchNorm2d(6)), seed=3).to(dtype).eval()
    x = torch.randn(4, 6, 7, 5, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = torch.nn.functional.gelu(seq(x))
        fused = fold_batchnorm(copy.deepcopy(seq))
        assert isinstance(fused[1], torch.nn.Identity) and fused[0].shift is not None
        fused[0].act = "gelu"
        got = fused(x)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(got, want, **tol)
    with pytest.raises(RuntimeError, match="folded in already"):
        fused[0].fold_batchnorm(torch.ones(6, dtype=dtype), torch.zeros(6, dtype=dtype))


def test_hrnext_trains_to_the_same_gradients_in_channels_last():
    # The whole training step (BN layout guard, channels-last dynamic convs, layout-matched residuals):
    # float64 gradients of every parameter equal those of the contiguous model.
    torch.manual_seed(0)
    model = create_pose_model("hrnext-demo").double().train()
    x = _inputs(seed=4).double()
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        m = copy.deepcopy(model).to(memory_format=fmt)
        m(x.contiguous(memory_format=fmt)).square().mean().backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-9, atol=1e-12, msg=n)


def _random_bn_statistics(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                for t, lo, hi in ((m.running_mean, -0.2, 0.2), (m.running_var, 0.5, 1.5),
                                  (m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    return model


@pytest.mark.parametrize("name", ALL)
def test_fuse_folds_batchnorm_and_keeps_the_outputs(name):
    model = _random_bn_statistics(create_pose_model(name)).eval()
    fused = model.fuse()
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    left = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    if name.startswith("hrnext"):  # only the blocks' pre-norms stay (each feeds a residual branch and its conv)
        from backbones.hrnext import DynamicConv2d, HRNeXtBlock

        assert left == 2 * sum(isinstance(m, HRNeXtBlock) for m in fused.modules())
        dynamic = [m for m in fused.modules() if isinstance(m, DynamicConv2d)]
        assert dynamic and all(m.shift is not None for m in dynamic)
        assert {m.act for m in dynamic} == {None, "gelu"}  # the depthwise ones run their GELU
    else:
        assert left == 0
    assert not model.fused and fused.fused and not fused.training
    x = _inputs(seed=4)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)
        m64 = copy.deepcopy(model).double()  # fold in float64 too: folding in float32 rounds the weights
        f64 = m64.fuse()
        ref = m64(x.double())
        torch.testing.assert_close(f64(x.double()), ref, rtol=1e-10, atol=1e-12 * ref.abs().max().item())
    with pytest.raises(RuntimeError, match="inference only"):
        fused.train()
    from backbones.layers import PointwiseConv2d

    pointwise = sum(isinstance(m, PointwiseConv2d) for m in fused.modules())
    relus = sum(isinstance(m, torch.nn.ReLU) for m in fused.modules())
    if name.startswith("hrnet"):  # every conv followed by a ReLU runs with it (blocks, stem, transitions)
        assert pointwise > 0 and fused.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    elif name.startswith("hrformer"):  # its stem, stage-1 Bottlenecks and every FFN conv (GELU)
        from backbones.hrformer import CrossFFN

        ffns = [m for m in fused.modules() if isinstance(m, CrossFFN)]
        assert pointwise > 0 and ffns and all(isinstance(m.fc2, PointwiseConv2d) for m in ffns)
    else:  # HRNeXt: the global FFN's static 1x1 convs (GELU; the inner shortcut)
        assert pointwise > 0
    assert relus <= sum(isinstance(m, torch.nn.ReLU) for m in model.modules())


@pytest.mark.parametrize("act", [None, "relu", "gelu"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv_equals_conv_add_relu(act, residual, channels_last):
    """PointwiseConv2d's one-call oneDNN path (CPU fp32, no grad) and its op-by-op path equal conv [+ x] [relu]."""
    from backbones.layers import PointwiseConv2d

    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, stride=1, padding=1, bias=True)
    x, other = torch.randn(2, 8, 12, 10, generator=g), torch.randn(2, 8, 12, 10, generator=g)
    if channels_last:
        x, other = (t.contiguous(memory_format=torch.channels_last) for t in (x, other))
    pw = PointwiseConv2d.wrap(conv, act)
    assert pw.weight is conv.weight and pw.bias is conv.bias and "act=" in repr(pw)
    expect = conv(x) + (other if residual else 0)
    expect = {None: expect, "relu": expect.relu(), "gelu": torch.nn.functional.gelu(expect)}[act]
    with torch.no_grad():
        torch.testing.assert_close(pw(x, other if residual else None), expect, rtol=1e-5, atol=1e-5)
    got = pw(x, other if residual else None)  # autograd on: the op-by-op path, differentiable
    torch.testing.assert_close(got, expect)
    got.sum().backward()
    assert conv.weight.grad is not None
    with torch.no_grad():  # float64 takes the op-by-op path too
        pw64 = PointwiseConv2d.wrap(copy.deepcopy(conv).double(), act)
        ref = copy.deepcopy(conv).double()(x.double()) + (other.double() if residual else 0)
        torch.testing.assert_close(pw64(x.double(), other.double() if residual else None),
                                   {None: ref, "relu": ref.relu(), "gelu": torch.nn.functional.gelu(ref)}[act])


def test_pointwise_conv_refuses_what_it_cannot_run():
    from backbones.layers import PointwiseConv2d, SameConv2d

    with pytest.raises(TypeError, match="plain zero-padded"):
        PointwiseConv2d.wrap(SameConv2d(4, 4, 3), "relu")
    with pytest.raises(TypeError, match="plain zero-padded"):
        PointwiseConv2d.wrap(torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "relu")
    with pytest.raises(ValueError, match="act='silu'"):
        PointwiseConv2d.wrap(torch.nn.Conv2d(4, 4, 3), "silu")


@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_nn_linear_and_keeps_hooks(bias, monkeypatch):
    """backbones.layers.Linear: oneDNN's matmul with the bias in its epilogue (CPU fp32, no grad), else
    F.linear; same parameters and keys as nn.Linear, and forward hooks see it on either path."""
    from backbones.layers import Linear

    g = torch.Generator().manual_seed(0)
    plain = torch.nn.Linear(12, 36, bias=bias)
    layer = Linear(12, 36, bias=bias)
    layer.load_state_dict(plain.state_dict())
    assert layer.state_dict().keys() == plain.state_dict().keys()
    seen = []
    layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    x = torch.randn(5, 7, 12, generator=g)
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(a[0].shape) or real(*a))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain(x), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(layer(x.transpose(0, 1)), plain(x.transpose(0, 1)), rtol=1e-6, atol=1e-6)
        assert len(calls) == 2  # the oneDNN path ran
        layer64, plain64 = copy.deepcopy(layer).double(), copy.deepcopy(plain).double()
        assert torch.equal(layer64(x.double()), plain64(x.double()))  # float64: F.linear, exactly
        assert len(calls) == 2
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # CPU autocast: F.linear, in bf16
        assert layer(x).dtype == torch.bfloat16 and len(calls) == 2
    y = layer(x)  # autograd on: F.linear, differentiable
    assert y.grad_fn is not None and len(seen) == 5  # two oneDNN calls, the float64 copy, autocast, this one
    y.sum().backward()
    assert layer.weight.grad is not None


def test_cost_counters_see_hrformer_attention_and_linears_on_the_inference_path():
    """The module-hook counter runs without autograd, where HRFormer takes the fused kernels: its linears
    and the attention matmuls must still be counted."""
    from harness.profile.counting import hook_components

    model = create_pose_model("hrformer-demo")
    counts = hook_components(model, _inputs(n=1))
    assert counts["linear"] > 0 and counts["attention"] > 0


@pytest.mark.parametrize("heads", [1, 3])
def test_hook_counter_counts_window_attention_exactly(heads):
    """The module-hook counter counts HRFormer's window attention exactly: q K^T and softmax(.) V once per
    (padded) window and head, from the F.scaled_dot_product_attention call its inference path makes."""
    from backbones.hrformer import LocalWindowSelfAttention
    from harness.profile.counting import hook_components

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = LocalWindowSelfAttention(12 * heads, heads, window_size=5)

        def forward(self, x):
            return self.attn(x.permute(0, 2, 3, 1))

    x = torch.randn(2, 12 * heads, 9, 13)  # padded to 10x15: 2 x 3 windows of 25 tokens per image
    windows, tokens, d = 2 * 2 * 3, 25, 12
    assert hook_components(Wrap(), x)["attention"] == windows * heads * tokens * tokens * 2 * d


@pytest.mark.parametrize("pad_mask", [False, True])
@pytest.mark.parametrize("rpe", [True, False])
@pytest.mark.parametrize("heads", [1, 3])
def test_window_attention_inference_path_equals_training_path(pad_mask, rpe, heads):
    """HRFormer's window attention without autograd (F.scaled_dot_product_attention with a 4-d mask, oneDNN
    linears) equals the written-out maths it runs in training, float64 to 1e-12 and float32 to rounding."""
    from backbones.hrformer import LocalWindowSelfAttention

    g = torch.Generator().manual_seed(1)
    attn = LocalWindowSelfAttention(12 * heads, heads, window_size=5, with_rpe=rpe, with_pad_mask=pad_mask)
    if rpe:
        with torch.no_grad():
            attn.attn.relative_position_bias_table.normal_(generator=g)
    x = torch.randn(2, 9, 13, 12 * heads, generator=g)  # 9x13: padded to 10x15, so padded tokens exist
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        a, xd = copy.deepcopy(attn).to(dtype), x.to(dtype)
        train = a(xd)  # grad enabled: the written-out path
        assert train.grad_fn is not None
        with torch.no_grad():
            infer = a(xd)
        assert infer.shape == xd.shape
        torch.testing.assert_close(infer, train.detach(), rtol=tol, atol=tol)
