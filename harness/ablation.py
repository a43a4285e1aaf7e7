"""Ablations of HRNeXt's context modules: named, typed grids of backbone switches, trained and compared.

An :class:`Ablation` is a baseline plus a list of :class:`Variation` s, each a dict of
``HRNeXtConfig`` overrides (see ``backbones/hrnext.py`` for the switches), over one registered
experiment (dataset + recipe), optionally shortened by ``experiment_overrides`` and repeated over
``seeds``.  :func:`run_ablation` turns every (variation, seed) *cell* into an
:class:`~harness.config.Experiment`, trains it with the engine's :class:`~harness.engine.Trainer`
in its own work dir and evaluates it once at the end::

    work_dirs/ablations/<ablation>/<variation>-s<seed>-<key>/   one cell (key: hash of its config)
        config.json, log.csv, last.pth ...                      the engine's usual files
        ablation_cell.json                                      done marker: AP, throughput, costs

A cell whose marker exists is skipped; a cell with a checkpoint but no marker was interrupted and is
resumed through the engine's ``resume="auto"``.  The comparison goes to ``results/ablations/<name>/``:
``table.{md,tex,csv}`` (AP, delta AP to the baseline with its spread over seeds, params, GFLOPs,
measured training throughput), ``delta_ap_vs_cost.png`` and ``results.json``.

Spread of a delta: the seeds are paired (every cell of a seed shares data order and initial RNG), so
the spread of ``AP(variation) - AP(baseline)`` is the sample std (ddof=1) of the per-seed differences;
with a single seed it is undefined (NaN, shown as "-").
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.io import atomic_write_bytes, atomic_write_text
from harness.config import ConfigError, Experiment, config_hash, get_experiment

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
BASELINE = "baseline"
MARKER = "ablation_cell.json"
TABLE_STEM = "table"
PLOT_NAME = "delta_ap_vs_cost.png"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")


class AblationError(ConfigError):
    """An ablation definition or run is invalid; the message names the ablation and the field."""


@functools.lru_cache(maxsize=1)
def switch_names() -> tuple[str, ...]:
    """Every ``HRNeXtConfig`` field, i.e. every key a variation may override."""
    from backbones.hrnext import HRNeXtConfig

    return tuple(f.name for f in dataclasses.fields(HRNeXtConfig))


def _jsonable(v: Any) -> Any:
    """Tuples -> lists, recursively: overrides are stored in JSON configs and hashed as JSON."""
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def _check_overrides(where: str, overrides: Any) -> dict:
    if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
        raise AblationError(f"{where}: must be a dict of HRNeXtConfig field -> value, got {overrides!r}")
    unknown = sorted(set(overrides) - set(switch_names()))
    if unknown:
        raise AblationError(f"{where}: unknown switch {unknown[0]!r}; HRNeXtConfig fields: "
                            f"{', '.join(switch_names())}")
    return {k: _jsonable(v) for k, v in overrides.items()}


@dataclass(frozen=True)
class Variation:
    """One row of an ablation: a name, the backbone switches it changes and a note for the table."""

    name: str
    overrides: dict
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SLUG.match(self.name):
            raise AblationError(f"Variation.name: must be a lower-case slug ([a-z0-9_.+-]), got {self.name!r}")
        if self.name == BASELINE:
            raise AblationError(f"Variation.name: {BASELINE!r} is reserved for the ablation's baseline")
        object.__setattr__(self, "overrides", _check_overrides(f"Variation {self.name!r}.overrides", self.overrides))
        if not isinstance(self.note, str):
            raise AblationError(f"Variation {self.name!r}.note: must be a string, got {self.note!r}")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: a variation (or the baseline) at one seed."""

    ablation: str
    variation: str
    seed: int
    overrides: dict  # the full backbone overrides of the cell (experiment's, baseline's, variation's)
    exp: Experiment

    @property
    def key(self) -> str:
        """Hash of everything that changes the cell's result: the config hash plus ``train.max_iters``
        (which the config hash leaves out because it only cuts a run short)."""
        text = f"{config_hash(self.exp)}:{self.exp.train.max_iters}"
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def work_dir(self, work_root: str | os.PathLike) -> Path:
        return Path(work_root) / self.ablation / f"{self.variation}-s{self.seed}-{self.key}"


@dataclass(frozen=True)
class Ablation:
    """A named grid: ``baseline`` + ``variations`` over ``base_experiment``, repeated over ``seeds``.

    Args:
        name: slug; outputs go to ``<out_dir>/<name>/``.
        base_experiment: a registered experiment on an HRNeXt model (``harness.config.list_experiments``).
        variations: the rows; each overrides a few ``HRNeXtConfig`` fields.
        baseline_overrides: switches applied to every cell (the baseline included), e.g. to pin a field.
        seeds: training seeds; every cell runs once per seed.
        experiment_overrides: dotted experiment keys (as ``--set``), e.g. a shorter schedule for the grid.
        eval_split: the split every cell is evaluated on (default: the experiment's first eval split).
        synthetic: if set, the synthetic dataset with this config is generated under ``data.root`` first.
        description: one line for the table caption and ``--list``.
    """

    name: str
    base_experiment: str
    variations: tuple
    baseline_overrides: dict = field(default_factory=dict)
    seeds: tuple = (0,)
    experiment_overrides: dict = field(default_factory=dict)
    eval_split: str | None = None
    synthetic: Any = None  # harness.data.synthetic.SynthConfig | None
    description: str = ""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass normalisation
        if not isinstance(self.name, str) or not _SLUG.match(self.name):
            raise AblationError(f"Ablation.name: must be a lower-case slug ([a-z0-9_.+-]), got {self.name!r}")
        where = f"ablation {self.name!r}"
        if not isinstance(self.variations, (list, tuple)) or not self.variations \
                or not all(isinstance(v, Variation) for v in self.variations):
            raise AblationError(f"{where}: variations must be a non-empty list of Variation")
        set_("variations", tuple(self.variations))
        names = [v.name for v in self.variations]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise AblationError(f"{where}: variations: duplicate name(s) {dup}")
        set_("baseline_overrides", _check_overrides(f"{where}: baseline_overrides", self.baseline_overrides))
        set_("seeds", _check_seeds(f"{where}: seeds", self.seeds))
        if not isinstance(self.experiment_overrides, dict):
            raise AblationError(f"{where}: experiment_overrides must be a dict of dotted key -> value")
        exp = self.experiment()  # validates base_experiment and experiment_overrides
        if exp.family != "hrnext":
            raise AblationError(f"{where}: base_experiment {self.base_experiment!r} trains {exp.model.name!r}; "
                                f"the switches belong to the HRNeXt family")
        if self.eval_split is not None and (not isinstance(self.eval_split, str) or not self.eval_split):
            raise AblationError(f"{where}: eval_split must be a split name or None, got {self.eval_split!r}")
        if self.synthetic is not None:
            from harness.data.synthetic import SynthConfig

            if not isinstance(self.synthetic, SynthConfig):
                raise AblationError(f"{where}: synthetic must be a SynthConfig or None")
            if exp.data.dataset != "synthetic":
                raise AblationError(f"{where}: synthetic data given but data.dataset is {exp.data.dataset!r}")
        # Every cell's backbone config is validated now (cheap: no model is built), so a bad value
        # fails before hours of training rather than in the fifth cell.
        import backbones

        for var in (None, *self.variations):
            ov = self.cell_overrides(var)
            try:
                backbones.get_config(exp.model.name, **ov)
            except (TypeError, ValueError) as e:
                raise AblationError(f"{where}: variation {var.name if var else BASELINE!r}: {e}") from None

    # ------------------------------------------------------------------------------------------
    def experiment(self) -> Experiment:
        """The base experiment with ``experiment_overrides`` applied."""
        try:
            return get_experiment(self.base_experiment, dict(self.experiment_overrides) or None)
        except ConfigError as e:
            raise AblationError(f"ablation {self.name!r}: base_experiment/experiment_overrides: {e}") from None

    def cell_overrides(self, var: Variation | None) -> dict:
        exp_ov = dict(self.experiment().model.overrides)
        return {**exp_ov, **self.baseline_overrides, **(var.overrides if var else {})}

    def variation(self, name: str) -> Variation | None:
        return None if name == BASELINE else next(v for v in self.variations if v.name == name)

    def row_names(self) -> list[str]:
        return [BASELINE] + [v.name for v in self.variations]

    def cells(self, seeds: tuple[int, ...] | None = None) -> list[Cell]:
        """Every (row, seed) cell, baseline first; ``seeds`` replaces the ablation's seeds."""
        seeds = _check_seeds(f"ablation {self.name!r}: seeds", seeds) if seeds is not None else self.seeds
        base = self.experiment()
        split = self.eval_split or base.eval.splits[0]
        out = []
        for seed in seeds:
            for var in (None, *self.variations):
                row = var.name if var else BASELINE
                ov = self.cell_overrides(var)
                exp = dataclasses.replace(
                    base, name=f"ablation-{self.name}-{row}-s{seed}",
                    model=dataclasses.replace(base.model, overrides=ov),
                    train=dataclasses.replace(base.train, seed=seed),
                    eval=dataclasses.replace(base.eval, splits=(split,)))
                out.append(Cell(self.name, row, seed, ov, exp))
        return out


def _check_seeds(where: str, seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, int) or not isinstance(seeds, (list, tuple)) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise AblationError(f"{where}: must be a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise AblationError(f"{where}: repeated seed in {list(seeds)}")
    return tuple(int(s) for s in seeds)


# ---------------------------------------------------------------------------------------------- registry
def _default() -> Ablation:
    from harness.data.synthetic import SynthConfig

    return Ablation(
        name="default",
        base_experiment="demo-hrnext",
        description="HRNeXt context modules on the synthetic crowd data (hrnext-demo, the demo's recipe for "
                    "4 epochs, 128x96, CPU, < 30 min with two cells side by side)",
        variations=[
            Variation("no-gate", {"gate": False}, "global FFN without its spatial gate"),
            Variation("add-gate", {"gate_mode": "add"}, "gate added instead of multiplied"),
            Variation("static-dlp", {"dlp_dynamic": False}, "static depthwise conv in local perception"),
            Variation("static-ffn", {"ffn_dynamic": False}, "static 1x1/dw convs in the dynamic FFN"),
            Variation("block-hrformer", {"block": "hrformer"}, "HRFormer window-attention block"),
            Variation("block-hrnet", {"block": "hrnet"}, "HRNet basic block"),  # the cheapest cell last
        ],
        seeds=(0,),
        # The demo's data (the SynthConfig defaults, data/synthetic): generated once, shared with `make demo`.
        synthetic=SynthConfig(),
        experiment_overrides={
            # The demo's recipe cut to 4 epochs (~436 iterations of batch 32, ~1 s each for hrnext-demo on one
            # thread); scored with GT boxes so the detector's jitter does not blur the differences.
            "train.epochs": 4, "train.ckpt_interval_iters": 50, "eval.boxes": "gt",
        },
        eval_split="val",
    )


def _coco_paper() -> Ablation:
    return Ablation(
        name="coco-paper",
        base_experiment="coco-hrnext-s-256x192-fair",
        description="every HRNeXt switch on hrnext-s, COCO train2017 -> val2017, the paper's full recipe (GPU)",
        variations=[
            Variation("static-dlp", {"dlp_dynamic": False}, "static depthwise conv in local perception"),
            Variation("dlp-k5", {"dlp_kernel_size": 5}, "5x5 local perception"),
            Variation("kernels-1", {"num_kernels": (1, 1, 1, 1), "stage1_kernels": 1}, "one kernel everywhere"),
            Variation("kernels-x2", {"num_kernels": (8, 4, 2, 1), "stage1_kernels": 8}, "twice the kernels"),
            Variation("no-gate", {"gate": False}, "global FFN without its spatial gate"),
            Variation("gate-5x5", {"gate_convs": ((5, 1),)}, "gate: 5x5 only"),
            Variation("gate-7x7d3", {"gate_convs": ((7, 3),)}, "gate: 7x7 dilation 3 only"),
            Variation("add-gate", {"gate_mode": "add"}, "gate added instead of multiplied"),
            Variation("static-ffn", {"ffn_dynamic": False}, "static convs in the dynamic FFN"),
            Variation("mlp-2", {"mlp_ratio": 2.0}, "FFN expansion 2 instead of 4"),
            Variation("no-layer-scale", {"layer_scale_init": None}, "no layer scale"),
            Variation("no-drop-path", {"drop_path_rate": 0.0}, "no stochastic depth"),
            Variation("no-branch-norm", {"branch_norm": False}, "no LayerNorm at branch ends"),
            Variation("block-hrformer", {"block": "hrformer"}, "HRFormer window-attention block"),
            Variation("block-hrnet", {"block": "hrnet"}, "HRNet basic block"),
        ],
        seeds=(0,),
        eval_split="val",
    )


_FACTORIES = {"default": _default, "coco-paper": _coco_paper}


def list_ablations() -> list[str]:
    return sorted(_FACTORIES)


def get_ablation(name: str) -> Ablation:
    if name not in _FACTORIES:
        raise AblationError(f"unknown ablation {name!r}; registered: {list_ablations()}")
    return _FACTORIES[name]()


# --------------------------------------------------------------------------------------------- costs
@functools.lru_cache(maxsize=64)
def _costs_cached(model: str, num_keypoints: int, overrides_json: str, hw: tuple[int, int]) -> dict:
    import torch

    from harness import create_pose_model

    overrides = json.loads(overrides_json)
    model_ = create_pose_model(model, num_keypoints=num_keypoints, **overrides).eval()
    params = sum(p.numel() for p in model_.parameters())
    x = torch.zeros(1, 3, *hw)
    try:
        from harness.profile import fvcore_flops

        flops = fvcore_flops(model_, x)[0]
    except ImportError:  # the profile module is optional for this count; fvcore itself is a dependency
        from fvcore.nn import FlopCountAnalysis

        fca = FlopCountAnalysis(model_, x)
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        flops = int(fca.total())
    return {"params": int(params), "gflops": flops / 1e9, "flop_counter": "fvcore (1 multiply-add = 1 flop)"}


def cell_costs(cell: Cell) -> dict:
    """Params and fvcore GFLOPs (batch 1, the experiment's input size) of the cell's pose model."""
    e = cell.exp
    return dict(_costs_cached(e.model.name, e.model.num_keypoints, json.dumps(cell.overrides, sort_keys=True),
                              tuple(e.data.input_size)))


# ------------------------------------------------------------------------------------------- running
def read_marker(work_dir: Path, cell: Cell) -> dict | None:
    """The cell's done marker, or None when absent, unreadable or from another config."""
    p = work_dir / MARKER
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable done marker (%s); the cell will be re-evaluated", p, e)
        return None
    if d.get("key") != cell.key:
        log.warning("%s: marker of another config (key %s, expected %s); the cell will be re-run",
                    p, d.get("key"), cell.key)
        return None
    return d


def measured_throughput(work_dir: Path) -> float:
    """Training images/s from the engine's ``log.csv``: median over its rows (each a log-interval
    window), the first row (warm-up, allocator growth) left out when there are others."""
    p = work_dir / "log.csv"
    if not p.is_file():
        return float("nan")
    try:
        vals = pd.read_csv(p)["img_per_s"].astype(float).to_numpy()
    except (KeyError, ValueError, pd.errors.EmptyDataError) as e:
        log.warning("%s: cannot read img_per_s (%s)", p, e)
        return float("nan")
    vals = vals[1:] if len(vals) > 1 else vals
    return float(np.median(vals)) if len(vals) else float("nan")


def final_train_loss(work_dir: Path) -> float:
    """Mean training loss over the last quarter of ``log.csv``'s rows (at least one row): a low-noise
    "how well did it fit under the same budget" signal next to AP, which short CPU runs leave near 0."""
    p = work_dir / "log.csv"
    try:
        vals = pd.read_csv(p)["loss"].astype(float).to_numpy()
    except (OSError, KeyError, ValueError, pd.errors.EmptyDataError):
        return float("nan")
    return float(vals[-max(1, len(vals) // 4):].mean()) if len(vals) else float("nan")


def heldout_loss(cell: Cell, work_dir: Path, *, device: str | None = None, batch_size: int = 64) -> float:
    """Heatmap MSE (the training loss) of the cell's final weights on its eval split, GT boxes, no
    augmentation.  A dense, low-noise companion to AP: short CPU grids localise to a couple of heatmap
    pixels, which OKS AP (strict for small people) still scores as 0 while this loss already ranks them."""
    import torch

    from harness.data import AugmentConfig
    from harness.engine import KeypointMSELoss, builders
    from harness.engine.testing import load_for_eval

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, _ = load_for_eval(cell.exp, work_dir / "last.pth", dev)
    ds = builders.build_dataset(cell.exp, cell.exp.eval.splits[0], train=True)  # train=True: targets
    ds.augment = AugmentConfig(flip_prob=0.0, half_body_prob=0.0, scale_factor=0.0, rot_prob=0.0, shift_prob=0.0)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    crit, total, n = KeypointMSELoss(), 0.0, 0
    with torch.no_grad():
        for b in loader:
            out = model(b["img"].to(dev))
            total += float(crit(out, b["heatmaps"].to(dev), b["target_weight"].to(dev))) * len(out)
            n += len(out)
    return total / max(n, 1)


def run_cell(cell: Cell, work_root: str | os.PathLike, *, device: str | None = None, force: bool = False,
             progress: bool = True) -> dict:
    """Train (or resume) and evaluate one cell; returns its marker dict (also written as the done marker)."""
    from harness.engine import Trainer, find_resume, run_test

    wd = cell.work_dir(work_root)
    if force and wd.exists():
        shutil.rmtree(wd)  # this cell's own folder: a forced re-run starts from nothing
    done = read_marker(wd, cell)
    if done is not None:
        log.info("%s/%s seed %d: done (AP %.4f), skipped", cell.ablation, cell.variation, cell.seed, done["AP"])
        return {**done, "skipped": True}
    resumed = find_resume(wd) is not None
    if resumed:
        log.info("%s/%s seed %d: resuming the interrupted run in %s", cell.ablation, cell.variation, cell.seed, wd)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trainer = Trainer(cell.exp, work_dir=wd, resume="auto", device=device, progress=progress)
    fit = trainer.fit()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    ckpt = wd / "last.pth"
    if not ckpt.is_file():
        raise AblationError(f"{wd}: training finished without writing last.pth")
    res = run_test(cell.exp, ckpt, device=device, results_root=wd / "records", progress=progress,
                   extra={"ablation": cell.ablation, "variation": cell.variation})[0]
    val_loss = heldout_loss(cell, wd, device=device)
    cpu2, wall2 = time.process_time(), time.perf_counter()
    metrics = {k: float(v) for k, v in res["metrics"].items() if isinstance(v, (int, float))}
    marker = {
        "ablation": cell.ablation, "variation": cell.variation, "seed": cell.seed, "key": cell.key,
        "config_hash": config_hash(cell.exp), "overrides": cell.overrides, "split": res["split"],
        "AP": metrics.get("AP", float("nan")), "metrics": metrics,
        "iterations": fit.global_iter, "iterations_this_run": len(fit.losses),
        "batch_size": cell.exp.train.batch_size,
        "train_img_per_s": measured_throughput(wd), "final_train_loss": final_train_loss(wd),
        "val_loss": val_loss,
        "train_cpu_s": cpu1 - cpu0, "train_wall_s": wall1 - wall0,
        "eval_cpu_s": cpu2 - cpu1, "eval_wall_s": wall2 - wall1,
        "resumed": resumed, **cell_costs(cell),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(wd / MARKER, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return {**marker, "skipped": False}


@dataclass
class AblationResult:
    ablation: Ablation
    cells: pd.DataFrame  # one row per (variation, seed)
    table: pd.DataFrame  # one row per variation (aggregated)
    out_dir: Path
    files: list[Path]
    trained: int  # cells trained (or resumed) by this call
    skipped: int  # cells found finished
    cpu_s: float  # CPU seconds of this call (this process and its workers), data generation included
    wall_s: float


def run_ablation(name: str | Ablation, *, seeds: tuple[int, ...] | None = None, force: bool = False,
                 out_dir: str | os.PathLike = "results/ablations",
                 work_root: str | os.PathLike = "work_dirs/ablations", device: str | None = None,
                 progress: bool = True, report_only: bool = False, threads: int | None = None,
                 jobs: int = 1) -> AblationResult:
    """Run every cell of ablation ``name`` (skipping finished ones) and write its table, plot and JSON.

    ``report_only`` trains nothing: it tabulates the finished cells (an error if the baseline has none).
    ``threads`` sets torch's intra-op CPU threads for the run (restored afterwards); on a CPU shared
    with other jobs one thread is several times faster than OpenMP threads contending for cores.
    ``jobs`` > 1 trains that many cells side by side in worker processes (0 = one per CPU core), each
    with cores/jobs threads (:mod:`harness.parallel`); training throughput is then reported per CPU-second.
    """
    import torch
    from tqdm import tqdm

    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise AblationError(f"threads: must be a positive integer, got {threads!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_ablation(name, seeds=seeds, force=force, out_dir=out_dir, work_root=work_root, device=device,
                             progress=progress, report_only=report_only, tqdm=tqdm, jobs=jobs)
    finally:
        torch.set_num_threads(old_threads)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def _run_cell_job(job: tuple) -> dict:
    cell, work_root, device, force, progress = job
    return run_cell(cell, work_root, device=device, force=force, progress=progress)


def _run_ablation(name, *, seeds, force, out_dir, work_root, device, progress, report_only, tqdm,
                  jobs=1) -> AblationResult:
    abl = name if isinstance(name, Ablation) else get_ablation(name)
    cells = abl.cells(seeds)
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    if abl.synthetic is not None and not report_only:
        from harness.data.synthetic import ensure_synthetic
        from harness.engine.builders import resolve_path

        # The same resolution the engine applies to data.root (working directory, else repo root).
        ensure_synthetic(resolve_path(abl.experiment().data.root), abl.synthetic, progress=progress)
    from harness.parallel import resolve_jobs, run_jobs

    todo = [] if report_only else [c for c in cells if force or read_marker(c.work_dir(work_root), c) is None]
    done: dict[int, dict] = {}
    workers, threads = resolve_jobs(jobs, len(todo)) if todo else (1, 0)
    if workers > 1:
        log.info("ablation %s: %d cell(s) to train, %d side by side (%d thread(s) each)", abl.name, len(todo),
                 workers, threads)
        out = run_jobs(_run_cell_job, [(c, str(work_root), device, force, progress) for c in todo], jobs=workers,
                       names=[f"{c.variation}/s{c.seed}" for c in todo])
        done = {id(c): m for c, m in zip(todo, out)}
    rows, trained, skipped = [], 0, 0
    bar = tqdm(cells, desc=f"ablation {abl.name}", unit="cell", disable=not progress or bool(done),
               dynamic_ncols=True)
    for cell in bar:
        bar.set_postfix(cell=f"{cell.variation}/s{cell.seed}")
        if id(cell) in done:
            m = done[id(cell)]
        elif report_only:
            m = read_marker(cell.work_dir(work_root), cell)
            if m is None:
                log.warning("%s/%s seed %d: not finished; left out of the report", abl.name, cell.variation,
                            cell.seed)
                continue
            m = {**m, "skipped": True}
        else:
            m = run_cell(cell, work_root, device=device, force=force, progress=progress)
        if "val_loss" not in m and not (report_only and not (cell.work_dir(work_root) / "last.pth").is_file()):
            # A marker from before the held-out loss existed: add it (cheap, no training).
            wd = cell.work_dir(work_root)
            m["val_loss"] = heldout_loss(cell, wd, device=device)
            atomic_write_text(wd / MARKER, json.dumps({k: v for k, v in m.items() if k != "skipped"}, indent=2,
                                                       sort_keys=True) + "\n")
        trained += not m["skipped"]
        skipped += m["skipped"]
        rows.append(m)
    bar.close()
    cells_df = pd.DataFrame(rows)
    if cells_df.empty or not (cells_df["variation"] == BASELINE).any():
        raise AblationError(f"ablation {abl.name!r}: no finished baseline cell under {work_root}; run it first")
    table = aggregate(abl, cells_df)
    out = Path(out_dir) / abl.name
    cpu_s, wall_s = _cpu_seconds() - cpu0, time.perf_counter() - wall0
    files = write_outputs(abl, cells_df, table, out, run_info={
        "trained": trained, "skipped": skipped, "cpu_s": cpu_s, "wall_s": wall_s,
        "seeds": sorted({int(s) for s in cells_df["seed"]})})
    log.info("ablation %s: %d cell(s) trained, %d skipped, %.0f s wall, %.0f s CPU; outputs in %s",
             abl.name, trained, skipped, wall_s, cpu_s, out)
    return AblationResult(abl, cells_df, table, out, files, trained, skipped, cpu_s, wall_s)


# ------------------------------------------------------------------------------------------ aggregate
def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")


def aggregate(abl: Ablation, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per variation: AP mean/std over seeds, delta to the baseline with the std of the per-seed
    (paired) differences, params/GFLOPs and their deltas, mean training throughput."""
    base = cells[cells["variation"] == BASELINE].set_index("seed")
    b_ap = float(base["AP"].mean())
    b_params, b_gflops = float(base["params"].iloc[0]), float(base["gflops"].iloc[0])
    b_ips = float(base["train_img_per_s"].mean())
    b_ipc = float(np.nanmean([_img_per_cpu_s(m) for m in base.to_dict("records")]))
    out = []
    for row in abl.row_names():
        c = cells[cells["variation"] == row].set_index("seed")
        if c.empty:
            continue
        var = abl.variation(row)
        common = sorted(set(c.index) & set(base.index))
        diffs = (c.loc[common, "AP"] - base.loc[common, "AP"]).to_numpy(float)
        ap = c["AP"].to_numpy(float)
        ips = float(c["train_img_per_s"].mean())
        ipc = float(np.nanmean([_img_per_cpu_s(m) for m in c.to_dict("records")]))
        out.append({
            "variation": row,
            "switches": ", ".join(f"{k}={_fmt_value(v)}" for k, v in (var.overrides if var else {}).items()) or "-",
            "note": var.note if var else ("switches at the paper's defaults" if not abl.baseline_overrides
                                          else "baseline"),
            "seeds": len(ap), "AP": float(ap.mean()), "AP_std": _std(ap),
            "dAP": float(ap.mean()) - b_ap if row != BASELINE else 0.0,
            "dAP_std": _std(diffs) if row != BASELINE else float("nan"),
            "params_M": float(c["params"].iloc[0]) / 1e6,
            "dparams_M": (float(c["params"].iloc[0]) - b_params) / 1e6,
            "GFLOPs": float(c["gflops"].iloc[0]), "dGFLOPs": float(c["gflops"].iloc[0]) - b_gflops,
            "final_train_loss": float(c["final_train_loss"].mean()) if "final_train_loss" in c else float("nan"),
            "val_loss": float(c["val_loss"].mean()) if "val_loss" in c else float("nan"),
            "dval_loss": (float(c["val_loss"].mean()) - float(base["val_loss"].mean())) if "val_loss" in c
            else float("nan"),
            "train_img_per_cpu_s": ipc,
            # The change in throughput per CPU-second when measured (load-robust), else in wall-clock img/s.
            "train_img_per_s": ips,
            "dthroughput_pct": (100.0 * (ipc / b_ipc - 1.0) if math.isfinite(ipc) and b_ipc > 0
                                else 100.0 * (ips / b_ips - 1.0) if b_ips > 0 else float("nan")),
        })
    return pd.DataFrame(out)


def _img_per_cpu_s(m: dict) -> float:
    """Training images per CPU-second of the cell's own process (data loading included, in-process).
    Unlike wall-clock img/s this barely moves when other jobs share the CPU; NaN for a resumed cell
    whose earlier part ran in another process."""
    n = m.get("iterations_this_run")
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        n = m["iterations"] if not m.get("resumed") else float("nan")
    cpu = m.get("train_cpu_s") or float("nan")
    return float(n) * m["batch_size"] / cpu if cpu > 0 else float("nan")


def _fmt_value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(_fmt_value(x) for x in v) + "]"
    return "None" if v is None else str(v)


def _num(v: float, fmt: str, signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return format(v, ("+" if signed else "") + fmt)


def _cells_text(t: pd.DataFrame, pm: str) -> list[list[str]]:
    """Display strings per row; AP in percent (COCO convention), ``pm`` the plus-minus sign."""
    rows = []
    for r in t.itertuples():
        ap = _num(100 * r.AP, ".1f") + (f" {pm} {_num(100 * r.AP_std, '.1f')}" if math.isfinite(r.AP_std) else "")
        if r.variation == BASELINE:
            dap = "0 (ref.)"
        else:
            dap = _num(100 * r.dAP, ".1f", True) + (f" {pm} {_num(100 * r.dAP_std, '.1f')}"
                                                     if math.isfinite(r.dAP_std) else "")
        rows.append([r.variation, r.switches, ap, dap, _num(r.params_M, ".3f"), _num(r.dparams_M, ".3f", True),
                     _num(r.GFLOPs, ".4f"), _num(r.dGFLOPs, ".4f", True), _num(1e3 * r.final_train_loss, ".2f"),
                     _num(1e3 * r.val_loss, ".2f"),
                     _num(r.train_img_per_cpu_s, ".1f"), _num(r.train_img_per_s, ".1f"),
                     _num(r.dthroughput_pct, ".0f", True) + "%" if math.isfinite(r.dthroughput_pct) else "-"])
    return rows


HEADERS = ["Variation", "Switches", "AP", "ΔAP", "Params (M)", "ΔParams (M)", "GFLOPs", "ΔGFLOPs",
           "Train loss (1e-3)", "Val loss (1e-3)", "Train img/CPU-s", "Train img/s", "Δthroughput"]


def to_markdown(abl: Ablation, t: pd.DataFrame, info: dict) -> str:
    rows = _cells_text(t, "±")
    lines = [f"# Ablation `{abl.name}`", "", abl.description, "",
             "| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] + ["---"] + ["---:"] * 11) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    n_seeds = len(info.get("seeds", []))
    lines += ["", f"Base experiment `{abl.base_experiment}`"
              + (f" with {_fmt_overrides(abl.experiment_overrides)}" if abl.experiment_overrides else "")
              + f"; evaluated on `{abl.eval_split or abl.experiment().eval.splits[0]}`; seeds "
              f"{info.get('seeds')}.",
              "AP in percent (COCO OKS AP); ΔAP is variation minus baseline"
              + (f", ± the std over the {n_seeds} seeds (AP) and of the per-seed paired differences (ΔAP)"
                 if n_seeds > 1 else "; one seed, so no spread is given") + ".",
              "GFLOPs: fvcore at batch 1 and the experiment's input size (one multiply-add = one flop). "
              "Train loss: mean heatmap MSE over the last quarter of the training log (same budget for every row); "
              "val loss: heatmap MSE of the final weights on the eval split (GT boxes, no augmentation). "
              "Throughput: training images per CPU-second of the cell's process (robust to other jobs on the "
              "machine), and the median wall-clock images/s from the engine's log (load dependent); Δthroughput "
              "compares images per CPU-second."]
    return "\n".join(lines) + "\n"


def _fmt_overrides(d: dict) -> str:
    return ", ".join(f"`{k}={_fmt_value(_jsonable(v))}`" for k, v in d.items())


def _tex(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(rep.get(ch, ch) for ch in s)


def to_latex(abl: Ablation, t: pd.DataFrame) -> str:
    heads = ["Variation", "Switches", "AP", r"$\Delta$AP", "Params (M)", r"$\Delta$Params", "GFLOPs",
             r"$\Delta$GFLOPs", r"Loss ($10^{-3}$)", r"Val loss ($10^{-3}$)", "Img/CPU-s", "Train img/s",
             r"$\Delta$throughput"]
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{Ablation \texttt{{{_tex(abl.name)}}}: {_tex(abl.description)}}}",
             rf"\label{{tab:ablation-{abl.name}}}", r"\begin{tabular}{ll" + "r" * 11 + "}", r"\toprule",
             " & ".join(heads) + r" \\", r"\midrule"]
    for r in _cells_text(t, "$\\pm$"):
        cells = [_tex(c) if i < 2 else c.replace("%", r"\%") for i, c in enumerate(r)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _place_labels(ax, xs: np.ndarray, ys: np.ndarray, names: list[str], *, colors: list[str], dpi: float,
                  fontsize: float = 8.0, column_px: float = 110.0) -> None:
    """Label each point to its right; labels of points in the same column (within ``column_px`` on
    screen, e.g. variations with the same cost) are pushed apart vertically to a line height and joined
    to their point by a thin line when moved, so no label sits on another or on the wrong point."""
    gap_px = 1.35 * fontsize * dpi / 72.0
    keep = [i for i in range(len(xs)) if np.isfinite(xs[i]) and np.isfinite(ys[i])]
    if not keep:
        return
    px = ax.transData.transform(np.c_[xs[keep], ys[keep]])
    label_y = px[:, 1].copy()
    order = np.argsort(px[:, 0])
    columns, cur = [], [order[0]]
    for a, b in zip(order[:-1], order[1:]):
        if px[b, 0] - px[a, 0] > column_px:
            columns.append(cur)
            cur = []
        cur.append(b)
    columns.append(cur)
    for col in columns:
        col = sorted(col, key=lambda k: px[k, 1])
        for lo, hi in zip(col[:-1], col[1:]):
            label_y[hi] = max(label_y[hi], label_y[lo] + gap_px)
        # Centre the pushed stack on its points so it does not drift upwards.
        shift = np.mean(label_y[col] - px[col, 1]) / 2
        label_y[col] -= shift
        for lo, hi in zip(col[:-1], col[1:]):  # re-check the order after the shift
            label_y[hi] = max(label_y[hi], label_y[lo] + gap_px)
    to_pt = 72.0 / dpi
    for k, i in enumerate(keep):
        dy = (label_y[k] - px[k, 1]) * to_pt
        moved = abs(dy) > 2
        ax.annotate(names[i], (xs[i], ys[i]), xytext=(10, dy), textcoords="offset points", fontsize=fontsize,
                    color=colors[i], ha="left", va="center",
                    arrowprops=dict(arrowstyle="-", color="0.6", lw=0.6, shrinkA=0, shrinkB=3) if moved else None)


def plot(abl: Ablation, t: pd.DataFrame, path: Path) -> Path:
    """ΔAP (points) vs ΔGFLOPs, one labelled point per variation, baseline at the origin; error bars are
    the paired spread when there are several seeds.  A second panel shows the held-out heatmap loss
    change when it was measured (lower is better; it separates rows whose AP is still 0)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("dAP", 100.0, "dAP_std", "Δ AP vs baseline (points)")]
    if "dval_loss" in t and np.isfinite(t["dval_loss"].to_numpy(float)).any():
        panels.append(("dval_loss", 1e3, None, "Δ val heatmap loss (1e-3, lower is better)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), dpi=130, squeeze=False)
    var = t[t["variation"] != BASELINE]
    x = var["dGFLOPs"].to_numpy(float)
    labels = []
    for ax, (col, scale, err_col, ylabel) in zip(axes[0], panels):
        ax.axhline(0, color="0.6", lw=0.8, zorder=0)
        ax.axvline(0, color="0.6", lw=0.8, zorder=0)
        y = scale * var[col].to_numpy(float)
        yerr = scale * var[err_col].to_numpy(float) if err_col else np.full_like(y, np.nan)
        has_err = np.isfinite(yerr).any()
        label = "variation" + (" (±1 std, paired)" if has_err else "")
        ax.errorbar(x, y, yerr=np.where(np.isfinite(yerr), yerr, 0) if has_err else None, fmt="o",
                    color="C0", ecolor="C0", elinewidth=1, capsize=3, ms=6, label=label)
        ax.plot([0], [0], marker="*", ms=14, color="C3", ls="none", label="baseline")
        finite = np.isfinite(y)
        span_x = max(np.abs(np.append(x, 0)).max(), 1e-3)
        span_y = max(np.abs(np.append(y[finite], 0)).max() + (np.nanmax(yerr) if has_err else 0), 0.1)
        ax.set_xlim(-1.3 * span_x, 1.6 * span_x)  # room for the labels right of the points
        ax.set_ylim(-1.3 * span_y, 1.3 * span_y)
        labels.append((ax, np.append(0.0, x), np.append(0.0, y)))
        ax.set_xlabel("Δ GFLOPs vs baseline (fvcore, batch 1)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Ablation '{abl.name}': accuracy change vs cost change", fontsize=10)
    fig.tight_layout()
    for ax, xs, ys in labels:  # after the layout: placement works in screen distances
        _place_labels(ax, xs, ys, [BASELINE] + list(var["variation"]), colors=["C3"] + ["black"] * len(var),
                      dpi=fig.dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _nan_to_none(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_nan_to_none(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return _nan_to_none(float(o))
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return o


def write_outputs(abl: Ablation, cells: pd.DataFrame, table: pd.DataFrame, out: Path, run_info: dict) -> list[Path]:
    """table.{md,tex,csv}, the plot and results.json into ``out``; every write atomic."""
    files = []
    p = out / f"{TABLE_STEM}.md"
    atomic_write_text(p, to_markdown(abl, table, run_info))
    files.append(p)
    p = out / f"{TABLE_STEM}.tex"
    atomic_write_text(p, to_latex(abl, table))
    files.append(p)
    p = out / f"{TABLE_STEM}.csv"
    atomic_write_text(p, table.to_csv(index=False))
    files.append(p)
    files.append(plot(abl, table, out / PLOT_NAME))
    payload = {
        "ablation": abl.name, "description": abl.description, "base_experiment": abl.base_experiment,
        "experiment_overrides": _jsonable(abl.experiment_overrides), "baseline_overrides": abl.baseline_overrides,
        "variations": [{"name": v.name, "overrides": v.overrides, "note": v.note} for v in abl.variations],
        "eval_split": abl.eval_split or abl.experiment().eval.splits[0],
        "run": run_info, "table": table.to_dict(orient="records"),
        "cells": cells.drop(columns=["skipped"], errors="ignore").to_dict(orient="records"),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    p = out / "results.json"
    atomic_write_text(p, json.dumps(_nan_to_none(payload), indent=2, sort_keys=False, default=str) + "\n")
    files.append(p)
    return files
