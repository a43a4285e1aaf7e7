"""Side-by-side speed of our backbones against the reference implementations.

The protocol is the reference kit's (``shared/tools/refkit/time_ref.py``): pose model = backbone + 1x1
head loaded with the deterministic reference weights, input batch of ``batch`` random images;
``train`` = zero grads (set to None), forward, ``loss = output.sum()``, backward (no optimizer);
``infer`` = ``torch.no_grad()`` forward in eval mode.  Warm-up, then the median of ``iters`` timed steps.
Ours and the reference run *alternately* in rounds, so that load on the machine hits both alike, and
only their ratio is reported as a result.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .weights import load_weights
from .models import create_pose_model

INPUT_HW = {"hrnet-w32": (256, 192), "hrnet-w48": (256, 192), "hrformer-s": (256, 192),
            "hrformer-b": (256, 192), "hrnext-s": (256, 192), "hrnext-b": (384, 288)}


@dataclass
class StepTiming:
    impl: str
    name: str
    mode: str
    batch: int
    threads: int
    median_s: float
    min_s: float
    times_s: list[float]


def _step_fn(model: torch.nn.Module, x: torch.Tensor, mode: str):
    if mode == "train":
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            model(x).sum().backward()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
    return step


def time_ours(name: str, mode: str = "train", batch: int = 8, threads: int = 2, iters: int = 10,
              warmup: int = 3, weights: dict | None = None, channels_last: bool = False) -> StepTiming:
    torch.set_num_threads(threads)
    model = create_pose_model(name)
    if weights is not None:
        load_weights(model, weights)
    h, w = INPUT_HW.get(name, (256, 192))
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    step = _step_fn(model, x, mode)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return StepTiming("hrbench" + ("+cl" if channels_last else ""), name, mode, batch, threads,
                      statistics.median(times), min(times), times)


def time_reference(ref_python: str, refkit_dir: Path, name: str, mode: str = "train", batch: int = 8,
                   threads: int = 2, iters: int = 10, warmup: int = 3) -> StepTiming:
    """Run the reference kit's timer in its own interpreter (its venv holds mmpose / the authors' code)."""
    cmd = [ref_python, str(refkit_dir / "time_ref.py"), name, "--mode", mode, "--batch", str(batch),
           "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if out.returncode != 0:
        raise RuntimeError(f"reference timer failed ({' '.join(cmd)}):\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return StepTiming("reference", name, mode, batch, threads, r["median_s"], r["min_s"], r["times_s"])


def compare_models(names: list[str], modes=("train",), *, ref_python: str | None, refkit_dir: Path | None,
                   rounds: int = 2, batch: int = 8, threads: int = 2, iters: int = 10,
                   progress: bool = True) -> list[dict]:
    """Alternate ours and the reference ``rounds`` times per (model, mode); report medians and ratios."""
    from tqdm import tqdm

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    rows = []
    jobs = [(n, m) for n in names for m in modes]
    for name, mode in tqdm(jobs, desc="bench models", disable=not progress):
        weights = _reference_weights(name)
        ours, ref = [], []
        for _ in range(rounds):
            ours.append(time_ours(name, mode, batch, threads, iters, weights=weights))
            if ref_python:
                ref.append(time_reference(ref_python, refkit_dir, name, mode, batch, threads, iters))
        row = {"model": name, "mode": mode, "batch": batch, "threads": threads,
               "ours_s": statistics.median(t.median_s for t in ours)}
        if ref:
            row["reference_s"] = statistics.median(t.median_s for t in ref)
            row["speedup"] = row["reference_s"] / row["ours_s"]
        rows.append(row)
    return rows


def _reference_weights(name: str) -> dict | None:
    """The deterministic reference state dict (so both implementations compute on the same numbers)."""
    try:
        from reference_rule import reference_state_dict  # tests/reference_rule.py
    except ImportError:
        return None
    return reference_state_dict(name) if name in INPUT_HW else None


def rows_to_markdown(rows: list[dict]) -> str:
    head = "| model | mode | batch | threads | ours (s/step) | reference (s/step) | speed-up |\n|---|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        ref = f"{r['reference_s']:.3f}" if "reference_s" in r else "-"
        sp = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        lines.append(f"| {r['model']} | {r['mode']} | {r['batch']} | {r['threads']} | {r['ours_s']:.3f} | {ref} | {sp} |")
    return "\n".join(lines)


__all__ = ["StepTiming", "time_ours", "time_reference", "compare_models", "rows_to_markdown", "asdict"]
