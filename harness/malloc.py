"""glibc malloc settings for CPU training and evaluation: keep freed tensor memory for the next step.

PyTorch's CPU tensors come from ``malloc``.  glibc serves a block above its mmap threshold (128 KiB at
start, raised only when such a block is freed) with a fresh ``mmap`` and gives it back on ``free``, and it
returns the top of the heap to the kernel once more than the trim threshold is free.  A training step
allocates and frees the same few-MiB activations and gradients every iteration, so by default the
kernel maps and zero-fills them again each step.  Measured on the 2-core machine (batch 8, 2 threads,
reference weights, per training step after warm-up): hrformer-s 34k page faults and 0.13 s of system
time, hrnet-w32 74k and 0.25 s, hrnext-s 14k and 0.15 s; the demo's 1-thread steps (batch 32, 128x96)
13k-40k faults and 0.03-0.11 s.  With the settings below: 0-10k faults and 0.00-0.08 s.

:func:`configure` sets ``M_MMAP_THRESHOLD`` to glibc's largest value (32 MiB on 64-bit) and
``M_TRIM_THRESHOLD`` to just under 2 GiB in this process (``mallopt``) and exports the same values as
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` so that processes started from here (spawned
workers, the bench's timing processes for both ours and the reference) run with the same allocator.
In the configuring process itself ``mallopt`` comes after start-up and removes most, not all, of the
faults (a test loop of 1-25 MB allocations still faulted ~450 pages per 20 rounds in about a third of
runs; processes started with the variables: none).  The price: a process keeps up to its peak heap
until it exits.  Nothing changes when
``HRBENCH_MALLOC=default``, when the user set either variable, when another allocator is preloaded
(jemalloc, tcmalloc, mimalloc) or when the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)  # glibc's DEFAULT_MMAP_THRESHOLD_MAX
TRIM_THRESHOLD = 2 ** 31 - 1  # mallopt takes an int: just under 2 GiB
SETTINGS = {"MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, TRIM_THRESHOLD)}
OPT_OUT = "HRBENCH_MALLOC"
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def skip_reason() -> str | None:
    """Why :func:`configure` would leave the allocator alone (None: it applies)."""
    env = os.environ
    if env.get(OPT_OUT, "").strip().lower() == "default":
        return f"{OPT_OUT}=default"
    user = [k for k in SETTINGS if k in env]
    if user:
        return f"{user[0]} is set by the user"
    preload = env.get("LD_PRELOAD", "")
    if any(a in preload for a in OTHER_ALLOCATORS):
        return f"LD_PRELOAD={preload}"
    return None


_APPLIED: dict[str, int] | None = None


def configure(libc: ctypes.CDLL | None = None) -> dict[str, int]:
    """Apply the settings of the module docstring once per process; the variables set (empty if skipped)."""
    global _APPLIED
    if _APPLIED is not None:
        return _APPLIED
    reason = skip_reason()
    if reason is None:
        libc = libc or _glibc()
        if libc is None:
            reason = "not glibc"
    if reason:
        log.debug("malloc settings left as they are (%s)", reason)
        _APPLIED = {}
        return _APPLIED
    applied = {}
    for var, (param, value) in SETTINGS.items():
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)):  # 1 on success
            os.environ[var] = str(value)
            applied[var] = value
    _APPLIED = applied
    return applied


def current() -> dict[str, str]:
    """The allocator variables in this process's environment (what its children inherit)."""
    return {k: os.environ[k] for k in SETTINGS if k in os.environ}
