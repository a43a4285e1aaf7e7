"""Recipe plumbing in the engine: ImageNet files under the pretrained folder with the key check, what the
record keeps, and checkpoint selection on another dataset than the training one."""
from __future__ import annotations

import hashlib

import pytest
import torch

from harness import create_pose_model
from harness.errors import WeightsError
from harness.config import PRETRAINED_ENV, get_experiment
from harness.engine import builders


def _backbone_file(path, model_name="hrnet-demo"):
    donor = create_pose_model(model_name)
    sd = {k[len("backbone."):]: v for k, v in donor.state_dict().items() if k.startswith("backbone.")}
    sd["fc.weight"] = torch.zeros(3, 3)  # a classifier key, ignored with backbone_only
    torch.save(sd, path)
    return sd


def test_named_file_is_found_in_the_pretrained_folder_and_recorded(tmp_path, monkeypatch, one_thread):
    sd = _backbone_file(tmp_path / "hrnet_w32-36af842e.pth")
    monkeypatch.setenv(PRETRAINED_ENV, str(tmp_path))
    exp = get_experiment("coco-mini-hrnet", ["init.pretrain=imagenet", "init.weights=hrnet_w32-36af842e.pth"])
    model = builders.build_model(exp)
    assert all(torch.equal(model.state_dict()["backbone." + k], v) for k, v in sd.items() if k != "fc.weight")
    digest = hashlib.sha256((tmp_path / "hrnet_w32-36af842e.pth").read_bytes()).hexdigest()
    n_backbone = sum(1 for k in model.state_dict() if k.startswith("backbone.") and not k.endswith("num_batches_tracked"))
    assert model.init_info["file"] == "hrnet_w32-36af842e.pth" and model.init_info["sha256"] == digest[:12]
    assert model.init_info["tensors_loaded"] == len(sd) - 1 and model.init_info["tensors_loaded"] >= n_backbone - 1
    rec = builders.make_record(exp, model=model, dataset_name="coco", split="val", boxes="gt",
                               metrics={"AP": 0.5}, checkpoint=None)
    assert rec["extra"]["init"]["sha256"] == digest[:12] and rec["extra"]["init"]["tensors_loaded"] == len(sd) - 1
    assert rec["extra"]["selection"] == "coco val (gt boxes)"
    from harness.results.schema import RunRecord

    paper = get_experiment("coco-hrnet-w32-256x192-paper")
    rec = builders.make_record(paper, model=model, dataset_name="coco", split="val", boxes="det",
                               metrics={"AP": 0.5}, checkpoint=None)
    assert RunRecord.from_dict(rec).source == ("leoxiaobin/deep-high-resolution-net.pytorch@6f69e46:"
                                               "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml")


def test_a_file_that_does_not_fit_is_refused_naming_the_keys_unless_strict_is_off(tmp_path, monkeypatch, one_thread):
    _backbone_file(tmp_path / "other.pth", "hrformer-demo")
    monkeypatch.setenv(PRETRAINED_ENV, str(tmp_path))
    sets = ["init.pretrain=imagenet", "init.weights=other.pth"]
    with pytest.raises(WeightsError) as e:
        builders.build_model(get_experiment("coco-mini-hrnet", sets))
    msg = str(e.value)
    assert "missing from the checkpoint" in msg and "backbone." in msg and "pass strict=False" in msg
    model = builders.build_model(get_experiment("coco-mini-hrnet", sets + ["init.strict=false"]))
    assert model.init_info["strict"] is False and model.init_info["missing"] > 0
    torch.save({"nothing.weight": torch.zeros(2)}, tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="no tensor of .*empty.pth fits"):
        builders.build_model(get_experiment("coco-mini-hrnet", ["init.pretrain=imagenet", "init.weights=empty.pth",
                                                                 "init.strict=false"]))


def test_a_missing_named_file_says_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv(PRETRAINED_ENV, str(tmp_path))
    exp = get_experiment("coco-hrnet-w32-256x192-paper")
    assert exp.init.weights == "hrnet_w32-36af842e.pth" and exp.init.strict is True
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/hrnet_w32-36af842e.pth does not exist .*{PRETRAINED_ENV}"):
        builders.init_backbone(torch.nn.Module(), exp)
    assert builders.pretrained_path("/abs/file.pth").as_posix() == "/abs/file.pth"  # a path is taken as given


def test_checkpoint_selection_on_another_dataset(tmp_path, one_thread):
    """data.val_dataset: train on COCO, select on OCHuman val with GT boxes (HRNeXt's OCHuman configs)."""
    import shutil

    from support.coco_mini import COCO_MINI

    src = COCO_MINI.parent / "ochuman-samples"
    (tmp_path / "annotations").mkdir()
    shutil.copy(src / "test_ochuman.json", tmp_path / "annotations" / "ochuman_coco_format_val_range_0.00_1.00.json")
    (tmp_path / "images").mkdir()
    for jpg in src.glob("*.jpg"):
        (tmp_path / "images" / jpg.name).symlink_to(jpg)
    exp = get_experiment("coco-mini-hrnet", ["data.val_dataset=ochuman", f"data.val_root={tmp_path}",
                                             "data.val_split=val"])
    val = builders.build_dataset(exp, exp.data.val_split, train=False)
    assert val.meta.name == "ochuman" and val.ann_file.name == "ochuman_coco_format_val_range_0.00_1.00.json"
    train = builders.build_dataset(exp, exp.data.train_split, train=True)
    assert train.meta.name == "coco" and "coco-mini" in str(train.ann_file)
    model = create_pose_model("hrnet-demo")
    rec = builders.make_record(exp, model=model, dataset_name=exp.data.val_dataset_name, split="val", boxes="gt",
                               metrics={"AP": 0.5}, checkpoint=None)
    assert rec["dataset"] == "ochuman" and rec["extra"]["selection"] == "ochuman val (gt boxes)"
