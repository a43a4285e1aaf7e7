"""Experiment configs: registry, recipes, overrides, validation, hashing, persistence."""
from __future__ import annotations

import json

import pytest

from harness.config import (ConfigError, DataCfg, Experiment, ModelCfg, TrainCfg, apply_overrides, config_hash,
                            diff, get_experiment, list_experiments, load_config, save_config)

PAPER_MODELS = ["hrnet-w32", "hrnet-w48", "hrformer-s", "hrformer-b", "hrnext-s", "hrnext-b"]


def test_registry_has_three_recipes_per_paper_row_and_the_demo():
    names = set(list_experiments())
    for m in PAPER_MODELS:
        recipes = ("paper", "mmpose", "fair") if not m.startswith("hrnext") else ("paper", "fair")
        for hw in ("256x192", "384x288"):
            for recipe in recipes:
                assert f"coco-{m}-{hw}-{recipe}" in names
                assert {f"ochuman-{m}-{hw}-{recipe}-sel-coco", f"ochuman-{m}-{hw}-{recipe}-sel-ochuman"} <= names
            assert f"crowdpose-{m}-{hw}-fair" in names
            # CrowdPose rows exist only where the source has a CrowdPose config.
            assert (f"crowdpose-{m}-{hw}-paper" in names) == m.startswith("hrnext")
            assert (f"crowdpose-{m}-{hw}-mmpose" in names) == (m == "hrnet-w32" and hw == "256x192")
    for fam in ("hrnet", "hrformer", "hrnext"):
        assert f"demo-{fam}" in names
    assert not any(n.startswith("coco-mini") for n in list_experiments("paper") + list_experiments("fair"))
    assert set(list_experiments("mmpose")) == {n for n in names if n.endswith(("-mmpose", "-mmpose-sel-coco",
                                                                                "-mmpose-sel-ochuman"))}


def test_product_registry_does_not_point_outside_the_repository():
    """No registered experiment of the product is rooted in ../shared (a clone has no such folder)."""
    import harness.config as config

    for exp in config._build_registry().values():
        for root in (exp.data.root, exp.data.val_root, exp.eval.root):
            assert not root.startswith(("/", "..")) and "shared" not in root, (exp.name, root)


def test_fair_configs_differ_only_in_backbone_fields():
    """Under one recipe two families differ in model.* only: the comparison is fair."""
    ref = get_experiment("coco-hrnext-s-256x192-fair")
    for m in PAPER_MODELS:
        other = get_experiment(f"coco-{m}-256x192-fair")
        keys = set(diff(ref, other))
        assert all(k.startswith("model.") for k in keys), keys
    assert set(diff(get_experiment("coco-hrnet-w32-256x192-fair"), ref)) == {"model.name"}
    assert set(diff(get_experiment("coco-hrformer-s-256x192-fair"), ref)) == {"model.name"}
    # Same on CrowdPose (14 keypoints for every family).
    assert set(diff(get_experiment("crowdpose-hrformer-s-384x288-fair"),
                    get_experiment("crowdpose-hrnext-s-384x288-fair"))) == {"model.name"}


def test_input_size_rows_differ_in_input_sigma_and_what_the_source_changes():
    keys = set(diff(get_experiment("coco-hrnet-w48-256x192-mmpose"), get_experiment("coco-hrnet-w48-384x288-mmpose")))
    assert keys == {"data.input_size", "data.sigma"}
    # The HRNet authors train W48 at 384x288 with 24 images per GPU instead of 32.
    keys = set(diff(get_experiment("coco-hrnet-w48-256x192-paper"), get_experiment("coco-hrnet-w48-384x288-paper")))
    assert keys == {"data.input_size", "data.sigma", "train.batch_size"}


def test_hrnext_paper_recipe_is_the_fair_one():
    nxt = get_experiment("coco-hrnext-s-256x192-paper")
    assert diff(nxt, get_experiment("coco-hrnext-s-256x192-fair")) == {"recipe": ("paper", "fair")}


def test_ochuman_rows_evaluate_the_coco_model_with_gt_boxes():
    for recipe in ("paper", "mmpose", "fair"):
        och = get_experiment(f"ochuman-hrnet-w32-256x192-{recipe}-sel-coco")
        coco = get_experiment(f"coco-hrnet-w32-256x192-{recipe}")
        assert (och.eval.dataset, och.eval.splits, och.eval.boxes) == ("ochuman", ("val", "test"), "gt")
        # Training and selection are the COCO row's: only the evaluation differs.
        assert all(k.startswith("eval.") for k in diff(och, coco)), diff(och, coco)
        assert config_hash(och) != config_hash(coco)
        sel = get_experiment(f"ochuman-hrnet-w32-256x192-{recipe}-sel-ochuman")
        assert (sel.data.val_dataset, sel.data.val_split, sel.data.val_boxes) == ("ochuman", "val", "gt")
        assert set(diff(sel, och)) <= {"data.val_dataset", "data.val_root", "data.val_split", "data.val_boxes",
                                   "data.det_file"}
        assert config_hash(sel) != config_hash(och)
    cp = get_experiment("crowdpose-hrnet-w32-256x192-fair")
    assert (cp.model.num_keypoints, cp.data.train_split, cp.eval.splits) == (14, "trainval", ("test",))


def test_overrides_convert_types_and_validate():
    exp = get_experiment("coco-mini-hrnet", ["train.epochs=7", "data.input_size=128x96", "train.clip_grad=1.5",
                                             "train.amp=bf16", "train.ema=yes", "sched.milestones=[3,5]",
                                             "model.overrides.drop_path_rate=0.2", "init.weights=none"])
    assert exp.train.epochs == 7 and exp.data.input_size == (128, 96) and exp.train.clip_grad == 1.5
    assert exp.train.amp == "bf16" and exp.train.ema is True and exp.sched.milestones == (3, 5)
    assert exp.model.overrides == {"drop_path_rate": 0.2} and exp.init.weights is None
    assert apply_overrides(exp, {"train.clip_grad": "none"}).train.clip_grad is None
    # Dict form and a top-level key.
    assert apply_overrides(exp, {"recipe": "ablation"}).recipe == "ablation"


@pytest.mark.parametrize("item, field", [
    ("train.batch_size=0", "train.batch_size"),
    ("train.batch_size=abc", "train.batch_size"),
    ("train.epochs=-1", "train.epochs"),
    ("train.amp=fp8", "train.amp"),
    ("train.ema=maybe", "train.ema"),
    ("train.ema_decay=1.5", "train.ema_decay"),
    ("train.clip_grad=0", "train.clip_grad"),
    ("optim.lr=-1e-3", "optim.lr"),
    ("optim.name=lamb", "optim.name"),
    ("optim.betas=[0.9]", "optim.betas"),
    ("sched.name=poly", "sched.name"),
    ("sched.warmup_ratio=0", "sched.warmup_ratio"),
    ("sched.milestones=[200,170]", "sched.milestones"),
    ("data.input_size=250x190", "data.input_size"),
    ("data.input_size=256", "data.input_size"),
    ("data.sigma=0", "data.sigma"),
    ("data.val_boxes=det", "data.det_file"),
    ("init.pretrain=jft", "init.pretrain"),
    ("init.weights=/x.pth", "init.weights"),
    ("eval.boxes=both", "eval.boxes"),
    ("eval.splits=[]", "eval.splits"),
    ("model.num_keypoints=0", "model.num_keypoints"),
])
def test_bad_values_name_the_field(item, field):
    with pytest.raises(ConfigError) as e:
        get_experiment("coco-mini-hrnet", [item])
    assert str(e.value).startswith(field + ":"), str(e.value)


@pytest.mark.parametrize("item", ["train.lr=1", "trian.epochs=3", "model.overrides.a.b=1", "nothing=1"])
def test_unknown_keys_list_the_valid_ones(item):
    with pytest.raises(ConfigError) as e:
        get_experiment("coco-mini-hrnet", [item])
    msg = str(e.value)
    assert msg.startswith(item.split("=")[0] + ": unknown key") and "train.epochs" in msg and "optim.lr" in msg


def test_detected_boxes_need_a_detection_file():
    with pytest.raises(ConfigError, match=r"^eval\.det_file: is required when eval.boxes='det'"):
        get_experiment("coco-hrnet-w32-256x192-paper", ["eval.det_file=none"])
    assert get_experiment("coco-hrnet-w32-256x192-paper").eval.det_file == "auto"
    assert get_experiment("coco-hrnet-w32-256x192-paper", ["eval.boxes=gt", "eval.det_file=none"]).eval.boxes == "gt"


def test_malformed_override_and_unknown_experiment():
    with pytest.raises(ConfigError, match="key=value"):
        get_experiment("coco-mini-hrnet", ["train.epochs"])
    with pytest.raises(ConfigError, match="unknown experiment 'coco-hrnet-w99'"):
        get_experiment("coco-hrnet-w99")


def test_direct_construction_validates():
    with pytest.raises(ConfigError, match=r"^model\.name:"):
        ModelCfg(name="")
    with pytest.raises(ConfigError, match=r"^train\.seed:"):
        TrainCfg(seed=-3)
    with pytest.raises(ConfigError, match=r"^data:"):  # missing required field
        Experiment.from_dict({"name": "x", "model": {"name": "hrnet-w32"}, "data": {}})
    with pytest.raises(ConfigError, match=r"^sched\.milestones:"):
        apply_overrides(get_experiment("coco-hrnet-w32-256x192-paper"), ["train.epochs=100"])
    exp = Experiment(name="x", model=ModelCfg("hrnet-w32"), data=DataCfg("coco"))
    assert exp.train == TrainCfg() and exp.resolved_work_dir().as_posix() == "work_dirs/x"


def test_hash_is_canonical_and_ignores_machine_local_fields(tmp_path):
    a = get_experiment("coco-hrnet-w32-256x192-fair")
    assert config_hash(a) == config_hash(get_experiment("coco-hrnet-w32-256x192-fair"))
    assert len(config_hash(a)) == 64
    same = apply_overrides(a, ["data.root=/elsewhere/coco", "work_dir=/tmp/w", "train.compile=true",
                               "data.num_workers=12"])
    assert config_hash(same) == config_hash(a)
    assert config_hash(apply_overrides(a, ["train.seed=1"])) != config_hash(a)
    assert config_hash(apply_overrides(a, ["model.overrides.drop_path_rate=0.3"])) != config_hash(a)


def test_save_load_round_trip(tmp_path):
    exp = get_experiment("coco-hrformer-s-384x288-paper", ["init.weights=/w/hrformer_small.pth", "train.ema=true"])
    path = save_config(exp, tmp_path / "run" / "config.json")
    payload = json.loads(path.read_text())
    assert payload["config_hash"] == config_hash(exp)
    assert load_config(path) == exp
    assert get_experiment(str(path)) == exp  # a saved config works wherever a name does
    assert not list(path.parent.glob(".*tmp"))  # atomic write leaves no temp file
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        load_config(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.json")
    d = exp.to_dict()
    d["train"]["epochz"] = 3
    with pytest.raises(ConfigError, match=r"^train\.epochz: unknown key"):
        Experiment.from_dict(d)


def test_augment_preset_is_typed_and_reaches_the_dataset(tmp_path):
    from harness.data.transforms import AUGMENT_PRESETS
    from harness.engine.builders import build_dataset

    with pytest.raises(ConfigError, match=r"data\.augment: must be one of \['mmpose0x', 'mmpose1x', 'hrnet', "
                                          r"'light', 'flip-only'\]"):
        get_experiment("coco-mini-hrnet", ["data.augment=heavy"])
    exp = get_experiment("coco-mini-hrnet", ["data.augment=light"])
    ds = build_dataset(exp, exp.data.train_split, train=True)
    assert ds.augment == AUGMENT_PRESETS["light"] and ds.augment.rot_factor == 15.0
    assert get_experiment("coco-mini-hrnet").data.augment == "mmpose0x"
    crowd = get_experiment("crowdpose-hrnext-s-256x192-paper")  # HRNeXt's CrowdPose: num_joints_half_body=6
    assert crowd.data.half_body_min_kpts == 6
    assert get_experiment("coco-mini-hrnet", ["data.half_body_min_kpts=6"]).data.half_body_min_kpts == 6


def test_codec_choice_is_typed_and_reaches_the_dataset():
    from harness.engine.builders import build_dataset

    with pytest.raises(ConfigError, match=r"data\.codec: must be one of \['msra', 'dark', 'udp'\]"):
        get_experiment("coco-mini-hrnet", ["data.codec=simcc"])
    assert get_experiment("coco-mini-hrnet").data.codec == "msra"  # the papers' codec stays the default
    for name, dark, udp in (("msra", False, False), ("dark", True, False), ("udp", False, True)):
        exp = get_experiment("coco-mini-hrnet", [f"data.codec={name}", "data.sigma=1.5"])
        ds = build_dataset(exp, exp.data.val_split, train=False)
        assert (ds.codec.dark, ds.codec.udp, ds.codec.sigma) == (dark, udp, 1.5)
        assert ds.use_udp == udp  # UDP also changes the crop warp
