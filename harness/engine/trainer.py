"""The training loop: build, train, validate, checkpoint, resume.

One :class:`Trainer` runs one experiment in one work dir::

    work_dirs/<experiment>/
        config.json        the resolved Experiment + its hash (written before training starts)
        log.csv            one row per log interval (epoch, iter, lr, loss, grad_norm, img/s, ...)
        val.csv            one row per validation (epoch, iter, AP, ...)
        tb/                TensorBoard events
        last.pth           newest checkpoint (every ckpt_interval epochs / ckpt_interval_iters, and on SIGTERM/SIGINT)
        best.pth           checkpoint with the best validation AP
        records/           result records of the periodic validations (same schema as results/runs)

Resuming (``resume="auto"``) restores model, optimiser, grad scaler, EMA, RNG states and the
position inside the epoch; together with a sampler and augmentation that depend only on
(seed, epoch, index), a killed and resumed deterministic run ends bit-identical to an
uninterrupted one (``tests/engine/test_engine_resume.py``).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
import random
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from harness.config import ConfigError, Experiment, config_hash, diff, load_config, save_config
from harness.data.loader import EpochKeyed, EpochKeyedBatches, loader_kwargs, resolve_num_workers
from harness.engine import builders
from harness.engine.checkpoint import atomic_save, find_resume, load_checkpoint, rng_state, set_rng_state
from harness.engine.dist import (DistInfo, ShardedBatchSampler, all_gather_object, barrier, broadcast_object,
                                 cleanup, init_distributed)
from harness.engine.ema import ModelEMA
from harness.engine.loss import KeypointMSELoss
from harness.errors import CheckpointError, TrainingError, WorkDirError
from harness.optim import fused_ok
from harness.parallel import bar_position
from harness.results import atomic_write_text
from harness.workdir import BEST, CONFIG, LAST, LOG_CSV, TENSORBOARD, VAL_CSV, clean_stale_temp_files

log = logging.getLogger(__name__)


class NonFiniteLossError(TrainingError):
    """The loss became NaN/inf; the message names the iteration and the last good checkpoint."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a checkpoint was written and the run can be resumed."""

    def __init__(self, msg: str, signum: int) -> None:
        super().__init__(msg)
        self.signum = signum


@dataclass
class TrainState:
    epoch: int = 0  # epoch in progress
    iter_in_epoch: int = 0  # batches of ``epoch`` already trained
    global_iter: int = 0  # optimiser steps so far
    best_ap: float = -1.0
    best_epoch: int = -1


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns: the run's state and what this process measured while training.

    ``losses`` and ``iter_times`` hold one entry per iteration trained *in this process* (a resumed run
    starts them empty at ``start_iter``); ``global_iter`` counts the whole run's optimiser steps.
    ``batch_size`` is the global batch (images per step, all ranks). ``val_metrics`` is the last in-training
    validation (empty without one); ``best_ap`` the best validation AP so far (-1 without one).
    """

    work_dir: Path
    losses: list[float] = field(default_factory=list)  # per iteration trained in this process
    iter_times: list[float] = field(default_factory=list)  # seconds per iteration (rank 0)
    val_metrics: dict = field(default_factory=dict)  # last validation
    best_ap: float = -1.0
    global_iter: int = 0
    last_checkpoint: Path | None = None
    batch_size: int = 0
    start_iter: int = 0

    @property
    def sec_per_iter(self) -> float:
        """Median seconds per iteration after the first two (warm-up, allocator growth)."""
        times = self.iter_times[2:] or self.iter_times
        return statistics.median(times) if times else float("nan")

    @property
    def img_per_s(self) -> float:
        """Training throughput: global batch / :attr:`sec_per_iter` (NaN when nothing was trained here)."""
        s = self.sec_per_iter
        return self.batch_size / s if self.batch_size and s > 0 else float("nan")

    @property
    def resumed(self) -> bool:
        """True when this process continued a run that earlier processes had started."""
        return self.start_iter > 0

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last quarter of the run's iterations (at least one), from the
        iterations trained here: a low-noise "how well did it fit under this budget" number."""
        if not self.losses:
            return float("nan")
        n = max(1, min(len(self.losses), self.global_iter // 4))
        return float(statistics.fmean(self.losses[-n:]))


# --------------------------------------------------------------------------------------------- schedule


def total_iterations(exp: Experiment, iters_per_epoch: int) -> int:
    """Optimiser steps of the whole run: ``train.epochs`` epochs, cut at ``train.max_iters`` when set."""
    total = exp.train.epochs * iters_per_epoch
    return min(total, exp.train.max_iters) if exp.train.max_iters else total


def lr_factor(exp: Experiment, it: int, iters_per_epoch: int) -> float:
    """Multiplier on the base lr at global iteration ``it`` (0-based).

    Linear warm-up per iteration times the main schedule: cosine from 1 to ``min_lr_ratio`` over
    ``train.epochs`` (mmcv 1.x ``CosineAnnealingLrUpdaterHook``) or x``gamma`` at each milestone epoch
    (mmengine ``MultiStepLR``, mmcv ``step``).  The warm-up factor rises linearly from ``warmup_ratio``
    and is 1 from iteration ``warmup_iters`` on (``sched.warmup_style='mmcv'``, 1.x
    ``warmup='linear'``) or from ``warmup_iters - 1`` on ('mmengine', ``LinearLR(begin=0,
    end=warmup_iters)``).  With ``sched.by_epoch`` (the default) the cosine moves once per epoch;
    without, every iteration over the whole run (``train.max_iters`` when set, else ``train.epochs``
    epochs).  Equal to mmcv's and mmengine's schedulers at every iteration
    (``tests/engine/test_engine_schedule.py``).
    """
    s = exp.sched
    epoch = it // max(iters_per_epoch, 1)
    if s.name == "cosine":
        if s.by_epoch:
            progress = min(epoch / exp.train.epochs, 1.0)
        else:
            progress = min(it / total_iterations(exp, max(iters_per_epoch, 1)), 1.0)
        main = s.min_lr_ratio + (1.0 - s.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif s.name == "multistep":
        main = s.gamma ** sum(epoch >= m for m in s.milestones)
    else:
        main = 1.0
    span = s.warmup_iters - 1 if s.warmup_style == "mmengine" else s.warmup_iters
    if it < span:
        main *= 1.0 - (1.0 - it / span) * (1.0 - s.warmup_ratio)
    return main


def build_optimizer(model: nn.Module, exp: Experiment) -> torch.optim.Optimizer:
    """Optimiser with two groups: weight decay, and none for ``optim.no_decay_keys`` parameters."""
    o = exp.optim
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if any(k in name for k in o.no_decay_keys) else decay).append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if o.name in ("adam", "adamw"):
        # torch's Adam adds L2 to the gradient (mmpose's HRNet recipe uses weight_decay=0 anyway).
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        opt = cls(groups, lr=o.lr, betas=o.betas, fused=fused_ok(decay + no_decay))
    else:
        opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    for g in opt.param_groups:
        g["initial_lr"] = o.lr
    return opt


def seed_everything(seed: int, deterministic: bool, device_type: str = "cpu") -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        if device_type != "cpu":
            # CPU kernels are already deterministic for a fixed thread count; the switch matters for
            # CUDA (atomics in backward, cuBLAS), and turning it on imports torch._inductor (seconds).
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = True


def _worker_ignores_stop_signals(worker_id: int) -> None:
    """SLURM and Ctrl-C signal the whole process group; data workers must survive until the main
    process has finished its iteration and written the checkpoint (they exit with their parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Train ``exp`` in ``work_dir``.

    Args:
        exp: the experiment (validated config).
        work_dir: output folder; default ``exp.resolved_work_dir()``.
        resume: None (fresh run; refuses a work dir that already holds ``last.pth``), ``"auto"``
            (continue from ``work_dir/last.pth`` if present, else start fresh) or a checkpoint path.
        device: "cpu", "cuda" or None (cuda when available).
        progress: show tqdm bars (rank 0 only).
        results_root: where the periodic validations' records go; default ``work_dir/records``.
    """

    def __init__(self, exp: Experiment, *, work_dir: str | os.PathLike | None = None, resume: str | None = None,
                 device: str | None = None, progress: bool = True, results_root: str | os.PathLike | None = None):
        self.exp = exp
        self.work_dir = Path(work_dir) if work_dir else exp.resolved_work_dir()
        self.resume = resume
        self.device_name = device
        self.progress = progress
        self.results_root = Path(results_root) if results_root else self.work_dir / "records"
        self.state = TrainState()
        self._stop_signal: int | None = None
        self._stop_agreed = False  # all ranks saw a stop signal (checked once per iteration)
        self._last_ckpt: Path | None = None
        self.tb = None
        self._train_loader: DataLoader | None = None  # kept across epochs with persistent workers

    # -- set-up -----------------------------------------------------------------------------------
    def _setup(self) -> None:
        exp = self.exp
        if exp.train.deterministic:
            # cuBLAS reads this when CUDA initialises (inside init_distributed): deterministic GEMMs.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.info: DistInfo = init_distributed(self.device_name)
        info = self.info
        if exp.train.batch_size % info.world_size:
            raise ConfigError(f"train.batch_size: {exp.train.batch_size} is not divisible by the "
                              f"{info.world_size} processes")
        self._check_work_dir()
        # Same initial weights on every rank (DDP would broadcast rank 0's anyway, but the EMA copy
        # is taken before that); then a per-rank stream for dropout/drop-path.
        seed_everything(exp.train.seed, exp.train.deterministic, info.device.type)
        model = builders.build_model(exp).to(info.device)
        torch.manual_seed(exp.train.seed + info.rank)
        if exp.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if exp.train.sync_bn and info.distributed:
            if info.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            elif info.is_main:
                log.warning("train.sync_bn: SyncBatchNorm needs GPUs; on %s each rank normalises its own "
                            "shard", info.device.type)
        self.model = model
        self.ema = ModelEMA(model, exp.train.ema_decay) if exp.train.ema else None
        self.optimizer = build_optimizer(model, exp)
        self.criterion = KeypointMSELoss()
        amp = exp.train.amp
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=(amp == "fp16"))

        net: nn.Module = model
        if info.distributed:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
        if exp.train.compile:
            net = torch.compile(net)
        self.net = net

        self.train_set = builders.build_dataset(exp, exp.data.train_split, train=True)
        self.sampler = ShardedBatchSampler(len(self.train_set), exp.train.batch_size, rank=info.rank,
                                           world_size=info.world_size, shuffle=True, seed=exp.train.seed)
        self.iters_per_epoch = self.sampler.batches_per_epoch
        self.total_iters = total_iterations(exp, self.iters_per_epoch)
        # Build the validation set now (rank 0): a missing annotation or detection file should fail
        # here, not after the first val_interval epochs.
        self._val_set = None
        if exp.train.val_interval > 0 and info.is_main:
            self._val_set = builders.build_dataset(exp, exp.data.val_split, train=False)

        start = self._resume_path()
        if start is not None:
            self._load(start)
        if info.is_main:
            save_config(exp, self.work_dir / CONFIG)
            self._trim_logs()
            self._open_tb()
        barrier(info)

    def _check_work_dir(self) -> None:
        cfg = self.work_dir / CONFIG
        has_ckpt = find_resume(self.work_dir) is not None
        if self.resume is None and has_ckpt:
            raise WorkDirError(f"{self.work_dir}: holds a checkpoint from an earlier run; continue it with "
                               f"--resume auto or choose another --work-dir")
        if self.resume not in (None, "auto") and not Path(self.resume).is_file():
            raise CheckpointError(f"--resume: {self.resume}: checkpoint file not found"
                                  + (" (it is a directory)" if Path(self.resume).is_dir() else ""))
        if self.resume is not None and self.info.is_main:
            clean_stale_temp_files(self.work_dir)  # left by a kill -9 during an atomic write
        if self.resume is not None and cfg.is_file():
            old = load_config(cfg)
            if config_hash(old) != config_hash(self.exp):
                changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff(old, self.exp).items())
                raise ConfigError(f"{cfg}: resuming with a different config ({changed}); "
                                  f"use a new --work-dir for a new experiment")

    def _resume_path(self) -> Path | None:
        if self.resume is None:
            return None
        if self.resume == "auto":
            p = find_resume(self.work_dir)
            if p is None and self.info.is_main:
                log.info("--resume auto: no checkpoint in %s, starting fresh", self.work_dir)
            return p
        return Path(self.resume)

    # -- checkpoints ------------------------------------------------------------------------------
    def _checkpoint_state(self) -> dict:
        st = self.state
        # Every rank's RNG state (dropout/drop-path streams differ per rank).
        rngs = all_gather_object(rng_state(), self.info)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "epoch": st.epoch, "iter_in_epoch": st.iter_in_epoch, "global_iter": st.global_iter,
            "best_ap": st.best_ap, "best_epoch": st.best_epoch,
            "rng": rngs, "world_size": self.info.world_size,
            "config_hash": config_hash(self.exp), "experiment": self.exp.name,
        }

    def save(self, name: str = LAST) -> Path | None:
        """Collective (all ranks gather RNG states); rank 0 writes ``work_dir/name`` atomically."""
        state = self._checkpoint_state()
        path = self.work_dir / name
        if self.info.is_main:
            atomic_save(state, path)
            log.debug("saved %s at iteration %d", path, self.state.global_iter)
        if name == LAST:
            self._last_ckpt = path
        return path

    def _load(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.info.device)
        if "global_iter" not in ckpt or "optimizer" not in ckpt:
            raise CheckpointError(f"{path}: holds weights only, not a training state to resume; use it with "
                                  f"`test --checkpoint` or init.weights")
        theirs = ckpt.get("config_hash")
        if theirs is not None and theirs != config_hash(self.exp):
            raise CheckpointError(f"{path}: a checkpoint of experiment {ckpt.get('experiment')!r} with another config "
                                  f"(hash {str(theirs)[:8]}, this run {config_hash(self.exp)[:8]}); it cannot be "
                                  f"resumed as {self.exp.name!r}")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{path}: does not fit {self.exp.model.name} ({first})") from None
        if self.ema is not None:
            if ckpt.get("ema") is None:
                raise ConfigError(f"train.ema: enabled but {path} holds no EMA weights")
            self.ema.load_state_dict(ckpt["ema"])
        self.state = TrainState(epoch=ckpt["epoch"], iter_in_epoch=ckpt["iter_in_epoch"],
                                global_iter=ckpt["global_iter"], best_ap=ckpt["best_ap"],
                                best_epoch=ckpt["best_epoch"])
        rngs = ckpt["rng"]
        if ckpt.get("world_size", 1) == self.info.world_size:
            set_rng_state(rngs[self.info.rank])
        elif self.info.is_main:
            log.warning("%s was written by %d processes, resuming with %d: RNG streams restart",
                        path, ckpt.get("world_size"), self.info.world_size)
        self._last_ckpt = path
        if self.info.is_main:
            log.info("resumed from %s: epoch %d, batch %d/%d, iteration %d", path, self.state.epoch,
                     self.state.iter_in_epoch, self.iters_per_epoch, self.state.global_iter)

    # -- logs -------------------------------------------------------------------------------------
    _LOG_FIELDS = ["epoch", "iter", "lr", "loss", "grad_norm", "img_per_s", "sec_per_iter", "time"]

    def _trim_logs(self) -> None:
        """After a resume, drop log rows past the checkpoint so the CSV reads as one clean run."""
        for name, key in ((LOG_CSV, "iter"), (VAL_CSV, "iter")):
            p = self.work_dir / name
            if not p.is_file():
                continue
            with open(p, newline="") as f:
                rows = list(csv.DictReader(f))
            keep = [r for r in rows if int(r[key]) <= self.state.global_iter]
            if len(keep) != len(rows):
                buf = io.StringIO()
                w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
                w.writeheader()
                w.writerows(keep)
                atomic_write_text(p, buf.getvalue())

    def _append_csv(self, name: str, row: dict) -> None:
        p = self.work_dir / name
        new = not p.is_file()
        with open(p, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row.keys()))
            if new:
                w.writeheader()
            w.writerow(row)

    def _open_tb(self) -> None:
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a declared dependency, but logging must not stop training
            log.warning("tensorboard not importable; TensorBoard logs disabled")
            return
        self.tb = SummaryWriter(log_dir=str(self.work_dir / TENSORBOARD), purge_step=self.state.global_iter)

    # -- signals ----------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def _install_signals(self) -> dict:
        old = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                old[s] = signal.signal(s, self._on_signal)
            except ValueError:  # not the main thread
                pass
        return old

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train to ``train.epochs`` (or ``train.max_iters``); raises :class:`TrainingInterrupted`
        after checkpointing on SIGINT/SIGTERM and :class:`NonFiniteLossError` on a NaN/inf loss."""
        old_handlers: dict = {}
        # Deterministic mode is process-global torch state: put it back afterwards.
        det_before = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
                      torch.backends.cudnn.deterministic)
        try:
            self._setup()
            old_handlers = self._install_signals()
            return self._fit()
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            if getattr(self, "tb", None) is not None:
                self.tb.close()
            self._train_loader = None  # persistent workers exit with their loader
            if hasattr(self, "info"):
                cleanup(self.info)
            if torch.are_deterministic_algorithms_enabled() != det_before[0]:
                torch.use_deterministic_algorithms(det_before[0], warn_only=det_before[1])
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = det_before[2:]

    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        """The training loader positioned at batch ``start_batch`` of ``epoch``.

        Its keys are ``(epoch, index)`` (``EpochKeyed``), so each item is built from its own epoch's
        augmentation stream in whichever worker builds it; that is what lets one loader with
        persistent workers serve every epoch. Without persistent workers a loader is made per epoch.
        """
        self.sampler.set_epoch(epoch, start_batch)
        if self._train_loader is not None:
            return self._train_loader
        d = self.exp.data
        kw = loader_kwargs(resolve_num_workers(d.num_workers, d.max_workers), self.info.device.type,
                           persistent_workers=d.persistent_workers, pin_memory=d.pin_memory,
                           prefetch_factor=d.prefetch_factor)
        persistent = kw.get("persistent_workers", False)
        # A private generator: DataLoader draws its worker base seed from it, not from the global
        # torch RNG (which drop-path uses) -- otherwise a mid-epoch resume shifts the RNG stream.
        # Persistent workers draw it once, so it must not depend on the epoch a resume starts in.
        g = torch.Generator().manual_seed(self.exp.train.seed * 100_003 + (0 if persistent else epoch * 1_009)
                                          + self.info.rank)
        loader = DataLoader(EpochKeyed(self.train_set), batch_sampler=EpochKeyedBatches(self.sampler), generator=g,
                            worker_init_fn=_worker_ignores_stop_signals, **kw)
        if persistent:
            self._train_loader = loader
        return loader

    def _fit(self) -> FitResult:
        exp, info, st = self.exp, self.info, self.state
        result = FitResult(work_dir=self.work_dir, best_ap=st.best_ap, batch_size=exp.train.batch_size,
                           start_iter=st.global_iter)
        n_images = exp.train.batch_size
        bar = None
        if info.is_main:
            log.info("training %s (%s, recipe %s) on %s x%d: %d iterations/epoch, %d epochs, %d iterations "
                     "(global batch %d)", exp.name, exp.model.name, exp.recipe, info.device.type,
                     info.world_size, self.iters_per_epoch, exp.train.epochs, self.total_iters, n_images)
            bar = tqdm(total=self.total_iters, initial=st.global_iter, disable=not self.progress,
                       desc=exp.name, unit="it", dynamic_ncols=True, position=bar_position())
        window_loss, window_n, window_t0 = 0.0, 0, time.perf_counter()
        last_norm = float("nan")
        try:
            while st.epoch < exp.train.epochs and st.global_iter < self.total_iters:
                self.net.train()
                loader = self._loader(st.epoch, st.iter_in_epoch)
                t_prev = time.perf_counter()
                for batch in loader:
                    loss, last_norm = self._step(batch)
                    st.iter_in_epoch += 1
                    st.global_iter += 1
                    now = time.perf_counter()
                    result.losses.append(loss)
                    result.iter_times.append(now - t_prev)
                    t_prev = now
                    window_loss += loss
                    window_n += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(epoch=st.epoch, loss=f"{loss:.3e}",
                                        lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                                        img_s=f"{n_images / max(result.iter_times[-1], 1e-9):.1f}")
                    last_of_epoch = st.iter_in_epoch == self.iters_per_epoch
                    if info.is_main and (st.global_iter % exp.train.log_interval == 0 or last_of_epoch):
                        dt = now - window_t0
                        self._log_row(st, window_loss / window_n, last_norm, window_n * n_images / dt, dt / window_n)
                        window_loss, window_n, window_t0 = 0.0, 0, now
                    if self._stop_agreed:
                        self._interrupt()
                    if st.global_iter >= self.total_iters:
                        break
                    if exp.train.ckpt_interval_iters and st.global_iter % exp.train.ckpt_interval_iters == 0 \
                            and not last_of_epoch:
                        self.save(LAST)
                epoch_done = st.iter_in_epoch == self.iters_per_epoch
                finished = st.global_iter >= self.total_iters
                if epoch_done:
                    st.epoch += 1
                    st.iter_in_epoch = 0
                self._end_of_epoch(result, epoch_done, finished)
        finally:
            if bar is not None:
                bar.close()
        result.best_ap = st.best_ap
        result.global_iter = st.global_iter
        result.last_checkpoint = self._last_ckpt
        if info.is_main:
            log.info("finished %s: %d iterations, %.3f s/iteration, best AP %.4f", exp.name, st.global_iter,
                     result.sec_per_iter, st.best_ap)
        return result

    def _end_of_epoch(self, result: FitResult, epoch_done: bool, finished: bool) -> None:
        exp, st = self.exp, self.state
        e = st.epoch  # epochs completed
        validate = exp.train.val_interval > 0 and (finished or (epoch_done and e % exp.train.val_interval == 0))
        if validate:
            metrics = self.validate()
            result.val_metrics = metrics
            ap = float(metrics.get("AP", -1.0))
            if ap > st.best_ap:
                st.best_ap, st.best_epoch = ap, e
                self.save(BEST)
        every_n_iters = exp.train.ckpt_interval_iters and st.global_iter % exp.train.ckpt_interval_iters == 0
        if finished or every_n_iters or (epoch_done and e % exp.train.ckpt_interval == 0):
            self.save(LAST)

    def _step(self, batch: dict) -> tuple[float, float]:
        exp, info, st = self.exp, self.info, self.state
        factor = lr_factor(exp, st.global_iter, self.iters_per_epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        imgs = batch["img"].to(info.device, non_blocking=True)
        if exp.train.channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)
        target = batch["heatmaps"].to(info.device, non_blocking=True)
        weight = batch["target_weight"].to(info.device, non_blocking=True)
        with torch.autocast(info.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.net(imgs)
        loss = self.criterion(out, target, weight)
        self._check_finite(loss)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        norm = float("nan")
        if exp.train.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), exp.train.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return float(loss.detach()), norm

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Raise on a NaN/inf loss; also agrees on a pending stop signal. One all-reduce carries both
        flags so every rank stops at the same iteration (a lone rank leaving would hang the others)."""
        flags = torch.stack([(~torch.isfinite(loss.detach())).float().reshape(()),
                             loss.new_tensor(1.0 if self._stop_signal is not None else 0.0, dtype=torch.float32)])
        if self.info.distributed:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        bad, stop = flags.tolist()
        self._stop_agreed = stop > 0
        if bad > 0:
            st = self.state
            last = str(self._last_ckpt) if self._last_ckpt else "none (no checkpoint written yet)"
            raise NonFiniteLossError(
                f"non-finite loss ({float(loss.detach())}) at iteration {st.global_iter + 1} "
                f"(epoch {st.epoch}, batch {st.iter_in_epoch + 1}/{self.iters_per_epoch}) of {self.exp.name}; "
                f"last good checkpoint: {last}. Lower optim.lr, enable train.clip_grad or use train.amp=bf16.")

    def _interrupt(self) -> None:
        path = self.save(LAST)
        barrier(self.info)
        signum = self._stop_signal or signal.SIGTERM
        raise TrainingInterrupted(f"interrupted by signal {signum} at iteration {self.state.global_iter}; "
                                  f"checkpoint {path}; continue with --resume auto", signum)

    def _log_row(self, st: TrainState, loss: float, norm: float, img_s: float, s_it: float) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        row = {"epoch": st.epoch, "iter": st.global_iter, "lr": f"{lr:.6g}", "loss": f"{loss:.6g}",
               "grad_norm": f"{norm:.6g}", "img_per_s": f"{img_s:.2f}", "sec_per_iter": f"{s_it:.4f}",
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._append_csv(LOG_CSV, row)
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, st.global_iter)
            self.tb.add_scalar("train/lr", lr, st.global_iter)
            self.tb.add_scalar("train/img_per_s", img_s, st.global_iter)
            if math.isfinite(norm):
                self.tb.add_scalar("train/grad_norm", norm, st.global_iter)

    # -- validation -------------------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> dict:
        """Score the (EMA) model on ``data.val_split`` on rank 0; every rank gets the metrics."""
        exp, info, st = self.exp, self.info, self.state
        metrics: dict = {}
        if info.is_main:
            if self._val_set is None:  # validate() called directly with val_interval=0
                self._val_set = builders.build_dataset(exp, exp.data.val_split, train=False)
            model = self.eval_model()
            model.eval()
            # Validation must not disturb the training RNG stream (bit-exact resume).
            saved = rng_state()
            try:
                metrics = builders.evaluate(model, self._val_set, exp, device=info.device, progress=self.progress)
            finally:
                set_rng_state(saved)
            self._append_csv(VAL_CSV, {"epoch": st.epoch, "iter": st.global_iter,
                                         **{k: f"{float(v):.6f}" for k, v in metrics.items()}})
            if self.tb is not None:
                for k, v in metrics.items():
                    self.tb.add_scalar(f"val/{k}", float(v), st.global_iter)
            log.info("epoch %d validation: %s", st.epoch,
                     ", ".join(f"{k}={float(v):.4f}" for k, v in metrics.items()))
            boxes = exp.data.val_boxes
            rec = builders.make_record(exp, model=model, dataset_name=exp.data.val_dataset_name,
                                       split=exp.data.val_split,
                                       boxes=boxes, metrics=metrics, checkpoint=None,
                                       extra={"stage": "validation", "epoch": st.epoch, "iter": st.global_iter,
                                              "weights": "ema" if self.ema else "model"})
            try:
                builders.write_record(rec, root=self.results_root)
            except Exception as e:  # a record problem must not kill a multi-day run
                log.warning("could not write the validation record: %s", e)
        # Every rank takes the same best-checkpoint decision (saving is collective).
        return broadcast_object(metrics, info)
