"""harness.profile and `python -m harness profile`: params, GFLOPs conventions, runtime, records."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness import profile as prof

PAPER = [("hrnet-w32", (256, 192)), ("hrnet-w32", (384, 288)), ("hrnet-w48", (256, 192)), ("hrnet-w48", (384, 288)),
         ("hrformer-s", (256, 192)), ("hrformer-s", (384, 288)), ("hrformer-b", (256, 192)),
         ("hrformer-b", (384, 288)), ("hrnext-s", (256, 192)), ("hrnext-b", (384, 288))]
SIX = ["hrnet-w32", "hrnet-w48", "hrformer-s", "hrformer-b", "hrnext-s", "hrnext-b"]


@pytest.mark.parametrize("name", SIX)
def test_params_equal_the_papers_to_0_1m(name):
    fig = prof.paper_figure(name, prof.default_input_hw(name))
    assert fig is not None
    assert abs(prof.model_params(name) / 1e6 - fig.params_m) < 0.1 - 1e-9  # the paper rounds to 0.1 M


@pytest.fixture(scope="module")
def paper_components():
    """Hook counts of the ten paper (model, input) pairs; shapes only (meta device), so it is quick."""
    from harness.models import create_pose_model

    out = {}
    for name, hw in PAPER:
        model = create_pose_model(name, init=False).to("meta")
        out[(name, hw)] = prof.hook_components(model, torch.zeros(1, 3, *hw, device="meta"))
    return out


def test_paper_convention_reproduces_every_paper_figure(paper_components):
    import backbones

    for (name, hw), comps in paper_components.items():
        fam = backbones.get_entry(name).family
        g = prof.CONVENTIONS[prof.PAPER_CONVENTION[fam]].gflops(comps)
        paper = prof.paper_figure(name, hw).gflops
        if fam == "hrformer":  # no convention matches all four HRFormer figures; the best is within 1.5 %
            assert abs(g / paper - 1) < 0.015, (name, hw, g, paper)
        else:  # HRNet exactly (to the paper's rounding); HRNeXt-B within 0.07 G
            assert abs(g - paper) < 0.07, (name, hw, g, paper)
    # HRNet's own convention reproduces all four HRNet figures to the printed digit.
    for (name, hw), comps in paper_components.items():
        if name.startswith("hrnet"):
            assert round(prof.CONVENTIONS["hrnet-summary"].gflops(comps), 1) == prof.paper_figure(name, hw).gflops


def test_the_chosen_conventions_are_the_best_fit(paper_components):
    best = prof.fit_conventions(paper_components)
    assert {fam: c for fam, (c, _) in best.items()} == prof.PAPER_CONVENTION
    assert best["hrnet"][1] < 0.005 and best["hrnext"][1] < 0.01 and best["hrformer"][1] < 0.015


def test_fvcore_gflops_of_hrnext_s_and_the_static_profile():
    st = prof.profile_static("hrnext-s", (256, 192))
    assert 2.4 <= st.gflops_fvcore <= 2.8
    assert st.params == prof.model_params("hrnext-s")
    assert st.convention == "mmcv-style-2^30"
    assert st.paper_gflops == 2.5 and st.paper_params_m == 9.5
    assert abs(st.gflops_diff) < 0.05 and abs(st.params_diff_m) < 0.1
    # fvcore's per-operator split adds up, and the dynamic 1x1 convs show up as matmuls.
    assert math.isclose(sum(st.fvcore_by_operator.values()), st.gflops_fvcore, rel_tol=1e-9)
    assert st.fvcore_by_operator["matmul"] > 0.5
    assert "aten::gelu" in st.fvcore_skipped_ops
    assert prof.profile_static("hrnext-s", (256, 192)) is st  # cached in-process
    d = st.to_dict()
    assert d["input_hw"] == [256, 192] and d["params"] == st.params


class _Attn(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_is_counted_by_fvcore_and_the_hooks():
    from fvcore.nn import FlopCountAnalysis

    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 6)
    expected = 2 * 3 * 5 * 7 * 4 + 2 * 3 * 5 * 7 * 6  # Q K^T and softmax(.) V
    fca = FlopCountAnalysis(_Attn(), (q, k, v)).set_op_handle(**{op: prof.sdpa_flop_jit for op in prof.SDPA_OPS})
    fca.unsupported_ops_warnings(False)
    assert fca.total() == expected
    # Without our handle fvcore counts nothing for it: this is why the handle exists.
    plain = FlopCountAnalysis(_Attn(), (q, k, v))
    plain.unsupported_ops_warnings(False)
    assert plain.total() == 0

    class Wrap(nn.Module):
        def forward(self, x):
            return _Attn()(x, k, v)

    assert prof.hook_components(Wrap(), q)["attention"] == expected


@pytest.mark.parametrize("kernel,groups,out_ch", [(1, 1, 16), (3, 8, 8)])
def test_dynamic_conv_counts(kernel, groups, out_ch):
    """fvcore sees the kernel mixing as a matmul and the per-sample conv as a batched matmul (1x1) or a
    grouped conv with the batch folded into the groups (3x3): both must equal the per-sample conv."""
    from backbones.hrnext import DynamicConv2d

    b, c, h, w, kk = 2, 8, 6, 5, 4
    m = DynamicConv2d(c, out_ch, kernel, padding=kernel // 2, groups=groups, num_kernels=kk).eval()
    x = torch.randn(b, c, h, w)
    conv_macs = b * out_ch * h * w * (c // groups) * kernel * kernel
    mixing = b * kk * out_ch * (c // groups) * kernel * kernel
    attn_convs = b * (c * (c // 4) + (c // 4) * kk)  # the kernel-attention 1x1 convs on the pooled map
    total, by_op, _ = prof.fvcore_flops(m, x)
    assert total == conv_macs + mixing + attn_convs + by_op.get("batch_norm", 0)
    comps = prof.hook_components(m, x)
    assert comps["conv"] == conv_macs + attn_convs
    assert comps["dynamic_mixing"] == mixing


def test_conventions_and_static_validation():
    with pytest.raises(ValueError, match="components"):
        prof.Convention("x", "bad", ("conv", "nope"))
    with pytest.raises(ValueError, match="divisor"):
        prof.Convention("x", "bad", ("conv",), 0)
    with pytest.raises(ValueError, match="ProfileStatic.params"):
        prof.ProfileStatic("m", (256, 192), 0, 1.0, 1.0, "mmcv-style")
    with pytest.raises(ValueError, match="ProfileStatic.gflops_fvcore"):
        prof.ProfileStatic("m", (256, 192), 10, float("nan"), 1.0, "mmcv-style")
    with pytest.raises(ValueError, match="ProfileStatic.convention"):
        prof.ProfileStatic("m", (256, 192), 10, 1.0, 1.0, "flops-by-feel")
    assert prof.parse_hw("384x288") == (384, 288) and prof.parse_hw((64, 48)) == (64, 48)
    for bad in ("256", "axb", "16x16", "1x2x3"):
        with pytest.raises(ValueError, match="HxW"):
            prof.parse_hw(bad)
    with pytest.raises(KeyError, match="Valid names"):
        prof.profile_static("hrnet-w33", (256, 192))


def test_profile_runtime_rows_and_skips():
    rt = prof.profile_runtime("hrnet-demo", (64, 48), batch_sizes=(1, 2), threads=1, warmup=0, iters=2,
                              progress=False)
    assert rt["threads"] == 1 and rt["device"] == "cpu" and rt["input_size"] == [64, 48]
    assert [(r["mode"], r["batch"]) for r in rt["results"]] == [("infer", 1), ("infer", 2), ("train", 1), ("train", 2)]
    for r in rt["results"]:
        assert 0 < r["min_ms"] <= r["median_ms"]
        assert math.isclose(r["throughput_ips"], r["batch"] / (r["median_ms"] / 1e3))
        assert r["peak_mem_mb"] >= 0 and "RSS" in r["mem_kind"]
    assert rt["machine"]["torch"] == torch.__version__
    # HRNeXt cannot train at batch 1 (batch-normalised kernel attention): a recorded skip, not a crash.
    rt = prof.profile_runtime("hrnext-demo", (64, 48), batch_sizes=(1,), modes=("train",), warmup=0, iters=1,
                              progress=False)
    assert "batch size >= 2" in rt["results"][0]["skipped"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_sizes=(0,)), "batch_sizes"), (dict(modes=("eval",)), "modes"), (dict(iters=0), "iters"),
    (dict(threads=0), "threads"),
])
def test_profile_runtime_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prof.profile_runtime("hrnet-demo", (64, 48), progress=False, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_profile_runtime_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        prof.profile_runtime("hrnet-demo", (64, 48), device="cuda", progress=False)


def test_write_profile_record_round_trips_through_the_results_store(tmp_path):
    from harness.results import load_results

    st = prof.profile_static("hrnet-demo", (64, 48))
    rt = {"device": "cpu", "threads": 1, "results": [{"mode": "infer", "batch": 1, "median_ms": 5.0}],
          "machine": prof.machine_info("cpu", 1)}
    path = prof.write_profile_record(st, rt, root=tmp_path / "profiles")
    assert path.name == "hrnet-demo_64x48_cpu.json"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    rec = json.loads(path.read_text())
    assert rec["kind"] == "profile" and rec["params"] == st.params and rec["convention"] == "hrnet-summary"
    assert rec["latency"]["results"][0]["median_ms"] == 5.0 and rec["hardware"]["threads"] == 1
    df = load_results(tmp_path, strict=True)
    row = df[df["kind"] == "profile"].iloc[0]
    assert row["model"] == "hrnet-demo" and int(row["params"]) == st.params
    assert math.isclose(row["gflops"], st.gflops_paper_convention)


def test_cli_profile(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "p.json"
    rc = main(["profile", "hrformer-demo", "--input", "64x48", "--batch", "2", "--modes", "infer", "--warmup", "0",
               "--iters", "1", "--threads", "1", "--no-save", "--no-progress", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "GFLOPs, fvcore" in text and "paper convention `conv+linear-unpadded`" in text and "| infer | 2 |" in text
    res = json.loads(out.read_text())
    assert res["static"]["params"] == prof.model_params("hrformer-demo")
    assert res["runtime"]["results"][0]["batch"] == 2
    assert main(["profile", "hrformer-demo", "--input", "64by48", "--static-only", "--no-save"]) == 2
    assert main(["profile", "hrformer-dem0", "--static-only", "--no-save"]) == 2
    assert "Valid names" in capsys.readouterr().err


@pytest.mark.parametrize("exp_name", ["demo-hrnet", "demo-hrformer", "demo-hrnext"])
def test_result_records_carry_the_counted_params_and_gflops(exp_name):
    """engine.builders.make_record: params counted on the model, GFLOPs of the experiment's architecture
    (the family's paper convention, fvcore's in extra), equal to counting the live model directly."""
    from harness.config import get_experiment
    from harness.engine import builders

    exp = get_experiment(exp_name, ["model.overrides.drop_path_rate=0.1"])  # cost-neutral override
    hw = tuple(exp.data.input_size)
    model = builders.build_model(exp)
    rec = builders.make_record(exp, model=model, dataset_name="coco", split="val", boxes="gt",
                               metrics={"AP": 0.5}, checkpoint=None)
    st = prof.profile_static(exp.model.name, hw)
    assert rec["params"] == st.params == prof.count_params(model) == prof.model_params(exp.model.name)
    assert rec["gflops"] == st.gflops_paper_convention > 0
    assert rec["extra"]["gflops_fvcore"] == st.gflops_fvcore > 0
    assert rec["extra"]["gflops_convention"] == prof.PAPER_CONVENTION[exp.family]
    assert math.isclose(prof.paper_gflops(model, hw), rec["gflops"], rel_tol=1e-12)
    assert math.isclose(prof.count_gflops(model, hw), rec["extra"]["gflops_fvcore"], rel_tol=1e-12)
    assert model.training  # counting leaves the model's mode alone


def test_costs_depend_on_architecture_overrides_only():
    base = prof.profile_static("hrnext-demo", (64, 48))
    assert prof.profile_static("hrnext-demo", (64, 48), overrides={"with_cp": True, "norm_layer": "syncbn"}) is base
    fewer = prof.profile_static("hrnext-demo", (64, 48), num_keypoints=14)
    assert fewer.params < base.params and fewer.paper_gflops is None
    assert prof.profile_static("hrnext-demo", (128, 96)).gflops_fvcore > 3.5 * base.gflops_fvcore
    with pytest.raises(ValueError, match="no paper convention"):
        prof.paper_gflops(nn.Conv2d(3, 4, 3), (64, 48))
