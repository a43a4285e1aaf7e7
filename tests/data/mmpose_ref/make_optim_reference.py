"""Learning rate per iteration and weight-decay groups of the reference recipes -> optim_reference.json.

Run with the reference kit's interpreter (mmpose 1.3.2, mmengine 0.10.7, torch; not project
dependencies), with ``MMCV_MIRROR`` = git dir of a mirror of github open-mmlab/mmcv and
``HRNEXT_MIRROR`` = git dir of a mirror of github ZiyiZhang27/HRNeXt:

    MMCV_MIRROR=... HRNEXT_MIRROR=... /tmp/refkit-venv/bin/python make_optim_reference.py

Sources, each executed, not re-derived:

* ``mmpose``: mmpose 1.3.2's HRNet and HRFormer COCO configs (``param_scheduler``: LinearLR warm-up
  + MultiStepLR, ``optim_wrapper``), loaded with mmengine's ``Config``; schedulers built by mmengine's
  registry and stepped as mmengine's ``ParamSchedulerHook`` steps them in an epoch-based loop (iteration
  schedulers after every iteration, epoch schedulers after every epoch); the lr recorded is the one
  each iteration's optimiser step uses.
* ``hrnext``: the HRNeXt authors' configs (``lr_config``: CosineAnnealing, linear warm-up; mmcv 1.x),
  run through mmcv v1.7.2's own ``CosineAnnealingLrUpdaterHook`` (its ``lr_updater.py`` read from the
  mirror and executed with stand-ins for its registry imports) in mmcv's ``EpochBasedRunner`` hook
  order (``before_run``, ``before_train_epoch``, ``before_train_iter`` per iteration).
* Weight-decay groups: mmengine's ``DefaultOptimWrapperConstructor`` with each config's optimiser and
  ``paramwise_cfg`` on the reference models of ``../shared/tools/refkit/refmodels.py``. For the HRNeXt
  authors' (mmcv 1.x) ``paramwise_cfg``, whose only rule is ``custom_keys``, mmcv 1.x's
  ``DefaultOptimizerConstructor`` applies the same rule (a key that is a substring of the parameter's
  full name sets ``weight_decay = base_wd * decay_mult``; v1.7.2 ``default_constructor.py``).
  Parameter names are mapped to hrbench's with ``harness.weights.convert_state_dict`` (HRNeXt's
  block naming); each group is stored as its count, the sha256 of its sorted names, and the names
  when there are at most 200.
"""
import hashlib
import json
import os
import runpy
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import mmpose
import torch
from mmengine.config import Config
from mmengine.hooks import ParamSchedulerHook
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import PARAM_SCHEDULERS

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SHARED = REPO.parent / "shared"
sys.path[:0] = [str(SHARED / "tools" / "refkit"), str(REPO)]
import refmodels  # noqa: E402

from harness.weights import convert_state_dict  # noqa: E402

MMCV_TAG = "v1.7.2"
MMPOSE_CFG = Path(mmpose.__file__).parent / ".mim" / "configs" / "body_2d_keypoint" / "topdown_heatmap" / "coco"
MMPOSE_CONFIGS = {"hrnet": "td-hm_hrnet-w32_8xb64-210e_coco-256x192.py",
                  "hrformer": "td-hm_hrformer-small_8xb32-210e_coco-256x192.py"}
HRNEXT_CONFIG = "configs/coco/hrnext_small_coco_256x192.py"
ITERS_PER_EPOCH = (10, 7)  # 7: the warm-up (500 iterations) ends inside an epoch
MAX_LISTED = 200


def git_show(git_dir: str, rev_path: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, "show", rev_path], check=True, capture_output=True,
                          text=True).stdout


def git_commit(git_dir: str, rev: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, "rev-parse", f"{rev}^{{commit}}"], check=True,
                          capture_output=True, text=True).stdout.strip()


def one_param_optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def mmengine_lrs(cfg: Config, iters_per_epoch: int) -> list[float]:
    opt = one_param_optimizer(cfg.optim_wrapper.optimizer.lr)
    scheds = [PARAM_SCHEDULERS.build(dict(s, optimizer=opt)) for s in cfg.param_scheduler]
    runner = types.SimpleNamespace(param_schedulers=scheds)
    hook = ParamSchedulerHook()
    out = []
    for _ in range(cfg.train_cfg.max_epochs):
        for i in range(iters_per_epoch):
            out.append(opt.param_groups[0]["lr"])
            hook.after_train_iter(runner, i)
        hook.after_train_epoch(runner)
    return out


def mmcv_hook_classes(mmcv_git: str) -> dict:
    src = git_show(mmcv_git, f"{MMCV_TAG}:mmcv/runner/hooks/lr_updater.py")
    for line in ("import mmcv\n", "from mmcv import runner\n", "from .hook import HOOKS, Hook\n"):
        assert line in src, line
        src = src.replace(line, "", 1)

    class Registry:
        def register_module(self, *a, **k):
            return lambda cls: cls

    ns = {"__name__": "mmcv_lr_updater", "HOOKS": Registry(), "Hook": object,
          "mmcv": types.SimpleNamespace(is_list_of=lambda seq, t: all(isinstance(x, t) for x in seq)),
          "runner": types.SimpleNamespace(BaseRunner=object)}
    exec(compile(src, f"mmcv/{MMCV_TAG}/lr_updater.py", "exec"), ns)
    return ns


def mmcv_lrs(hook_ns: dict, cfg: dict, iters_per_epoch: int) -> list[float]:
    lr_cfg = dict(cfg["lr_config"])
    cls = hook_ns[lr_cfg.pop("policy") + "LrUpdaterHook"]
    hook = cls(**lr_cfg)
    opt = one_param_optimizer(cfg["optimizer"]["lr"])
    epochs = cfg["total_epochs"]
    runner = types.SimpleNamespace(optimizer=opt, iter=0, epoch=0, max_epochs=epochs, max_iters=epochs * iters_per_epoch,
                                   data_loader=[None] * iters_per_epoch)
    hook.before_run(runner)
    out = []
    for epoch in range(cfg["total_epochs"]):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        for _ in range(iters_per_epoch):
            hook.before_train_iter(runner)
            out.append(opt.param_groups[0]["lr"])
            runner.iter += 1
    return out


def groups_of(model: torch.nn.Module, optim_wrapper: dict, layout: str) -> dict:
    """{weight_decay: {count, sha256, names?}} with names in hrbench's layout."""
    optim_wrapper = json.loads(json.dumps(optim_wrapper))  # plain dicts
    paramwise_cfg = optim_wrapper.pop("paramwise_cfg", None)  # as mmengine's Runner hands it over
    ctor = DefaultOptimWrapperConstructor(optim_wrapper, paramwise_cfg)
    wrapper = ctor(model)
    name_of = {id(p): n for n, p in model.named_parameters()}
    mapped, _ = convert_state_dict({n: torch.empty(0) for n in name_of.values()}, layout)
    to_ours = dict(zip(name_of.values(), mapped))
    by_wd: dict[str, list[str]] = {}
    for g in wrapper.optimizer.param_groups:
        wd = g.get("weight_decay", 0.0)
        for p in g["params"]:
            by_wd.setdefault(repr(float(wd)), []).append(to_ours[name_of[id(p)]])
    out = {}
    for wd, names in sorted(by_wd.items()):
        names = sorted(names)
        entry = {"count": len(names), "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}
        if len(names) <= MAX_LISTED:
            entry["names"] = names
        out[wd] = entry
    return out


def main():
    mmcv_git, hrnext_git = os.environ["MMCV_MIRROR"], os.environ["HRNEXT_MIRROR"]
    mm_cfgs = {fam: Config.fromfile(str(MMPOSE_CFG / f)) for fam, f in MMPOSE_CONFIGS.items()}
    # the two families' configs state the same schedule
    assert mm_cfgs["hrnet"].param_scheduler == mm_cfgs["hrformer"].param_scheduler
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.py"
        path.write_text(git_show(hrnext_git, f"HEAD:{HRNEXT_CONFIG}"))
        hx = runpy.run_path(str(path))
    hook_ns = mmcv_hook_classes(mmcv_git)

    schedules = {}
    for ipe in ITERS_PER_EPOCH:
        cfg = mm_cfgs["hrformer"]
        schedules[f"mmpose/{ipe}"] = dict(
            source=f"mmpose {mmpose.__version__} {MMPOSE_CONFIGS['hrformer']} (= {MMPOSE_CONFIGS['hrnet']}) "
                   "param_scheduler, mmengine schedulers",
            base_lr=cfg.optim_wrapper.optimizer.lr, epochs=cfg.train_cfg.max_epochs, iters_per_epoch=ipe,
            param_scheduler=[dict(s) for s in cfg.param_scheduler], lr=mmengine_lrs(cfg, ipe))
        schedules[f"hrnext/{ipe}"] = dict(
            source=f"ZiyiZhang27/HRNeXt@{git_commit(hrnext_git, 'HEAD')} {HRNEXT_CONFIG} lr_config, mmcv "
                   f"{MMCV_TAG}@{git_commit(mmcv_git, MMCV_TAG)} CosineAnnealingLrUpdaterHook",
            base_lr=hx["optimizer"]["lr"], epochs=hx["total_epochs"], iters_per_epoch=ipe,
            lr_config=hx["lr_config"], lr=mmcv_lrs(hook_ns, hx, ipe))

    hx_optim = {k: v for k, v in hx["optimizer"].items() if k != "paramwise_cfg"}
    hx_wrapper = dict(type="OptimWrapper", optimizer=hx_optim, paramwise_cfg=hx["optimizer"]["paramwise_cfg"])
    weight_decay = {}
    for name in refmodels.NAMES:
        family = name.split("-")[0]
        model = refmodels.build(name)
        layout = "hrnext-authors" if family == "hrnext" else "hrbench"
        entry = {"hrnext": groups_of(model, hx_wrapper, layout)}
        if family in mm_cfgs:
            entry["mmpose"] = groups_of(model, mm_cfgs[family].optim_wrapper.to_dict(), layout)
        weight_decay[name] = entry
    about = ("Per-iteration learning rates (the lr each iteration's optimiser step uses) and weight-decay groups "
             "of the reference recipes; made by make_optim_reference.py (its docstring says how). weight_decay: "
             "model -> recipe source -> {weight decay: {count, sha256 of the sorted hrbench parameter names, "
             "names if <= 200}}. mmpose optimisers: " + "; ".join(
                 f"{f}: {mm_cfgs[f].optim_wrapper.to_dict()}" for f in mm_cfgs) + f"; hrnext: {hx_wrapper}")
    (HERE / "optim_reference.json").write_text(json.dumps(
        {"_about": about, "schedules": schedules, "weight_decay": weight_decay}, indent=0))


if __name__ == "__main__":
    main()
