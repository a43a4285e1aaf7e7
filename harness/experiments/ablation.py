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

A cell whose marker (:func:`harness.io.read_marker`, keyed by the cell's key) exists is skipped; a cell
with a checkpoint but no marker was interrupted and is resumed through the engine's ``resume="auto"``.
Training throughput and loss come from the trainer's :class:`~harness.engine.trainer.FitResult`.
The comparison goes to ``results/ablations/<name>/`` (:mod:`harness.report.experiments`):
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
import torch

import backbones
from backbones.hrnext import HRNeXtConfig
from harness import engine
from harness.config import ConfigError, Experiment, config_hash, get_experiment
from harness.data import AugmentConfig
from harness.data.synthetic import SynthConfig, ensure_synthetic
from harness.engine import KeypointMSELoss, builders
from harness.engine.checkpoint import LAST, find_resume
from harness.engine.testing import load_for_eval
from harness.io import atomic_write_json, read_marker, write_marker
from harness.report.experiments import ablation_plot, ablation_table, format_value

from .runner import cpu_seconds, model_costs, run_side_by_side, sample_std

log = logging.getLogger(__name__)

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
    return tuple(f.name for f in dataclasses.fields(HRNeXtConfig))


def jsonable(v: Any) -> Any:
    """Tuples -> lists, recursively: overrides are stored in JSON configs and hashed as JSON."""
    if isinstance(v, (tuple, list)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def _check_overrides(where: str, overrides: Any) -> dict:
    if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
        raise AblationError(f"{where}: must be a dict of HRNeXtConfig field -> value, got {overrides!r}")
    unknown = sorted(set(overrides) - set(switch_names()))
    if unknown:
        raise AblationError(f"{where}: unknown switch {unknown[0]!r}; HRNeXtConfig fields: "
                            f"{', '.join(switch_names())}")
    return {k: jsonable(v) for k, v in overrides.items()}


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
        if backbones.get_entry(exp.model.name).family != "hrnext":
            raise AblationError(f"{where}: base_experiment {self.base_experiment!r} trains {exp.model.name!r}; "
                                f"the switches belong to the HRNeXt family")
        if self.eval_split is not None and (not isinstance(self.eval_split, str) or not self.eval_split):
            raise AblationError(f"{where}: eval_split must be a split name or None, got {self.eval_split!r}")
        if self.synthetic is not None:
            if not isinstance(self.synthetic, SynthConfig):
                raise AblationError(f"{where}: synthetic must be a SynthConfig or None")
            if exp.data.dataset != "synthetic":
                raise AblationError(f"{where}: synthetic data given but data.dataset is {exp.data.dataset!r}")
        # Every cell's backbone config is validated now (cheap: no model is built), so a bad value
        # fails before hours of training rather than in the fifth cell.
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
def cell_costs(cell: Cell) -> dict:
    """Params and fvcore GFLOPs (batch 1, the experiment's input size) of the cell's pose model."""
    e = cell.exp
    c = model_costs(e.model.name, tuple(e.data.input_size), num_keypoints=e.model.num_keypoints,
                    overrides=cell.overrides)
    return {"params": c["params"], "gflops": c["gflops"], "flop_counter": "fvcore (1 multiply-add = 1 flop)"}


# ------------------------------------------------------------------------------------------- running
def cell_marker(work_dir: Path, cell: Cell) -> dict | None:
    """The cell's done marker, or None when absent, unreadable or from another config."""
    return read_marker(Path(work_dir) / MARKER, cell.key)


def heldout_loss(cell: Cell, work_dir: Path, *, device: str | None = None, batch_size: int = 64) -> float:
    """Heatmap MSE (the training loss) of the cell's final weights on its eval split, GT boxes, no
    augmentation.  A dense, low-noise companion to AP: short CPU grids localise to a couple of heatmap
    pixels, which OKS AP (strict for small people) still scores as 0 while this loss already ranks them."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, _ = load_for_eval(cell.exp, Path(work_dir) / LAST, dev)
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
    wd = cell.work_dir(work_root)
    if force and wd.exists():
        shutil.rmtree(wd)  # this cell's own folder: a forced re-run starts from nothing
    done = cell_marker(wd, cell)
    if done is not None:
        log.info("%s/%s seed %d: done (AP %.4f), skipped", cell.ablation, cell.variation, cell.seed, done["AP"])
        return {**done, "skipped": True}
    if find_resume(wd) is not None:
        log.info("%s/%s seed %d: resuming the interrupted run in %s", cell.ablation, cell.variation, cell.seed, wd)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fit = engine.Trainer(cell.exp, work_dir=wd, resume="auto", device=device, progress=progress).fit()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    ckpt = wd / LAST
    if not ckpt.is_file():
        raise AblationError(f"{wd}: training finished without writing {LAST}")
    res = engine.run_test(cell.exp, ckpt, device=device, results_root=wd / "records", progress=progress,
                          extra={"ablation": cell.ablation, "variation": cell.variation})[0]
    val_loss = heldout_loss(cell, wd, device=device)
    cpu2, wall2 = time.process_time(), time.perf_counter()
    metrics = {k: float(v) for k, v in res["metrics"].items() if isinstance(v, (int, float))}
    marker = {
        "ablation": cell.ablation, "variation": cell.variation, "seed": cell.seed,
        "config_hash": config_hash(cell.exp), "overrides": cell.overrides, "split": res["split"],
        "AP": metrics.get("AP", float("nan")), "metrics": metrics,
        "iterations": fit.global_iter, "iterations_this_run": len(fit.losses),
        "batch_size": fit.batch_size, "train_img_per_s": fit.img_per_s, "final_train_loss": fit.final_loss,
        "val_loss": val_loss,
        "train_cpu_s": cpu1 - cpu0, "train_wall_s": wall1 - wall0,
        "eval_cpu_s": cpu2 - cpu1, "eval_wall_s": wall2 - wall1,
        "resumed": fit.resumed, **cell_costs(cell),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_marker(wd / MARKER, cell.key, marker)
    return {**marker, "key": cell.key, "skipped": False}


@dataclass
class AblationResult:
    """What :func:`run_ablation` did and wrote."""

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
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise AblationError(f"threads: must be a positive integer, got {threads!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_ablation(name, seeds=seeds, force=force, out_dir=out_dir, work_root=work_root, device=device,
                             progress=progress, report_only=report_only, jobs=jobs)
    finally:
        torch.set_num_threads(old_threads)


def _run_cell_job(job: tuple) -> dict:
    cell, work_root, device, force, progress = job
    return run_cell(cell, work_root, device=device, force=force, progress=progress)


def _run_ablation(name, *, seeds, force, out_dir, work_root, device, progress, report_only, jobs) -> AblationResult:
    abl = name if isinstance(name, Ablation) else get_ablation(name)
    cells = abl.cells(seeds)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    if abl.synthetic is not None and not report_only:
        # The same resolution the engine applies to data.root (working directory, else repo root).
        ensure_synthetic(builders.resolve_path(abl.experiment().data.root), abl.synthetic, progress=progress)
    rows, trained, skipped = [], 0, 0
    todo = [] if report_only else [c for c in cells if force or cell_marker(c.work_dir(work_root), c) is None]
    fresh = run_side_by_side(_run_cell_job, [(c, str(work_root), device, force, progress) for c in todo],
                             [f"{c.variation}/s{c.seed}" for c in todo], workers=jobs, desc=f"ablation {abl.name}",
                             unit="cell", progress=progress)
    done = {id(c): m for c, m in zip(todo, fresh)}
    for cell in cells:
        wd = cell.work_dir(work_root)
        m = done.get(id(cell))
        if m is None:
            m = cell_marker(wd, cell)
            if m is None:
                log.warning("%s/%s seed %d: not finished; left out of the report", abl.name, cell.variation,
                            cell.seed)
                continue
            m = {**m, "skipped": True}
        if "val_loss" not in m and (wd / LAST).is_file():
            # A marker from before the held-out loss existed: add it (cheap, no training).
            m["val_loss"] = heldout_loss(cell, wd, device=device)
            write_marker(wd / MARKER, cell.key, {k: v for k, v in m.items() if k not in ("skipped", "key")})
        trained += not m["skipped"]
        skipped += m["skipped"]
        rows.append(m)
    cells_df = pd.DataFrame(rows)
    if cells_df.empty or not (cells_df["variation"] == BASELINE).any():
        raise AblationError(f"ablation {abl.name!r}: no finished baseline cell under {work_root}; run it first")
    table = aggregate(abl, cells_df)
    out = Path(out_dir) / abl.name
    cpu_s, wall_s = cpu_seconds() - cpu0, time.perf_counter() - wall0
    files = write_outputs(abl, cells_df, table, out, run_info={
        "trained": trained, "skipped": skipped, "cpu_s": cpu_s, "wall_s": wall_s,
        "seeds": sorted({int(s) for s in cells_df["seed"]})})
    log.info("ablation %s: %d cell(s) trained, %d skipped, %.0f s wall, %.0f s CPU; outputs in %s",
             abl.name, trained, skipped, wall_s, cpu_s, out)
    return AblationResult(abl, cells_df, table, out, files, trained, skipped, cpu_s, wall_s)


# ------------------------------------------------------------------------------------------ aggregate
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
            "switches": ", ".join(f"{k}={format_value(v)}" for k, v in (var.overrides if var else {}).items()) or "-",
            "note": var.note if var else ("switches at the paper's defaults" if not abl.baseline_overrides
                                          else "baseline"),
            "seeds": len(ap), "AP": float(ap.mean()), "AP_std": sample_std(ap),
            "dAP": float(ap.mean()) - b_ap if row != BASELINE else 0.0,
            "dAP_std": sample_std(diffs) if row != BASELINE else float("nan"),
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


def _fmt_overrides(d: dict) -> str:
    return ", ".join(f"`{k}={format_value(jsonable(v))}`" for k, v in d.items())


def notes(abl: Ablation, info: dict) -> list[str]:
    """The paragraphs under the ablation table: what was run, what the columns mean."""
    n_seeds = len(info.get("seeds", []))
    return [f"Base experiment `{abl.base_experiment}`"
            + (f" with {_fmt_overrides(abl.experiment_overrides)}" if abl.experiment_overrides else "")
            + f"; evaluated on `{abl.eval_split or abl.experiment().eval.splits[0]}`; seeds {info.get('seeds')}.",
            "AP in percent (COCO OKS AP); ΔAP is variation minus baseline"
            + (f", ± the std over the {n_seeds} seeds (AP) and of the per-seed paired differences (ΔAP)"
               if n_seeds > 1 else "; one seed, so no spread is given") + ".",
            "GFLOPs: fvcore at batch 1 and the experiment's input size (one multiply-add = one flop). "
            "Train loss: mean heatmap MSE over the last quarter of the training iterations (same budget for every "
            "row); val loss: heatmap MSE of the final weights on the eval split (GT boxes, no augmentation). "
            "Throughput: training images per CPU-second of the cell's process (robust to other jobs on the "
            "machine), and the median wall-clock images/s the trainer measured (load dependent); Δthroughput "
            "compares images per CPU-second."]


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
    files = list(ablation_table(abl.name, abl.description, table, notes(abl, run_info),
                                baseline=BASELINE).write(out / TABLE_STEM).values())
    files.append(ablation_plot(abl.name, table, out / PLOT_NAME, baseline=BASELINE))
    payload = {
        "ablation": abl.name, "description": abl.description, "base_experiment": abl.base_experiment,
        "experiment_overrides": jsonable(abl.experiment_overrides), "baseline_overrides": abl.baseline_overrides,
        "variations": [{"name": v.name, "overrides": v.overrides, "note": v.note} for v in abl.variations],
        "eval_split": abl.eval_split or abl.experiment().eval.splits[0],
        "run": run_info, "table": table.to_dict(orient="records"),
        "cells": cells.drop(columns=["skipped"], errors="ignore").to_dict(orient="records"),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    files.append(atomic_write_json(out / "results.json", _nan_to_none(payload), indent=2, default=str))
    return files
