"""`make demo`: the whole harness end to end on the synthetic crowd dataset, on a CPU, in minutes.

Steps (``run_demo``):

1. generate the synthetic data if it is missing (``harness.data.synthetic.ensure_synthetic``);
2. for each family (HRNet, HRFormer, HRNeXt; their ``*-demo`` variants, 1.3-1.5M parameters) train the
   registered ``demo-<family>`` experiment through the engine, every family under the identical recipe
   (the demo's numbers are applied as overrides, so each run's ``config.json`` states them);
3. evaluate the final weights on ``val`` with the detection boxes and on ``occluded`` with GT boxes, and
   the same model *at initialisation* on ``val`` (so the table shows what training bought);
4. measure parameters, GFLOPs at the demo input size and CPU latency (batch 1);
5. write ``table.md`` / ``table.csv`` and ``accuracy_vs_cost.png`` under the output folder, print the table.

Re-running reuses every finished family (same config hash, same evaluation) and resumes an interrupted
training from its ``last.pth``; ``force=True`` retrains from scratch. Result records go to
``<out_dir>/runs`` so the demo never mixes with real runs in ``results/runs``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["DemoConfig", "DemoError", "run_demo", "FAMILIES", "DEMO_VERSION"]

FAMILIES = ("hrnet", "hrformer", "hrnext")
#: Families by training cost per iteration on a CPU, most expensive first (the order jobs are handed out).
COST_ORDER = ("hrnext", "hrformer", "hrnet")
#: Bump when what a finished family's marker means changes (evaluation protocol, table fields).
DEMO_VERSION = 1
MARKER = "demo_result.json"
TABLE_COLUMNS = ("model", "AP", "AP .5", "AP .75", "AP occluded", "untrained AP", "params (M)", "GFLOPs",
                 "latency (ms)")


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

    The recipe defaults equal the registered ``demo-<family>`` experiments (``harness.config``, where the
    tuning is documented), so ``python -m harness train demo-hrnext`` trains what the demo trains; a field
    changed here is applied to every family as a ``--set`` override and saved in each run's config.json.
    ``jobs`` (0 = one per core) trains the families side by side in single-threaded worker processes,
    which on a 2-core CPU is 1.2-1.3x faster in total than one after another on two threads.
    """

    data_root: str = "data/synthetic"
    out_dir: str = "results/demo"
    work_dir: str = "work_dirs/demo"
    # Synthetic data (the SynthConfig the demo asks for; a different config regenerates data_root).
    synth_train: int = 1000  # the SynthConfig defaults: `python -m harness synth` makes the same data
    synth_val: int = 200
    synth_occluded: int = 100
    synth_image_size: tuple = (256, 256)
    synth_seed: int = 0
    # Recipe, identical for every family.
    input_size: tuple = (128, 96)
    epochs: int = 9
    batch_size: int = 32
    lr: float = 5e-3
    augment: str = "light"  # a harness.data.transforms.AUGMENT_PRESETS name
    warmup_iters: int = 50
    max_iters: int = 0  # 0 = epochs * iterations per epoch
    flip_test: bool = True
    eval_batch_size: int = 32
    families: tuple = FAMILIES
    # Families trained side by side, one process each (0 = one per CPU core; 1 = one after another in
    # this process).  Latency is always measured afterwards, one model at a time.
    jobs: int = 0
    latency_runs: int = 20
    force: bool = False
    smoke: bool = False  # informational: set by DemoConfig.smoke_preset()
    progress: bool = True
    seed: int = 0

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
        from harness.data.transforms import AUGMENT_PRESETS

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

    def synth_config(self):
        from harness.data.synthetic import SynthConfig

        try:
            return SynthConfig(seed=self.synth_seed, image_size=self.synth_image_size,
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


def _experiment(cfg: DemoConfig, family: str):
    from harness.config import ConfigError, get_experiment

    try:
        exp = get_experiment(f"demo-{family}", cfg.overrides())
    except ConfigError as e:
        raise DemoError(f"DemoConfig -> experiment demo-{family}: {e}") from None
    return dataclasses.replace(exp, work_dir=str(Path(cfg.work_dir) / family))


def _eval_key(cfg: DemoConfig, exp) -> str:
    """What a finished family's numbers depend on beyond the training config."""
    from harness.config import config_hash

    return json.dumps({"v": DEMO_VERSION, "hash": config_hash(exp), "latency_runs": cfg.latency_runs}, sort_keys=True)


def _gflops(model_name: str, model, hw: tuple[int, int]) -> float | None:
    """GFLOPs at the demo size: the profiler's paper convention when available, else fvcore's count."""
    import torch

    try:
        from harness import profile
    except ImportError:
        return None
    static = getattr(profile, "profile_static", None)
    if static is not None:
        try:
            st = static(model_name, tuple(hw))
            for attr in ("gflops_paper_convention", "gflops", "gflops_fvcore"):
                v = st.get(attr) if isinstance(st, dict) else getattr(st, attr, None)
                if v:
                    return float(v)
        except Exception as e:  # informative only; the table shows "-" rather than failing the demo
            log.debug("profile_static(%s) failed: %s", model_name, e)
    x = torch.zeros(1, 3, *hw)
    try:
        if hasattr(profile, "hook_flops"):
            return float(profile.hook_flops(model.eval(), x))
        return float(profile.fvcore_flops(model.eval(), x)[0]) / 1e9
    except Exception as e:
        log.warning("GFLOPs of %s at %dx%d could not be counted: %s", model_name, hw[0], hw[1], e)
        return None


def measure_latency(model, hw: tuple[int, int], runs: int) -> float:
    """Median wall time (ms) of one batch-1 forward pass on the CPU after 2 warm-up passes."""
    import torch

    model = model.eval().cpu()
    x = torch.randn(1, 3, *hw)
    times = []
    with torch.inference_mode():
        for i in range(runs + 2):
            t0 = time.perf_counter()
            model(x)
            if i >= 2:
                times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def _clear_family(cfg: DemoConfig, family: str, model_name: str) -> None:
    """Forget a family's earlier demo run: its work dir and its records (both owned by the demo)."""
    wd = Path(cfg.work_dir) / family
    if wd.exists():
        shutil.rmtree(wd)
    runs = Path(cfg.out_dir) / "runs"
    for ds in ("synthetic",):
        d = runs / ds / model_name
        if d.exists():
            shutil.rmtree(d)


def _untrained_metrics(exp, device, progress: bool) -> dict:
    """The same model the trainer starts from (same seed), scored on val with the det boxes."""
    import torch

    from harness.engine import builders
    from harness.engine.testing import exp_without_init
    from harness.engine.trainer import seed_everything

    # The trainer seeds, then builds: the same two calls give the same initial weights.
    seed_everything(exp.train.seed, False)
    model = builders.build_model(exp_without_init(exp)).to(device)
    ds = builders.build_dataset(exp, "val", train=False, eval_set=True)
    with torch.no_grad():
        return builders.evaluate(model, ds, exp, device=device, progress=progress)


def _reusable(cfg: DemoConfig, family: str) -> dict | None:
    """The finished family's marker if it can be reused; otherwise clear what cannot be resumed."""
    from harness.config import config_hash, load_config
    from harness.engine.checkpoint import find_resume

    exp = _experiment(cfg, family)
    wd = Path(exp.work_dir)
    marker = wd / MARKER
    key = _eval_key(cfg, exp)
    if cfg.force:
        log.info("%s: --force, retraining from scratch", exp.name)
        _clear_family(cfg, family, exp.model.name)
    elif marker.is_file():
        try:
            done = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log.warning("%s: unreadable %s (%s); redoing this family", exp.name, marker, e)
            done = {}
        if done.get("key") == key:
            log.info("%s: finished run found in %s (config %s); reusing it (--force retrains)", exp.name, wd,
                     done["config_hash"][:8])
            return {**done, "cached": True}
        log.info("%s: the finished run in %s used other settings; retraining", exp.name, wd)
        _clear_family(cfg, family, exp.model.name)
    elif (wd / "config.json").is_file():
        try:
            same = config_hash(load_config(wd / "config.json")) == config_hash(exp)
        except Exception:
            same = False
        if not same:
            log.info("%s: %s holds an interrupted run with other settings; starting over", exp.name, wd)
            _clear_family(cfg, family, exp.model.name)
        elif find_resume(wd) is not None:
            log.info("%s: resuming the interrupted run in %s", exp.name, wd)
    return None


def _train_and_evaluate(job: tuple[DemoConfig, str, str]) -> dict:
    """Train (or resume) one family and score it: val (det boxes), occluded (GT boxes), untrained val.

    Module-level and fed plain data so that :func:`harness.parallel.run_jobs` can run it in a worker."""
    cfg, family, results_root = job
    import torch

    from harness.engine import Trainer, run_test
    from harness.engine.checkpoint import LAST

    exp = _experiment(cfg, family)
    wd = Path(exp.work_dir)
    t0 = time.perf_counter()
    trainer = Trainer(exp, work_dir=wd, resume="auto", device="cpu", progress=cfg.progress,
                      results_root=wd / "records")
    fit = trainer.fit()
    train_s = time.perf_counter() - t0
    ckpt = wd / LAST

    t1 = time.perf_counter()
    val = run_test(exp, ckpt, device="cpu", results_root=results_root, splits=("val",), progress=cfg.progress,
                   extra={"stage": "demo"})[0]
    occ_exp = dataclasses.replace(exp, eval=dataclasses.replace(exp.eval, boxes="gt", det_file=None,
                                                                splits=("occluded",)))
    occ = run_test(occ_exp, ckpt, device="cpu", results_root=results_root, splits=("occluded",),
                   progress=cfg.progress, extra={"stage": "demo"})[0]
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
    import torch

    from harness.config import config_hash
    from harness.engine import builders
    from harness.engine.testing import load_for_eval

    exp = _experiment(cfg, res["family"])
    model, _ = load_for_eval(exp, res["checkpoint"], torch.device("cpu"))
    hw = tuple(exp.data.input_size)
    out = {**res, "key": _eval_key(cfg, exp), "config_hash": config_hash(exp),
           "params": int(builders.count_params(model)), "gflops": _gflops(exp.model.name, model, hw),
           "latency_ms": measure_latency(model, hw, cfg.latency_runs), "input_size": list(hw)}
    atomic_write_text(Path(exp.work_dir) / MARKER, json.dumps(out, indent=2, sort_keys=True) + "\n")
    return {**out, "cached": False}


# --------------------------------------------------------------------------------------------- table & plot


def make_demo_table(results: list[dict]):
    """One row per family -> DataFrame with :data:`TABLE_COLUMNS` (metrics in [0, 1])."""
    import pandas as pd

    from harness.results import display_name

    rows = []
    for r in results:
        rows.append({
            "model": display_name(r["model"]),
            "AP": r["val"].get("AP"), "AP .5": r["val"].get("AP .5"), "AP .75": r["val"].get("AP .75"),
            "AP occluded": r["occluded"].get("AP"), "untrained AP": r["untrained_val"].get("AP"),
            "params (M)": r["params"] / 1e6, "GFLOPs": r["gflops"], "latency (ms)": r["latency_ms"],
        })
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def table_markdown(df, cfg: DemoConfig) -> str:
    def fmt(col: str, v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if col == "model":
            return str(v)
        if col in ("params (M)", "GFLOPs"):
            return f"{v:.2f}"
        if col == "latency (ms)":
            return f"{v:.1f}"
        return f"{v:.3f}"

    h, w = cfg.input_size
    head = ("| " + " | ".join(TABLE_COLUMNS) + " |\n|" + "|".join(
        ":---" if c == "model" else "---:" for c in TABLE_COLUMNS) + "|\n")
    body = "".join("| " + " | ".join(fmt(c, row[c]) for c in TABLE_COLUMNS) + " |\n" for _, row in df.iterrows())
    notes = (f"\nSynthetic crowds, {h}x{w} input, identical recipe for all families (AdamW lr {cfg.lr:g}, "
             f"batch {cfg.batch_size}, {cfg.epochs} epoch(s)"
             + (f", at most {cfg.max_iters} iterations" if cfg.max_iters else "") + "). "
             "AP / AP .5 / AP .75: `val` with detection boxes; AP occluded: `occluded` split with GT boxes; "
             "untrained AP: the same model at initialisation on `val`. GFLOPs at the demo input size; latency: "
             "median CPU forward pass, batch 1.\n")
    return head + body + notes


def plot_accuracy_vs_cost(results: list[dict], out_png: Path) -> Path:
    """Two panels, AP on val against GFLOPs and against CPU latency; families coloured. Trained models are
    filled circles, the same models untrained hollow circles joined to them, occluded-split AP squares."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from harness.report.figures import FAMILY_COLORS, OTHER_COLOR
    from harness.results import display_name
    from harness.results.schema import canonical_family

    fig = Figure(figsize=(10, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.25, wspace=0.22)
    axes = fig.subplots(1, 2)
    panels = (("gflops", "GFLOPs at the demo input size"), ("latency_ms", "CPU latency, batch 1 (ms)"))
    ys_all = [r["val"].get("AP", 0.0) for r in results] + [r["untrained_val"].get("AP", 0.0) for r in results] \
        + [r["occluded"].get("AP", 0.0) for r in results]
    for ax, (key, label) in zip(axes, panels):
        ax.set_xlabel(label, fontsize=10)
        ax.set_ylabel("AP", fontsize=10)
        ax.grid(True, color="0.9")
        ax.set_axisbelow(True)
        xs = [r.get(key) for r in results]
        # Labels alternate above / below their point in x order, so close neighbours do not collide.
        rank = {i: n for n, i in enumerate(sorted((i for i, x in enumerate(xs) if x is not None),
                                                  key=lambda i: xs[i]))}
        for i, (r, x) in enumerate(zip(results, xs)):
            if x is None:
                continue
            c = FAMILY_COLORS.get(canonical_family(r["family"]), OTHER_COLOR)
            ap, ap0, occ = r["val"].get("AP", 0.0), r["untrained_val"].get("AP", 0.0), r["occluded"].get("AP", 0.0)
            ax.plot([x, x], [ap0, ap], color=c, lw=1.0, ls=":", zorder=1)
            ax.scatter([x], [ap0], s=50, facecolors="white", edgecolors=c, linewidths=1.5, zorder=3)
            ax.scatter([x], [occ], s=50, marker="s", color=c, alpha=0.55, zorder=3)
            ax.scatter([x], [ap], s=70, color=c, zorder=4)
            ax.annotate(display_name(r["model"]), (x, ap), textcoords="offset points",
                        xytext=(7, 6) if rank[i] % 2 == 0 else (7, -14), fontsize=9, color=c)
        valid = [x for x in xs if x is not None]
        if valid:
            lo, hi = min(valid), max(valid)
            pad = max((hi - lo) * 0.25, hi * 0.1, 1e-3)
            ax.set_xlim(max(lo - pad, 0), hi + pad * 2.5)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        top = max(ys_all + [0.05])
        ax.set_ylim(-0.03, min(1.0, top * 1.15 + 0.03))
        ax.set_title(f"AP vs {'GFLOPs' if key == 'gflops' else 'latency'}", fontsize=11)
    fams = []
    for r in results:
        f = canonical_family(r["family"])
        if f not in fams:
            fams.append(f)
    handles = [Line2D([], [], ls="", marker="o", ms=8, color=FAMILY_COLORS.get(f, OTHER_COLOR), label=f)
               for f in fams]
    handles += [Line2D([], [], ls="", marker="o", ms=8, color="0.35", label="trained, val (det boxes)"),
                Line2D([], [], ls="", marker="o", ms=8, mfc="white", mec="0.35", mew=1.5, label="untrained, val"),
                Line2D([], [], ls="", marker="s", ms=8, color="0.35", alpha=0.55, label="trained, occluded (GT boxes)")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.01), handletextpad=0.3, columnspacing=1.0)
    fig.suptitle("Demo: HRNet vs HRFormer vs HRNeXt on synthetic crowds (identical recipe)", fontsize=12)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    return out_png


# ---------------------------------------------------------------------------------------------------- run


def run_demo(cfg: DemoConfig | None = None) -> dict:
    """Run the demo; return ``{"results": [per-family dict], "table": DataFrame, "files": {...},
    "wall_seconds": float, "cached": [families reused]}``."""
    from harness.data.synthetic import ensure_synthetic

    cfg = cfg or DemoConfig()
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("demo: synthetic data in %s (%d train / %d val / %d occluded images)", cfg.data_root,
             cfg.synth_train, cfg.synth_val, cfg.synth_occluded)
    ensure_synthetic(cfg.data_root, cfg.synth_config(), progress=cfg.progress)
    from tqdm import tqdm

    results: dict[str, dict] = {}
    for family in cfg.families:
        done = _reusable(cfg, family)
        if done is not None:
            results[family] = done
    todo = [f for f in sorted(cfg.families, key=COST_ORDER.index) if f not in results]  # longest first
    if todo:
        from harness.parallel import resolve_jobs, run_jobs

        workers, threads = resolve_jobs(cfg.jobs, len(todo))
        log.info("demo: training %s (%s)", ", ".join(todo), "one after another" if workers == 1 else
                 f"{workers} side by side, {threads} torch thread(s) each")
        jobs = [(cfg, f, str(out / "runs")) for f in todo]
        if workers == 1:
            # The outer bar counts families; the engine's training/inference bars open beneath it.
            bar = tqdm(total=len(todo), desc="demo", unit="family", disable=not cfg.progress, dynamic_ncols=True)
            trained = []
            try:
                for job in jobs:
                    bar.set_postfix_str(job[1])
                    trained.append(_train_and_evaluate(job))
                    bar.update(1)
            finally:
                bar.close()
        else:
            trained = run_jobs(_train_and_evaluate, jobs, jobs=workers, names=todo)
        for res in trained:
            results[res["family"]] = _finish_family(cfg, res)
    results = [results[f] for f in cfg.families]

    df = make_demo_table(results)
    md = table_markdown(df, cfg)
    files = {
        "table_md": atomic_write_text(out / "table.md", md),
        "table_csv": atomic_write_text(out / "table.csv", df.to_csv(index=False, float_format="%.4f")),
        "plot": plot_accuracy_vs_cost(results, out / "accuracy_vs_cost.png"),
    }
    wall = time.perf_counter() - t0
    summary = {"wall_seconds": wall, "config": dataclasses.asdict(cfg),
               "families": {r["family"]: {k: r[k] for k in ("val", "occluded", "untrained_val", "params", "gflops",
                                                            "latency_ms", "iterations", "sec_per_iter",
                                                            "train_seconds", "cached")} for r in results}}
    files["summary"] = atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    cached = [r["family"] for r in results if r.get("cached")]
    return {"results": results, "table": df, "markdown": md, "files": files, "wall_seconds": wall,
            "cached": cached}
