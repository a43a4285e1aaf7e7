"""Timing: step functions under named protocols, synchronised step timing, peak memory, machine info.

Two step protocols, because the numbers they give answer different questions:

* ``"optimizer"`` (``python -m harness profile``, ``gpu-check``, the demo's time estimate): ``train`` =
  forward, MSE to a zero heatmap target (the pose loss's cost), backward and an AdamW step (fused where
  the trainer's is: :func:`harness.optim.fused_ok`), in train mode; ``infer`` = ``torch.inference_mode()``
  forward in eval mode.
* ``"refkit"`` (the side-by-side bench): the reference kit's ``time_ref.py`` protocol, so that ours and
  the reference time the same work: ``train`` = zero grads (set to None), forward, ``output.sum()``,
  backward, no optimizer, in train mode; ``infer`` = ``torch.no_grad()`` forward in eval mode.

:func:`time_step` runs warm-up steps, then times each step (synchronising CUDA before reading the
clock); :func:`profile_runtime` does that for each (mode, batch) of a registered model with peak memory.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import backbones
from harness import malloc
from harness.models import create_pose_model
from harness.optim import fused_ok

from .counting import parse_hw

log = logging.getLogger(__name__)

MODES = ("infer", "train")
PROTOCOLS = ("optimizer", "refkit")


def machine_info(device: str = "cpu", threads: int | None = None) -> dict:
    """CPU model, core count, torch threads and version, Python version, the device; the GPU name and
    count when ``device`` is CUDA; the world size under torchrun with more than one process."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads or torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
            "malloc": malloc.current()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        info["world_size"] = world
    return info


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on the CPU) before reading a clock."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model: nn.Module, x: torch.Tensor, mode: str, protocol: str = "optimizer",
              amp_dtype: torch.dtype | None = None) -> Callable[[], None]:
    """A closure running one ``mode`` step of ``model`` on ``x`` (N, 3, H, W) under ``protocol`` (see the
    module docstring); ``amp_dtype`` (e.g. ``torch.bfloat16``) runs the forward under autocast."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}: expected one of {PROTOCOLS}")
    dev_type = x.device.type

    def autocast():
        return torch.autocast(dev_type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()

    if mode == "infer":
        model.eval()
        grad_off = torch.inference_mode if protocol == "optimizer" else torch.no_grad

        def step():
            with grad_off(), autocast():
                model(x)
        return step
    model.train()
    if protocol == "refkit":
        def step():
            model.zero_grad(set_to_none=True)
            with autocast():
                out = model(x)
            out.float().sum().backward()
        return step
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, fused=fused_ok(params))  # as the trainer's (harness.optim)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = model(x)
        F.mse_loss(out.float(), torch.zeros_like(out, dtype=torch.float32)).backward()
        opt.step()
    return step


def time_step(step: Callable[[], None], *, warmup: int = 3, iters: int = 10,
              device: torch.device | str = "cpu") -> list[float]:
    """Run ``warmup`` untimed steps, then ``iters`` timed ones; seconds per step (CUDA synchronised)."""
    if warmup < 0 or iters < 1:
        raise ValueError(f"warmup={warmup}, iters={iters}: need warmup >= 0 and iters >= 1")
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


class PeakRSS:
    """Peak resident set size of this process while inside the block, sampled every ``interval`` s by a
    background thread (psutil); without psutil, the growth of ``ru_maxrss`` (a lower bound)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.base = self.peak = 0
        self.method = ""

    @staticmethod
    def _maxrss() -> int:
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def __enter__(self):
        try:
            import psutil  # optional: a finer measurement when installed
        except ImportError:
            psutil = None
        if psutil is None:
            self.method = "ru_maxrss growth (lower bound)"
            self.base = self._maxrss()
            self._thread = None
            return self
        proc = psutil.Process()
        self.method = "peak RSS growth (psutil, sampled every 5 ms)"
        self.base = self.peak = proc.memory_info().rss
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        self._proc = proc
        return self

    def __exit__(self, *exc):
        if self._thread is None:
            self.peak = self._maxrss()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._proc.memory_info().rss)
        return False

    @property
    def delta_mb(self) -> float:
        return max(0, self.peak - self.base) / 2 ** 20


class CudaPeak:
    """Peak ``torch.cuda.max_memory_allocated`` growth inside the block (caches emptied and the peak
    statistics reset on entry)."""

    method = "torch.cuda.max_memory_allocated growth"

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.base = self.peak = 0

    def __enter__(self):
        sync(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        self.base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.peak = torch.cuda.max_memory_allocated(self.device)
        return False

    @property
    def delta_mb(self) -> float:
        return max(0, self.peak - self.base) / 2 ** 20


def peak_memory(device: torch.device | str):
    """The peak-memory meter for ``device``: :class:`CudaPeak` on CUDA, :class:`PeakRSS` on the CPU."""
    return CudaPeak(device) if torch.device(device).type == "cuda" else PeakRSS()


def profile_runtime(name: str, input_hw: tuple[int, int] = (256, 192), *, batch_sizes: Iterable[int] = (1, 8),
                    modes: Iterable[str] = MODES, device: str = "cpu", threads: int | None = None, warmup: int = 3,
                    iters: int = 10, progress: bool = True, channels_last: bool = False) -> dict:
    """Latency, throughput and peak memory of ``name``'s pose model for each (mode, batch), under the
    ``"optimizer"`` protocol.

    Each (mode, batch) gets a fresh model, ``warmup`` untimed steps, then ``iters`` timed steps
    (synchronised on CUDA); the median and minimum are reported, with the thread count used.  Peak
    memory counts from before the model is built (weights, optimizer state, activations, the allocator's
    caches): ``torch.cuda.max_memory_allocated`` growth on CUDA, the growth of the process's resident set
    on the CPU (approximate: memory freed by an earlier configuration may be reused).
    Returns ``{"device", "threads", "warmup", "iters", "input_size", "machine", "results": [row, ...]}``
    with rows ``{"mode", "batch", "median_ms", "min_ms", "throughput_ips", "peak_mem_mb", "mem_kind"}``;
    a (mode, batch) that cannot run (HRNeXt trains only with batch >= 2) gets ``"skipped": reason``.
    """
    input_hw = parse_hw(input_hw)
    batch_sizes, modes = [int(b) for b in batch_sizes], list(modes)
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes={batch_sizes!r}: expected positive integers")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"modes={modes!r}: expected a non-empty subset of {MODES}")
    if warmup < 0 or iters < 1:
        raise ValueError(f"warmup={warmup}, iters={iters}: need warmup >= 0 and iters >= 1")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine")
    previous_threads = None
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads!r}: expected a positive integer")
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    backbones.get_entry(name)  # unknown name -> KeyError listing the valid ones, before any work
    jobs = [(m, b) for m in modes for b in batch_sizes]
    rows = []
    threads_used = torch.get_num_threads()
    try:
        bar = tqdm(jobs, desc=f"profile {name} {input_hw[0]}x{input_hw[1]}", disable=not progress, unit="cfg")
        for mode, batch in bar:
            bar.set_postfix_str(f"{mode} batch {batch}")
            rows.append(_time_one(name, input_hw, mode, batch, dev, warmup, iters, channels_last))
    finally:
        if previous_threads is not None:  # a library call leaves the caller's thread count as it was
            torch.set_num_threads(previous_threads)
    return {"model": name, "input_size": list(input_hw), "device": str(dev), "threads": threads_used,
            "warmup": warmup, "iters": iters, "channels_last": channels_last,
            "machine": machine_info(str(dev), threads_used), "results": rows}


def _time_one(name: str, input_hw: tuple[int, int], mode: str, batch: int, dev: torch.device, warmup: int,
              iters: int, channels_last: bool) -> dict:
    row: dict = {"mode": mode, "batch": batch}
    try:
        with peak_memory(dev) as mem:
            model = create_pose_model(name).eval().to(dev)
            x = torch.randn(batch, 3, *input_hw, generator=torch.Generator().manual_seed(0)).to(dev)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            times = time_step(make_step(model, x, mode), warmup=warmup, iters=iters, device=dev)
    except ValueError as e:  # a configuration the model refuses (the message names why)
        log.info("%s %s batch %d skipped: %s", name, mode, batch, e)
        return row | {"skipped": str(e)}
    med = statistics.median(times)
    return row | dict(median_ms=1e3 * med, min_ms=1e3 * min(times), throughput_ips=batch / med,
                      peak_mem_mb=mem.delta_mb, mem_kind=mem.method)


__all__ = ["CudaPeak", "MODES", "PROTOCOLS", "PeakRSS", "machine_info", "make_step", "peak_memory",
           "profile_runtime", "sync", "time_step"]
