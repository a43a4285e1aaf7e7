"""Every registered recipe equals the code it names, field by field.

``tests/fixtures/recipe_facts/<source>.json`` holds the values read from each source (file, line and text
with every value; written by ``make_recipe_facts.py`` from the sources' repositories at a fixed commit).
Each registered ``paper``/``mmpose``/``fair`` experiment names its source (repository, commit, config);
here it is compared with that config's facts: optimiser, schedule, batch, epochs, normalisation, AMP,
drop path, ImageNet file, codec (input/heatmap size, sigma), augmentation (convention, flip, half body,
box shift, scale, rotation, CrowdPose's body halves), test time (flip, heatmap shift, keypoint-score threshold, OKS-NMS threshold,
boxes, detection-score threshold) and checkpoint selection (validation set, split, boxes, interval,
metric, checkpoint interval). A departure is allowed only where the registry says so in ``source.note``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import backbones
from harness.config import RECIPES, get_experiment, list_experiments
from harness.data import HeatmapCodec, get_meta
from harness.data.transforms import AUGMENT_PRESETS
from support.paths import RECIPE_FACTS as FACTS

SOURCES = {"hrnet_authors": "leoxiaobin/deep-high-resolution-net.pytorch", "hrformer_authors": "HRNet/HRFormer",
           "hrnext_authors": "ZiyiZhang27/HRNeXt", "mmpose_1x": "open-mmlab/mmpose"}
PAPER_SOURCE = {"hrnet": "hrnet_authors", "hrformer": "hrformer_authors", "hrnext": "hrnext_authors"}


def _facts(name: str) -> dict:
    return json.loads((FACTS / f"{name}.json").read_text())


def _augment(exp):
    aug = AUGMENT_PRESETS[exp.data.augment]
    if exp.data.half_body_min_kpts is not None:
        aug = dataclasses.replace(aug, half_body_min_kpts=exp.data.half_body_min_kpts)
    return aug


def ours(exp, key: str):
    """The experiment's value for a fact key (what our pipeline will actually do)."""
    section, _, name = key.partition(".")
    if section == "augment":
        return getattr(_augment(exp), name)
    if key == "codec.heatmap_size":
        w, h = HeatmapCodec.for_input(exp.data.input_size).heatmap_size
        return [h, w]
    if key == "model.drop_path_rate":
        return float(exp.model.overrides.get("drop_path_rate", backbones.get_config(exp.model.name).drop_path_rate))
    if key == "init.weights":
        return Path(exp.init.weights).name if exp.init.weights else None
    if key == "data.val_dataset":
        return exp.data.val_dataset_name
    if key == "meta.upper_body_ids":
        return sorted(get_meta(exp.data.dataset).upper_body_ids)
    if key == "select.metric":
        return "AP"  # the trainer keeps best.pth by validation AP
    if key == "eval.shift_heatmap":
        return exp.data.codec == "msra"  # flip test shifts the flipped heatmap by one pixel (harness.eval.inference)
    value = getattr(getattr(exp, section), name)
    return list(value) if isinstance(value, tuple) else value


def departures(exp, config: str) -> set[str]:
    """Fact keys an experiment is allowed to differ in; each is declared in ``source.note``."""
    keys: set[str] = set()
    if exp.name.startswith("ochuman-") and "/ochuman/" not in config:
        keys |= {"eval.boxes", "eval.det_score_thr"}  # evaluated on OCHuman with GT boxes (tested below)
    selection_keys = {"data.val_dataset", "data.val_split", "data.val_boxes"}
    if exp.name.endswith("-sel-coco") and "/ochuman/" in config:
        keys |= selection_keys
    if exp.name.endswith("-sel-ochuman") and "/ochuman/" not in config:
        keys |= selection_keys
    if exp.recipe == "fair" and exp.family != "hrnext":
        keys |= {"model.drop_path_rate"}  # the backbone's own; HRNeXt's recipe otherwise
    if "init.weights" in exp.source.note:
        keys |= {"init.weights"}
    if keys:
        assert exp.source.note, f"{exp.name}: departs from {config} in {sorted(keys)} without saying so"
    return keys


def _experiments(recipe: str, source: str):
    for name in list_experiments(recipe):
        exp = get_experiment(name)
        want = SOURCES[source]
        if exp.source.repo == want and (recipe != "paper" or PAPER_SOURCE[exp.family] == source):
            yield exp


@pytest.mark.parametrize("recipe, source", [("paper", "hrnet_authors"), ("paper", "hrformer_authors"),
                                            ("paper", "hrnext_authors"), ("mmpose", "mmpose_1x"),
                                            ("fair", "hrnext_authors")])
def test_every_experiment_of_a_recipe_equals_its_source(recipe, source):
    facts = _facts(source)
    by_config = {c["config"]: c["facts"] for c in facts["configs"]}
    exps = list(_experiments(recipe, source))
    assert exps, f"no {recipe} experiment cites {source}"
    checked = 0
    for exp in exps:
        assert exp.source.commit == facts["source"]["commit"], exp.name
        assert exp.source.config in by_config, f"{exp.name}: {exp.source.config} has no facts"
        skip = departures(exp, exp.source.config)
        for key, fact in by_config[exp.source.config].items():
            if key in skip:
                continue
            got = ours(exp, key)
            assert got == pytest.approx(fact["value"]) if isinstance(fact["value"], float) else got == fact["value"], (
                f"{exp.name}.{key}: ours {got!r}, {exp.source.label()} says {fact['value']!r} ({fact['from']})")
            checked += 1
    assert checked >= 30 * len(exps)


def test_every_recipe_experiment_names_its_source():
    for recipe in RECIPES:
        for name in list_experiments(recipe):
            src = get_experiment(name).source
            assert src.repo in SOURCES.values() and len(src.commit) == 40 and src.config, name


def test_facts_files_cite_lines():
    for name in SOURCES:
        facts = _facts(name)
        assert len(facts["source"]["commit"]) == 40
        for cfg in facts["configs"]:
            for key, fact in cfg["facts"].items():
                assert fact["from"] and all(":" in c and c.split(":")[1].isdigit() or c.split(":")[2].isdigit()
                                            for c in fact["from"]), (name, cfg["config"], key)


def test_paper_recipe_differences_the_issue_lists():
    """The differences that change the AP a user gets, stated once more as numbers."""
    hrb = get_experiment("coco-hrformer-b-384x288-paper")
    assert hrb.model.overrides["drop_path_rate"] == 0.3 and hrb.train.amp == "fp16"
    assert get_experiment("coco-hrformer-b-384x288-mmpose").model.overrides.get("drop_path_rate", 0.2) == 0.2
    hrnet = get_experiment("coco-hrnet-w32-256x192-paper")
    assert (hrnet.optim.name, hrnet.optim.lr, hrnet.sched.warmup_iters, hrnet.train.batch_size) == ("adam", 1e-3, 0, 128)
    assert get_experiment("coco-hrnet-w48-384x288-paper").train.batch_size == 96
    assert _augment(hrnet).shift_mode == "none" and _augment(hrnet).scale_factor == 0.35
    assert _augment(get_experiment("coco-hrnext-s-256x192-paper")).shift_mode == "per_instance"
    assert _augment(get_experiment("coco-hrnet-w32-256x192-mmpose")).shift_mode == "per_sample"
    assert _augment(get_experiment("crowdpose-hrnext-s-256x192-paper")).half_body_min_kpts == 6
    och = get_experiment("ochuman-hrnext-s-256x192-paper-sel-ochuman")
    assert (och.data.dataset, och.data.val_dataset_name, och.data.val_split, och.data.val_boxes,
            och.train.val_interval) == ("coco", "ochuman", "val", "gt", 10)
    assert och.source.config == "configs/ochuman/hrnext_small_ochuman_256x192.py"


def test_ochuman_experiments_evaluate_ochuman_with_gt_boxes_and_say_how_they_select():
    names = [n for n in list_experiments() if n.startswith("ochuman-")]
    assert names and all(n.endswith(("-sel-coco", "-sel-ochuman")) for n in names)
    for n in names:
        exp = get_experiment(n)
        assert (exp.eval.dataset, exp.eval.boxes, exp.data.dataset) == ("ochuman", "gt", "coco")
        assert exp.data.val_dataset_name == ("ochuman" if n.endswith("-sel-ochuman") else "coco")


def test_train_list_shows_recipe_and_source(capsys):
    from harness.cli import main

    assert main(["train", "--list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name, recipe, source in (
            ("coco-hrnet-w32-256x192-paper", "paper", "leoxiaobin/deep-high-resolution-net.pytorch@6f69e46:"
                                                      "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml"),
            ("coco-hrformer-b-384x288-mmpose", "mmpose", "open-mmlab/mmpose@5408bc7:configs/body_2d_keypoint/"
                                                         "topdown_heatmap/coco/td-hm_hrformer-base_8xb32-210e_coco-384x288.py"),
            ("coco-hrnet-w32-256x192-fair", "fair", "ZiyiZhang27/HRNeXt@8bbbb0f:configs/coco/hrnext_small_coco_256x192.py")):
        assert lines[name].split()[1:3] == [recipe, source], lines[name]
