"""load_weights: layout detection and conversion, and clear refusals of checkpoints that do not fit."""
import re

import pytest
import torch

from harness import create_pose_model, load_weights
from harness.weights import WeightsError, convert_state_dict, detect_layout
from support.reference_rule import manifest, reference_state_dict


def _outputs_equal(a, b):
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_own_layout_and_training_wrappers(tmp_path):
    src = create_pose_model("hrnet-demo")
    for wrapper in ({"model": src.state_dict(), "optimizer": {}, "epoch": 3},
                    {"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}):
        torch.save(wrapper, tmp_path / "ckpt.pth")
        dst = create_pose_model("hrnet-demo")
        report = load_weights(dst, tmp_path / "ckpt.pth")
        assert report.layout == "hrbench" and report.ok
        _outputs_equal(src, dst)


def test_mmpose_0x_head_is_renamed():
    src = create_pose_model("hrformer-demo")
    sd = {("keypoint_head." + k[5:] if k.startswith("head.") else k): v for k, v in src.state_dict().items()}
    assert detect_layout(sd) == "mmpose-0.x"
    dst = create_pose_model("hrformer-demo")
    assert load_weights(dst, sd).ok
    _outputs_equal(src, dst)


def test_hrnext_authors_layout_round_trip():
    """Our HRNeXt state dict, rewritten into the authors' naming, loads back to the same model."""
    src = create_pose_model("hrnext-demo")
    theirs = {}
    for k, v in src.state_dict().items():
        k2 = k.replace("head.final_layer", "keypoint_head.final_layer")
        if re.search(r"\.(dw3x3|proj1|proj2|dw)\.attention\.", k2):
            k2 = k2.replace(".attention.", ".conv.attention.")
        elif re.search(r"(dlp\.dw3x3|mlp2\.(proj1|proj2|dw))\.weight$", k2):
            kernels = src.get_submodule(k[:-len(".weight")])
            if hasattr(kernels, "num_kernels"):
                k2 = k2[:-len("weight")] + "conv.aggregation.weight"
                v = v.view(kernels.num_kernels, -1, *v.shape[1:])
            else:
                k2 = k2[:-len("weight")] + "conv.weight"
        k2 = re.sub(r"((?:layer1|branches\.\d+)\.\d+)\.(weight|bias)$", r"\1.norm.\2", k2) \
            if re.search(r"(layer1|branches\.\d+)\.\d+\.(weight|bias)$", k2) else k2
        theirs[k2] = v
    assert any(".conv.aggregation.weight" in k for k in theirs)
    assert detect_layout(theirs) == "hrnext-authors"
    dst = create_pose_model("hrnext-demo")
    assert load_weights(dst, theirs).ok
    _outputs_equal(src, dst)


def test_reference_manifest_keys_all_convert_to_ours():
    for name in ("hrnext-s", "hrnext-b"):
        converted, layout = convert_state_dict(reference_state_dict(name))
        model_keys = set(create_pose_model(name).state_dict())
        assert layout == "hrnext-authors"
        assert set(converted) <= model_keys
        assert len(manifest(name)["keys"]) == len(model_keys)


def test_backbone_only_imagenet_checkpoint_keeps_head_fresh(tmp_path):
    src = create_pose_model("hrnet-demo")
    bare = {k[len("backbone."):]: v for k, v in src.state_dict().items() if k.startswith("backbone.")}
    bare["classifier.weight"] = torch.zeros(1000, 2048)  # ImageNet classification extras
    bare["incre_modules.0.0.conv1.weight"] = torch.zeros(32, 16, 1, 1)
    torch.save({"state_dict": bare}, tmp_path / "imagenet.pth")
    dst = create_pose_model("hrnet-demo")
    head_before = dst.head.final_layer.weight.clone()
    report = load_weights(dst, tmp_path / "imagenet.pth", backbone_only=True)
    assert report.layout == "backbone-only" and report.ok
    assert sorted(report.ignored) == ["backbone.classifier.weight", "backbone.incre_modules.0.0.conv1.weight"]
    torch.testing.assert_close(dst.head.final_layer.weight, head_before)
    for k, v in src.backbone.state_dict().items():
        torch.testing.assert_close(dst.backbone.state_dict()[k], v)


def test_other_model_is_refused_with_a_precise_message():
    with pytest.raises(WeightsError) as e:
        load_weights(create_pose_model("hrnet-w32"), create_pose_model("hrnet-w48").state_dict())
    msg = str(e.value)
    assert "does not fit hrnet-w32" in msg and "shape mismatches" in msg
    assert "backbone.transition1.0.0.weight (48, 256, 3, 3) vs model (32, 256, 3, 3)" in msg
    assert "another model" in msg


def test_missing_keys_are_named_and_strict_false_loads_the_rest():
    src = create_pose_model("hrformer-demo").state_dict()
    del src["head.final_layer.bias"]
    del src["backbone.stage3.0.branches.1.0.attn.attn.qkv.weight"]
    model = create_pose_model("hrformer-demo")
    with pytest.raises(WeightsError, match=r"2 missing from the checkpoint: .*qkv\.weight.*final_layer\.bias"):
        load_weights(model, src)
    report = load_weights(model, src, strict=False)
    assert len(report.missing) == 2 and report.loaded == len(src)


def test_unexpected_keys_are_refused():
    src = create_pose_model("hrnet-demo").state_dict()
    src["backbone.extra_layer.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError, match=r"1 unexpected in the checkpoint: backbone\.extra_layer\.weight"):
        load_weights(create_pose_model("hrnet-demo"), src)


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(create_pose_model("hrnet-demo").state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cannot read checkpoint .*w\.pth .*truncated"):
        load_weights(create_pose_model("hrnet-demo"), path)
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(create_pose_model("hrnet-demo"), tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth"):
        load_weights(create_pose_model("hrnet-demo"), tmp_path / "junk.pth")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="no state dict"):
        load_weights(create_pose_model("hrnet-demo"), tmp_path / "empty.pth")
