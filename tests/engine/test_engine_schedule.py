"""Learning rate at every iteration and weight-decay groups equal the reference implementations'.

Fixture ``tests/fixtures/mmpose_ref/optim_reference.json`` (``make_optim_reference.py``, run with the
reference kit): mmengine 0.10.7's LinearLR + MultiStepLR built from mmpose 1.3.2's HRNet/HRFormer
configs, mmcv v1.7.2's CosineAnnealingLrUpdaterHook driven by the HRNeXt authors' ``lr_config``, and
mmengine's DefaultOptimWrapperConstructor groups on the reference models.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from harness import create_pose_model
from harness.config import ConfigError, SchedCfg, get_experiment, list_experiments
from harness.engine.trainer import build_optimizer, lr_factor
from support.paths import MMPOSE_REF

REF = json.loads((MMPOSE_REF / "optim_reference.json").read_text())
SCHEDULES = REF["schedules"]


def reference_sched(series: dict) -> tuple[SchedCfg, int, float]:
    """(SchedCfg, epochs, base lr) that state the series' source config in hrbench's terms."""
    if "param_scheduler" in series:  # mmengine: LinearLR warm-up + MultiStepLR by epoch
        warm, step = series["param_scheduler"]
        assert (warm["type"], warm["begin"], warm["by_epoch"]) == ("LinearLR", 0, False)
        assert (step["type"], step["begin"], step["end"], step["by_epoch"]) == (
            "MultiStepLR", 0, series["epochs"], True)
        sched = SchedCfg(name="multistep", warmup_iters=warm["end"], warmup_ratio=warm["start_factor"],
                         milestones=tuple(step["milestones"]), gamma=step["gamma"], warmup_style="mmengine")
    else:  # mmcv 1.x lr_config
        lc = series["lr_config"]
        assert (lc["policy"], lc["warmup"], lc.get("by_epoch", True)) == ("CosineAnnealing", "linear", True)
        sched = SchedCfg(name="cosine", warmup_iters=lc["warmup_iters"], warmup_ratio=lc["warmup_ratio"],
                         min_lr_ratio=lc["min_lr_ratio"], warmup_style="mmcv")
    return sched, series["epochs"], series["base_lr"]


def with_schedule(exp, sched: SchedCfg, epochs: int, lr: float):
    return dataclasses.replace(exp, sched=sched, train=dataclasses.replace(exp.train, epochs=epochs),
                               optim=dataclasses.replace(exp.optim, lr=lr))


@pytest.mark.parametrize("key", sorted(SCHEDULES))
def test_lr_at_every_iteration_equals_reference_scheduler(key):
    series = SCHEDULES[key]
    sched, epochs, base_lr = reference_sched(series)
    exp = with_schedule(get_experiment("coco-hrnet-w32-256x192-fair"), sched, epochs, base_lr)
    ipe = series["iters_per_epoch"]
    ref = series["lr"]
    assert len(ref) == epochs * ipe
    worst = 0.0
    for it, want in enumerate(ref):
        got = base_lr * lr_factor(exp, it, ipe)
        worst = max(worst, abs(got - want) / want)
    assert worst <= 1e-12, (key, worst)


def test_lr_warmup_styles_differ_where_the_references_do():
    """mmengine's LinearLR(end=500) reaches the base lr at iteration 499, mmcv's linear warm-up at 500."""
    mm, hx = SCHEDULES["mmpose/10"]["lr"], SCHEDULES["hrnext/10"]["lr"]
    assert mm[499] == pytest.approx(5e-4, rel=1e-12) and mm[498] < 5e-4
    base = get_experiment("coco-hrnet-w32-256x192-fair")
    sched, epochs, lr = reference_sched(SCHEDULES["mmpose/10"])
    other = with_schedule(base, dataclasses.replace(sched, warmup_style="mmcv"), epochs, lr)
    assert lr * lr_factor(other, 499, 10) != pytest.approx(mm[499], rel=1e-6)
    assert hx[490] < hx[499]  # mmcv: still warming up at 499 (iterations 490-499 share epoch 49's cosine)
    assert mm[499] == mm[500]
    with pytest.raises(ConfigError, match="sched.warmup_style"):
        SchedCfg(warmup_style="torch")
    with pytest.raises(ConfigError, match="sched.warmup_iters"):
        SchedCfg(warmup_iters=1, warmup_style="mmengine")


_HAS_MMPOSE_RECIPE = any(n.endswith("-mmpose") for n in list_experiments())


def _mmpose_1x(exp) -> bool:
    """Experiments whose recipe is mmpose 1.x's model-zoo config (HRNet, HRFormer): the `mmpose`
    recipe where the registry has one, else the `paper` recipe of those families (which followed
    mmpose 1.x before the `mmpose` recipe existed)."""
    if _HAS_MMPOSE_RECIPE:
        return exp.recipe == "mmpose"
    return exp.recipe == "paper" and exp.family in ("hrnet", "hrformer")


@pytest.mark.parametrize("source,select", [("hrnext", lambda e: e.recipe == "fair"), ("mmpose", _mmpose_1x)])
def test_registered_recipes_use_the_reference_schedule(source, select):
    sched, epochs, lr = reference_sched(SCHEDULES[f"{source}/10"])
    exps = [get_experiment(n) for n in list_experiments()]
    chosen = [e for e in exps if select(e)]
    assert len(chosen) >= 12
    for e in chosen:
        assert (e.sched, e.train.epochs, e.optim.lr) == (sched, epochs, lr), e.name


def _groups(model, exp) -> dict[str, list[str]]:
    opt = build_optimizer(model, exp)
    name_of = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, list[str]] = {}
    for g in opt.param_groups:
        assert g["initial_lr"] == exp.optim.lr  # the trainer sets lr = initial_lr x lr_factor
        out.setdefault(repr(float(g["weight_decay"])), []).extend(name_of[id(p)] for p in g["params"])
    return {wd: sorted(names) for wd, names in out.items()}


WD_CASES = [(m, src) for m, srcs in sorted(REF["weight_decay"].items()) for src in sorted(srcs)]


@pytest.mark.parametrize("model_name,source", WD_CASES)
def test_weight_decay_groups_equal_mmengine_paramwise_rule(model_name, source):
    ref = REF["weight_decay"][model_name][source]
    recipe = "fair" if source == "hrnext" else ("mmpose" if _HAS_MMPOSE_RECIPE else "paper")
    exp_name = f"coco-{model_name}-256x192-{recipe}"
    exp = get_experiment(exp_name)
    assert source == "hrnext" or _mmpose_1x(exp)
    ours = _groups(create_pose_model(model_name, num_keypoints=17), exp)
    assert sorted(ours) == sorted(ref), (exp_name, {k: len(v) for k, v in ours.items()})
    for wd, names in ours.items():
        want = ref[wd]
        if "names" in want:
            assert names == want["names"], (exp_name, wd)
        assert len(names) == want["count"], (exp_name, wd)
        assert hashlib.sha256("\n".join(names).encode()).hexdigest() == want["sha256"], (exp_name, wd)
