"""`make demo`: the whole harness end to end on the synthetic crowd dataset, on a CPU, in minutes.

Steps (:func:`run_demo`):

1. generate the synthetic data if it is missing (:func:`harness.data.synthetic.ensure_synthetic`);
2. for each family (HRNet, HRFormer, HRNeXt; their ``*-demo`` variants, 1.3-1.5M parameters) train the
   registered ``demo-<family>`` experiment through the engine, every family under the identical recipe
   (a setting changed in :class:`DemoConfig` is applied as an override, so each run's ``config.json``
   states it);
3. evaluate the final weights on ``val`` with the detection boxes and on ``occluded`` with GT boxes, and
   the same model *at initialisation* on ``val`` (so the table shows what training bought);
4. measure parameters, GFLOPs at the demo input size and CPU latency (batch 1);
5. write ``table.md`` / ``table.tex`` / ``table.csv`` and ``accuracy_vs_cost.png`` under the output folder
   (:mod:`harness.report.experiments`).

Re-running reuses every finished family (its done marker, :func:`harness.io.read_marker`, keyed by config
hash and evaluation settings) and resumes an interrupted training from its ``last.pth``; ``force=True``
retrains from scratch. Result records go to ``<out_dir>/runs`` so the demo never mixes with real runs in
``results/runs``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness import engine
from harness.config import ConfigError, Experiment, config_hash, get_experiment, load_config
from harness.data.synthetic import SynthConfig, ensure_synthetic
from harness.data.transforms import AUGMENT_PRESETS
from harness.engine import builders
from harness.engine.checkpoint import LAST, find_resume
from harness.engine.testing import exp_without_init, load_for_eval
from harness.engine.trainer import seed_everything, total_iterations
from harness.io import atomic_write_json, read_marker, write_marker
from harness.parallel import resolve_jobs
from harness.report.breakdown import demo_breakdown_figure, demo_statistics
from harness.report.experiments import DEMO_COLUMNS, demo_frame, demo_plot, demo_table
from harness.results.schema import FAMILY_ORDER

from .runner import makespan, measure_latency, model_costs, probe_train_step, run_side_by_side

log = logging.getLogger(__name__)

__all__ = ["DemoConfig", "DemoError", "run_demo", "FAMILIES", "DEMO_VERSION", "TABLE_COLUMNS", "experiment"]

#: The families the demo compares, in the papers' order.
FAMILIES = tuple(f.lower() for f in FAMILY_ORDER)
#: Families by training cost per iteration on a CPU, most expensive first (the order jobs are handed out).
COST_ORDER = ("hrnext", "hrformer", "hrnet")
#: Bump when what a finished family's marker means changes (evaluation protocol, table fields).
DEMO_VERSION = 3  # 2: records keep their predictions, occlusion breakdown; 3: fused AdamW (harness.optim)
MARKER = "demo_result.json"
TABLE_COLUMNS = DEMO_COLUMNS

# The recipe every family trains under: the registered experiment (harness.config, where its tuning is
# documented) -- the families' registered recipes differ only in the model.
_RECIPE: Experiment = get_experiment(f"demo-{FAMILIES[-1]}")
_SYNTH = SynthConfig()


class DemoError(ConfigError):
    """A demo setting is invalid; the message names the ``DemoConfig`` field."""


def _fail(name: str, msg: str) -> None:
    raise DemoError(f"DemoConfig.{name}: {msg}")


def _pos_int(name: str, v: Any, *, zero: bool = False) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or (v == 0 and not zero):
        _fail(name, f"must be an integer {'>= 0' if zero else '> 0'}, got {v!r}")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo does. Sizes are (H, W).

    The recipe defaults are read from the registered ``demo-<family>`` experiment and the synthetic-data
    defaults from :class:`~harness.data.synthetic.SynthConfig`, so ``python -m harness train demo-hrnext``
    trains what the demo trains and ``python -m harness synth`` makes the same data; a field changed here
    is applied to every family as a ``--set`` override and saved in each run's config.json.
    ``jobs`` (0 = one per core) trains the families side by side in single-threaded worker processes,
    which on a 2-core CPU is 1.2-1.3x faster in total than one after another on two threads.
    """

    data_root: str = _RECIPE.data.root
    out_dir: str = "results/demo"
    work_dir: str = "work_dirs/demo"
    # Synthetic data (the SynthConfig the demo asks for; a different config regenerates data_root).
    synth_train: int = _SYNTH.num_images["train"]
    synth_val: int = _SYNTH.num_images["val"]
    synth_occluded: int = _SYNTH.num_images["occluded"]
    synth_image_size: tuple = _SYNTH.image_size
    synth_seed: int = _SYNTH.seed
    # Recipe, identical for every family.
    input_size: tuple = tuple(_RECIPE.data.input_size)
    epochs: int = _RECIPE.train.epochs
    batch_size: int = _RECIPE.train.batch_size
    lr: float = _RECIPE.optim.lr
    augment: str = _RECIPE.data.augment  # a harness.data.transforms.AUGMENT_PRESETS name
    warmup_iters: int = _RECIPE.sched.warmup_iters
    max_iters: int = _RECIPE.train.max_iters  # 0 = epochs * iterations per epoch
    flip_test: bool = _RECIPE.eval.flip_test
    eval_batch_size: int = _RECIPE.eval.batch_size
    families: tuple = FAMILIES
    # Families trained side by side, one process each (0 = one per CPU core; 1 = one after another in
    # this process).  Latency is always measured afterwards, one model at a time.
    jobs: int = 0
    latency_runs: int = 20
    force: bool = False
    smoke: bool = False  # informational: set by DemoConfig.smoke_preset()
    progress: bool = True
    seed: int = _RECIPE.train.seed

    def __post_init__(self) -> None:
        for name in ("data_root", "out_dir", "work_dir"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                _fail(name, f"must be a non-empty path, got {getattr(self, name)!r}")
        for name in ("synth_train", "synth_val", "synth_occluded", "epochs", "batch_size", "eval_batch_size",
                     "latency_runs"):
            _pos_int(name, getattr(self, name))
        for name in ("synth_seed", "max_iters", "warmup_iters", "seed", "jobs"):
            _pos_int(name, getattr(self, name), zero=True)
        for name in ("synth_image_size", "input_size"):
            v = getattr(self, name)
            if not (isinstance(v, (tuple, list)) and len(v) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)):
                _fail(name, f"must be (H, W) of two positive integers, got {v!r}")
            object.__setattr__(self, name, tuple(v))
        if self.input_size[0] % 4 or self.input_size[1] % 4:
            _fail("input_size", f"both sides must be divisible by 4 (heatmaps are 1/4), got {self.input_size!r}")
        if self.augment not in AUGMENT_PRESETS:
            _fail("augment", f"must be one of {sorted(AUGMENT_PRESETS)}, got {self.augment!r}")
        if not (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool)
                and math.isfinite(self.lr) and self.lr > 0):
            _fail("lr", f"must be a positive number, got {self.lr!r}")
        fams = tuple(self.families) if isinstance(self.families, (tuple, list)) else None
        if not fams or any(f not in FAMILIES for f in fams) or len(set(fams)) != len(fams):
            _fail("families", f"must be a non-empty subset of {list(FAMILIES)} without repeats, got {self.families!r}")
        object.__setattr__(self, "families", fams)
        for name in ("flip_test", "force", "smoke", "progress"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, f"must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def smoke_preset(cls, **overrides: Any) -> "DemoConfig":
        """Tiny sizes for CI: 24/8/8 images at 128x128, 64x48 crops, 2 iterations per family."""
        base = dict(synth_train=24, synth_val=8, synth_occluded=8, synth_image_size=(128, 128), input_size=(64, 48),
                    epochs=1, batch_size=8, max_iters=2, warmup_iters=1, flip_test=False, eval_batch_size=16,
                    latency_runs=2, smoke=True, data_root="data/synthetic-smoke", out_dir="results/demo-smoke",
                    work_dir="work_dirs/demo-smoke")
        base.update(overrides)
        return cls(**base)

    def synth_config(self) -> SynthConfig:
        try:
            return dataclasses.replace(_SYNTH, seed=self.synth_seed, image_size=self.synth_image_size,
                                       num_images={"train": self.synth_train, "val": self.synth_val,
                                                   "occluded": self.synth_occluded})
        except ValueError as e:
            raise DemoError(f"DemoConfig.synth_*: {e}") from None

    def overrides(self) -> dict[str, Any]:
        """The ``--set`` overrides applied to every ``demo-<family>`` experiment (one recipe for all)."""
        h, w = self.input_size
        return {
            "data.root": self.data_root,
            "data.input_size": f"{h}x{w}",
            "data.augment": self.augment,
            "train.epochs": self.epochs,
            "train.batch_size": self.batch_size,
            "train.max_iters": self.max_iters,
            "train.seed": self.seed,
            # One evaluation at the end, by the demo itself (det boxes on val): no in-training validation.
            "train.val_interval": 0,
            "optim.lr": self.lr,
            "sched.warmup_iters": self.warmup_iters,
            "eval.splits": "val",
            "eval.boxes": "det",
            "eval.det_file": "auto",
            "eval.flip_test": self.flip_test,
            "eval.batch_size": self.eval_batch_size,
        }


# ------------------------------------------------------------------------------------------------- helpers


def experiment(cfg: DemoConfig, family: str) -> Experiment:
    """The ``demo-<family>`` experiment with the config's settings, in ``<work_dir>/<family>``."""
    try:
        exp = get_experiment(f"demo-{family}", cfg.overrides())
    except ConfigError as e:
        raise DemoError(f"DemoConfig -> experiment demo-{family}: {e}") from None
    return dataclasses.replace(exp, work_dir=str(Path(cfg.work_dir) / family))


def _marker_key(cfg: DemoConfig, exp: Experiment) -> str:
    """What a finished family's numbers depend on beyond the training config."""
    return json.dumps({"v": DEMO_VERSION, "hash": config_hash(exp), "latency_runs": cfg.latency_runs}, sort_keys=True)


def _clear_family(cfg: DemoConfig, family: str, model_name: str) -> None:
    """Forget a family's earlier demo run: its work dir and its records (both owned by the demo)."""
    for d in (Path(cfg.work_dir) / family, Path(cfg.out_dir) / "runs" / "synthetic" / model_name):
        if d.exists():
            shutil.rmtree(d)


def _untrained_metrics(exp: Experiment, device: torch.device, progress: bool) -> dict:
    """The same model the trainer starts from (same seed), scored on val with the det boxes."""
    # The trainer seeds, then builds: the same two calls give the same initial weights.
    seed_everything(exp.train.seed, False)
    model = builders.build_model(exp_without_init(exp)).to(device)
    ds = builders.build_dataset(exp, "val", train=False, eval_set=True)
    with torch.no_grad():
        return builders.evaluate(model, ds, exp, device=device, progress=progress)


def _reusable(cfg: DemoConfig, family: str) -> dict | None:
    """The finished family's marker if it can be reused; otherwise clear what cannot be resumed."""
    exp = experiment(cfg, family)
    wd = Path(exp.work_dir)
    if cfg.force:
        log.info("%s: --force, retraining from scratch", exp.name)
        _clear_family(cfg, family, exp.model.name)
        return None
    done = read_marker(wd / MARKER, _marker_key(cfg, exp))
    if done is not None:
        log.info("%s: finished run found in %s (config %s); reusing it (--force retrains)", exp.name, wd,
                 done["config_hash"][:8])
        return {**done, "cached": True}
    if (wd / MARKER).exists():
        log.info("%s: the finished run in %s used other settings; retraining", exp.name, wd)
        _clear_family(cfg, family, exp.model.name)
    elif (wd / "config.json").is_file():
        try:
            same = config_hash(load_config(wd / "config.json")) == config_hash(exp)
        except (OSError, ValueError):
            same = False
        if not same:
            log.info("%s: %s holds an interrupted run with other settings; starting over", exp.name, wd)
            _clear_family(cfg, family, exp.model.name)
        elif find_resume(wd) is not None:
            log.info("%s: resuming the interrupted run in %s", exp.name, wd)
    return None


def _train_and_evaluate(job: tuple[DemoConfig, str, str]) -> dict:
    """Train (or resume) one family and score it: val (det boxes), occluded (GT boxes), untrained val.

    Module-level and fed plain data so that :func:`harness.parallel.run_jobs` can run it in a worker.
    Always on one torch thread: the weights depend on the thread count (reductions are split per thread),
    so a family's result must not depend on how many families were left to train or on the core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_and_evaluate_one_thread(job)
    finally:
        torch.set_num_threads(threads)


def _train_and_evaluate_one_thread(job: tuple[DemoConfig, str, str]) -> dict:
    cfg, family, results_root = job
    exp = experiment(cfg, family)
    wd = Path(exp.work_dir)
    t0 = time.perf_counter()
    trainer = engine.Trainer(exp, work_dir=wd, resume="auto", device="cpu", progress=cfg.progress,
                             results_root=wd / "records")
    fit = trainer.fit()
    train_s = time.perf_counter() - t0
    ckpt = wd / LAST

    t1 = time.perf_counter()
    val = engine.run_test(exp, ckpt, device="cpu", results_root=results_root, splits=("val",),
                          progress=cfg.progress, extra={"stage": "demo"})[0]
    occ_exp = dataclasses.replace(exp, eval=dataclasses.replace(exp.eval, boxes="gt", det_file=None,
                                                                splits=("occluded",)))
    occ = engine.run_test(occ_exp, ckpt, device="cpu", results_root=results_root, splits=("occluded",),
                          progress=cfg.progress, extra={"stage": "demo"}, breakdown="occlusion")[0]
    untrained = _untrained_metrics(exp, torch.device("cpu"), cfg.progress)
    log.info("%s: AP val %.3f (untrained %.3f), AP occluded %.3f; %d iterations, %.2f s/iteration",
             exp.name, val["metrics"].get("AP", float("nan")), untrained.get("AP", float("nan")),
             occ["metrics"].get("AP", float("nan")), fit.global_iter, fit.sec_per_iter)
    return {
        "family": family, "model": exp.model.name, "experiment": exp.name, "work_dir": str(wd),
        "checkpoint": str(ckpt), "iterations": fit.global_iter, "sec_per_iter": fit.sec_per_iter,
        "torch_threads": torch.get_num_threads(), "train_seconds": train_s,
        "eval_seconds": time.perf_counter() - t1, "final_loss": fit.losses[-1] if fit.losses else None,
        "val": {k: float(v) for k, v in val["metrics"].items()},
        "occluded": {k: float(v) for k, v in occ["metrics"].items()},
        "untrained_val": {k: float(v) for k, v in untrained.items()},
        "records": [str(val["path"]), str(occ["path"])],
    }


def _finish_family(cfg: DemoConfig, res: dict) -> dict:
    """Costs of a freshly trained family (measured here, one model at a time) -> its marker on disk."""
    exp = experiment(cfg, res["family"])
    model, _ = load_for_eval(exp, res["checkpoint"], torch.device("cpu"))
    hw = tuple(exp.data.input_size)
    costs = model_costs(exp.model.name, hw, num_keypoints=exp.model.num_keypoints, overrides=dict(exp.model.overrides))
    out = {**res, "config_hash": config_hash(exp), "params": costs["params"], "gflops": costs["gflops_paper"],
           "latency_ms": measure_latency(model, hw, cfg.latency_runs), "input_size": list(hw)}
    write_marker(Path(exp.work_dir) / MARKER, _marker_key(cfg, exp), out)
    return {**out, "key": _marker_key(cfg, exp), "cached": False}


def _note(cfg: DemoConfig) -> str:
    h, w = cfg.input_size
    return (f"Synthetic crowds, {h}x{w} input, identical recipe for all families (AdamW lr {cfg.lr:g}, "
            f"batch {cfg.batch_size}, {cfg.epochs} epoch(s)"
            + (f", at most {cfg.max_iters} iterations" if cfg.max_iters else "") + "). "
            "AP / AP .5 / AP .75: `val` with detection boxes; AP occluded: `occluded` split with GT boxes; "
            "untrained AP: the same model at initialisation on `val`. GFLOPs at the demo input size (the "
            "family's paper convention); latency: median CPU forward pass, batch 1.")


#: Wall time of a whole ``make demo`` (training with data loading, evaluation, latency, tables) over the
#: probe-based training time of :func:`expected_seconds`; measured on the 2-core CPU machine (README).
EXPECTED_OVERHEAD = 1.15  # 2026-12-01: 31.7 min measured, 27.8 min from the probe (1.14)


def expected_seconds(cfg: DemoConfig, families: list[str]) -> tuple[float, dict[str, float]]:
    """What training ``families`` is expected to take here: (wall seconds, {family: seconds/iteration}).

    A 2-step probe of each family's training step at the demo's batch and input size on one thread (as
    the demo trains it), times its iterations, scheduled ``cfg.jobs`` side by side longest first, times
    :data:`EXPECTED_OVERHEAD`.  Takes a few seconds; the weights it touches are thrown away."""
    per_iter, seconds = {}, []
    for family in families:
        exp = experiment(cfg, family)
        n = len(builders.build_dataset(exp, exp.data.train_split, train=True)) // exp.train.batch_size
        model = builders.build_model(exp_without_init(exp))
        per_iter[family] = probe_train_step(model, exp.train.batch_size, tuple(exp.data.input_size))
        seconds.append(per_iter[family] * total_iterations(exp, max(n, 1)))
    workers, _ = resolve_jobs(cfg.jobs, len(families))
    return EXPECTED_OVERHEAD * makespan(seconds, workers), per_iter


# ---------------------------------------------------------------------------------------------------- run


def run_demo(cfg: DemoConfig | None = None) -> dict:
    """Run the demo; return ``{"results": [per-family dict], "table": DataFrame, "markdown": str,
    "files": {...}, "wall_seconds": float, "cached": [families reused]}``."""
    cfg = cfg or DemoConfig()
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("demo: synthetic data in %s (%d train / %d val / %d occluded images)", cfg.data_root,
             cfg.synth_train, cfg.synth_val, cfg.synth_occluded)
    ensure_synthetic(cfg.data_root, cfg.synth_config(), progress=cfg.progress)

    results: dict[str, dict] = {}
    for family in cfg.families:
        done = _reusable(cfg, family)
        if done is not None:
            results[family] = done
    todo = [f for f in sorted(cfg.families, key=COST_ORDER.index) if f not in results]  # longest first
    if todo:
        expect, per_iter = expected_seconds(cfg, todo)
        log.info("demo: expected to take about %.0f min here (training probe, s/iteration on one thread: %s); "
                 "the bars below show the ETA", expect / 60,
                 ", ".join(f"{f} {v:.2f}" for f, v in per_iter.items()))
    trained = run_side_by_side(_train_and_evaluate, [(cfg, f, str(out / "runs")) for f in todo], todo,
                               workers=cfg.jobs, desc="demo", unit="family", progress=cfg.progress)
    for res in trained:
        results[res["family"]] = _finish_family(cfg, res)
    results = [results[f] for f in cfg.families]

    df = demo_frame(results)
    table = demo_table(df, _note(cfg))
    # Below the table: val AP with bootstrap intervals and the occluded split's AP by occlusion level.
    table.sections, stats = demo_statistics(results)
    files = {f"table_{k}": v for k, v in table.write(out / "table", float_format="%.4f").items()}
    files["plot"] = demo_plot(results, out / "accuracy_vs_cost.png")
    files["occlusion_plot"] = demo_breakdown_figure(results, out)[0]
    wall = time.perf_counter() - t0
    summary = {"wall_seconds": wall, "config": dataclasses.asdict(cfg),
               "families": {r["family"]: {k: r[k] for k in ("val", "occluded", "untrained_val", "params", "gflops",
                                                            "latency_ms", "iterations", "sec_per_iter",
                                                            "train_seconds", "cached")} for r in results},
               "statistics": stats}
    files["summary"] = atomic_write_json(out / "summary.json", summary, indent=2, default=str)
    cached = [r["family"] for r in results if r.get("cached")]
    return {"results": results, "table": df, "markdown": table.markdown(), "files": files, "wall_seconds": wall,
            "cached": cached}
