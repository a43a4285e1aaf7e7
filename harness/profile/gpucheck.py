"""`python -m harness gpu-check` (= `make gpu-check`): is the training path ready for a GPU?

On one GPU, in under 8 minutes (``GpuCheckSettings.gpu``), it measures and writes
``results/bench/gpu-<device>.{md,json}``:

1. **Model steps**: for each paper model at its paper input size, train and inference images/s and peak
   memory (``torch.cuda.max_memory_allocated`` growth, statistics reset per cell) under three settings:
   ``fp32``; ``bf16+channels_last`` (``torch.autocast`` bf16, model and input in channels_last); and
   ``compile`` (``torch.compile`` of the bf16+channels_last model; its first step, which compiles, is
   reported separately as ``compile_s``).  Each cell: a fresh model, warm-up steps, then timed steps with
   ``torch.cuda.synchronize`` around each (``harness.profile.timing``); the ``optimizer`` protocol
   (forward, MSE, backward, AdamW step).  A cell that fails (out of memory, a compile error) records its
   error and the check goes on; compile cells run last and are skipped, labelled, when the time budget
   would be exceeded.
2. **Data loader**: the training pipeline through ``torch.utils.data.DataLoader`` (persistent workers,
   pinned memory on CUDA, prefetch 4) for several worker counts: images/s, images/s per worker, and the
   workers each model's bf16 training throughput needs.
3. **Training, killed and resumed**: ``torchrun`` (one process per visible GPU, NCCL; gloo on the CPU; a
   single GPU runs one process, for which the trainer forms no process group, and NCCL itself cannot put two
   ranks on one device) runs ``python -m harness train`` on synthetic crowds (``harness.data.synthetic``), bf16, deterministic, for a few hundred
   iterations, once straight through and once killed with SIGTERM half way (the trainer checkpoints) and
   continued with ``--resume auto``; the two final checkpoints are compared tensor by tensor.

``GpuCheckSettings.cpu_smoke`` runs the same code on the CPU with the demo models at tiny sizes (what CI
runs, so the script cannot rot).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import backbones
from harness.data import build_dataset
from harness.data.codecs import default_sigma
from harness.data.synthetic import SynthConfig, generate
from harness.engine.checkpoint import LAST, load_checkpoint
from harness.io import atomic_write_text
from harness.models import create_pose_model

from .counting import REPO, default_input_hw
from .timing import machine_info, make_step, peak_memory, sync, time_step

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "bf16+channels_last", "compile")
PAPER_MODELS = ("hrnet-w32", "hrnet-w48", "hrformer-s", "hrformer-b", "hrnext-s", "hrnext-b")


@dataclass(frozen=True)
class GpuCheckSettings:
    """What one check measures (``gpu()``: the real check; ``cpu_smoke()``: CI's tiny CPU run)."""

    device: str = "cuda"
    models: tuple[tuple[str, tuple[int, int]], ...] = tuple((m, default_input_hw(m)) for m in PAPER_MODELS)
    batch: int = 32
    warmup: int = 3
    iters: int = 10
    compile_models: tuple[str, ...] = PAPER_MODELS  # in this order, while the budget lasts
    compile_backend: str = "inductor"
    compile_reserve_s: float = 60.0  # a compile cell starts only with this much budget left
    budget_s: float = 450.0  # the whole check, compile cells cut to fit
    loader_workers: tuple[int, ...] = (1, 2, 4, 8)
    loader_batch: int = 64
    loader_batches: int = 20
    train_model: str = "hrnet-w32"
    train_input: tuple[int, int] = (256, 192)
    train_batch: int = 64
    train_iters: int = 200
    train_workers: int = 8
    train_nproc: int = 0  # 0: one process per visible GPU
    synth_image_size: tuple[int, int] = (256, 256)
    synth_train_images: int = 512

    def __post_init__(self):
        for f in ("batch", "iters", "loader_batch", "loader_batches", "train_batch", "train_iters",
                  "synth_train_images"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"GpuCheckSettings.{f}={v!r}: expected a positive integer")
        if self.train_iters < 4:
            raise ValueError(f"GpuCheckSettings.train_iters={self.train_iters}: need >= 4 to kill and resume")
        if not self.models:
            raise ValueError("GpuCheckSettings.models: empty")
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"GpuCheckSettings.device={self.device!r}: expected 'cuda' or 'cpu'")

    @classmethod
    def gpu(cls) -> "GpuCheckSettings":
        workers = tuple(w for w in (1, 2, 4, 8, 16) if w <= max(os.cpu_count() or 1, 1))
        return cls(loader_workers=workers, train_workers=min(8, os.cpu_count() or 1))

    @classmethod
    def cpu_smoke(cls) -> "GpuCheckSettings":
        tiny = (64, 48)
        return cls(device="cpu", models=tuple((f"{f}-demo", tiny) for f in ("hrnet", "hrformer", "hrnext")),
                   batch=2, warmup=1, iters=1, compile_models=("hrnet-demo",), compile_backend="eager",
                   compile_reserve_s=0.0, budget_s=float("inf"), loader_workers=(0, 1), loader_batch=4,
                   loader_batches=2, train_model="hrnet-demo", train_input=tiny, train_batch=4, train_iters=24,
                   train_workers=0, train_nproc=2, synth_image_size=(128, 128), synth_train_images=12)


# ---------------------------------------------------------------------------------------------- 1. steps
def time_cell(name: str, hw: tuple[int, int], mode: str, variant: str, s: GpuCheckSettings) -> dict:
    """Images/s and peak memory of one (model, mode, variant); ``error`` instead when it fails."""
    dev = torch.device(s.device)
    row = {"model": name, "input": list(hw), "mode": mode, "variant": variant, "batch": s.batch}
    try:
        with peak_memory(dev) as mem:
            model = create_pose_model(name).to(dev)
            x = torch.randn(s.batch, 3, *hw, device=dev)
            amp = None
            if variant != "fp32":
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
                amp = torch.bfloat16
            net = torch.compile(model, backend=s.compile_backend) if variant == "compile" else model
            step = make_step(net, x, mode, protocol="optimizer", amp_dtype=amp)
            if variant == "compile":  # the first call compiles: timed on its own
                t0 = time.perf_counter()
                step()
                sync(dev)
                row["compile_s"] = time.perf_counter() - t0
            times = time_step(step, warmup=s.warmup, iters=s.iters, device=dev)
    except Exception as e:  # noqa: BLE001 - out of memory, a compile failure: recorded, the check goes on
        log.warning("%s %s %s failed: %s", name, mode, variant, str(e).splitlines()[0] if str(e) else e)
        row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        return row
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    med = statistics.median(times)
    return row | {"median_s": med, "images_per_s": s.batch / med, "peak_mem_mb": mem.delta_mb,
                  "mem_kind": mem.method}


# --------------------------------------------------------------------------------------------- 2. loader
def loader_bench(dataset, s: GpuCheckSettings) -> list[dict]:
    """Images/s of a DataLoader over ``dataset`` per worker count, in steady state: the clock starts once
    every worker has delivered a batch (start-up and the first prefetch excluded), then runs over
    ``max(loader_batches, 4 * workers)`` batches."""
    rows = []
    pin = s.device == "cuda"
    for w in s.loader_workers:
        kwargs = dict(num_workers=w, pin_memory=pin, shuffle=True, batch_size=s.loader_batch, drop_last=True,
                      generator=torch.Generator().manual_seed(0))
        if w > 0:
            kwargs.update(persistent_workers=True, prefetch_factor=4)
        loader = DataLoader(dataset, **kwargs)
        skip, count = max(w, 1), max(s.loader_batches, 4 * w)
        n = t0 = 0
        it = iter(loader)
        for i in range(skip + count):
            try:
                batch = next(it)
            except StopIteration:  # a small dataset: next epoch (persistent workers stay up)
                it = iter(loader)
                batch = next(it)
            if i == skip - 1:
                t0 = time.perf_counter()
            elif i >= skip:
                n += batch["img"].shape[0]
        dt = time.perf_counter() - t0
        del it, loader
        rows.append({"workers": w, "batches": count, "images_per_s": n / dt,
                     "images_per_s_per_worker": n / dt / max(w, 1)})
    return rows


def workers_needed(target_ips: float, loader_rows: list[dict]) -> dict:
    """The fewest measured workers reaching ``target_ips``, else an extrapolation from the largest count."""
    for r in sorted(loader_rows, key=lambda r: r["workers"]):
        if r["workers"] > 0 and r["images_per_s"] >= target_ips:
            return {"workers": r["workers"], "extrapolated": False}
    top = max((r for r in loader_rows if r["workers"] > 0), key=lambda r: r["workers"], default=None)
    if top is None:
        return {"workers": None, "extrapolated": True}
    return {"workers": math.ceil(target_ips / top["images_per_s_per_worker"]), "extrapolated": True}


# ---------------------------------------------------------------------------------- 3. train, kill, resume
def _train_cmd(s: GpuCheckSettings, nproc: int, data_root: Path, work_dir: Path, resume: bool) -> list[str]:
    family = backbones.get_entry(s.train_model).family
    h, w = s.train_input
    sets = {"model.name": s.train_model, "data.root": str(data_root), "data.input_size": f"{h}x{w}",
            "data.sigma": default_sigma((h, w)), "data.num_workers": s.train_workers, "train.amp": "bf16",
            "train.batch_size": s.train_batch, "train.epochs": 10_000, "train.max_iters": s.train_iters,
            "train.deterministic": "true", "train.val_interval": 0, "train.ckpt_interval": 10_000,
            "train.log_interval": 1, "train.channels_last": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
           "harness", "train", f"demo-{family}", *sum((["--set", f"{k}={v}"] for k, v in sets.items()), []),
           "--work-dir", str(work_dir), "--device", s.device, "--no-progress"]
    return cmd + (["--resume", "auto"] if resume else [])


def _logged_iters(work_dir: Path) -> int:
    try:
        lines = (work_dir / "log.csv").read_text().strip().splitlines()
    except OSError:
        return 0
    return max(len(lines) - 1, 0)


def _run(cmd: list[str], env: dict, log_path: Path, kill_at: int | None = None, work_dir: Path | None = None,
         timeout: float = 900.0) -> dict:
    """Run ``cmd``; with ``kill_at``, send SIGTERM to torchrun once ``work_dir/log.csv`` has that many rows."""
    t0 = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        killed = False
        while proc.poll() is None:
            if kill_at is not None and not killed and _logged_iters(work_dir) >= kill_at:
                proc.send_signal(signal.SIGTERM)  # torchrun passes it on to every worker
                killed = True
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                break
            time.sleep(0.02)
        rc = proc.wait()
    # A run stopped by our SIGTERM ends non-zero by design; any other non-zero end is a failure.
    failed = rc != 0 and not killed
    return {"returncode": rc, "killed": killed, "seconds": time.perf_counter() - t0,
            "log_tail": log_path.read_text()[-1500:] if failed else ""}


def _logged_images_per_s(work_dir: Path) -> float | None:
    """Median of the trainer's logged img/s after the first 3 rows (warm-up), from ``log.csv``."""
    import csv

    try:
        with open(work_dir / "log.csv", newline="") as f:
            vals = [float(r["img_per_s"]) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        return None
    return statistics.median(vals[3:] or vals) if vals else None


def compare_checkpoints(a: Path, b: Path) -> dict:
    """Whether the models of two checkpoints are identical; the largest absolute difference otherwise."""
    ma, mb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    if ma.keys() != mb.keys():
        return {"equal": False, "max_abs_diff": None, "error": "different keys"}
    diffs = [(ma[k].double() - mb[k].double()).abs().max().item() for k in ma if ma[k].numel()]
    return {"equal": all(torch.equal(ma[k], mb[k]) for k in ma), "max_abs_diff": max(diffs, default=0.0)}


def train_kill_resume(s: GpuCheckSettings, data_root: Path, work: Path) -> dict:
    """Train straight through, and killed half way + resumed; compare the two final checkpoints."""
    nproc = s.train_nproc or max(torch.cuda.device_count(), 1)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    straight, killed = work / "straight", work / "killed"
    work.mkdir(parents=True, exist_ok=True)
    for d in (straight, killed):  # a fresh pair of runs every time
        for f in sorted(d.rglob("*"), reverse=True) if d.is_dir() else ():
            f.unlink() if f.is_file() or f.is_symlink() else f.rmdir()
    kill_at = max(1, s.train_iters // 3)
    res = {"model": s.train_model, "input": list(s.train_input), "batch": s.train_batch, "iters": s.train_iters,
           "nproc": nproc,
           "backend": ("nccl" if s.device == "cuda" else "gloo") if nproc > 1 else "none (one process)", "amp": "bf16", "kill_at": kill_at,
           "process_group": nproc > 1}
    res["straight"] = _run(_train_cmd(s, nproc, data_root, straight, False), env, work / "straight.log")
    res["first"] = _run(_train_cmd(s, nproc, data_root, killed, False), env, work / "killed.log", kill_at, killed)
    interrupted_at = load_checkpoint(killed / LAST)["global_iter"] if (killed / LAST).is_file() else None
    res["interrupted_at"] = interrupted_at
    res["resumed"] = _run(_train_cmd(s, nproc, data_root, killed, True), env, work / "resumed.log")
    ok_runs = res["straight"]["returncode"] == 0 and res["resumed"]["returncode"] == 0
    res["interrupted"] = (res["first"]["returncode"] != 0 and interrupted_at is not None
                          and interrupted_at < s.train_iters)
    if ok_runs and (straight / LAST).is_file() and (killed / LAST).is_file():
        res["final_iters"] = [load_checkpoint(p / LAST)["global_iter"] for p in (straight, killed)]
        res |= compare_checkpoints(straight / LAST, killed / LAST)
    else:
        res |= {"equal": False, "max_abs_diff": None}
    res["images_per_s"] = _logged_images_per_s(straight)
    res["ok"] = bool(ok_runs and res["interrupted"] and res["equal"])
    return res


# ------------------------------------------------------------------------------------------------ report
def device_slug(s: GpuCheckSettings) -> str:
    name = torch.cuda.get_device_name(0) if s.device == "cuda" else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def render_markdown(rep: dict) -> str:
    m, st = rep["machine"], rep["settings"]
    lines = [f"# gpu-check on {m.get('gpu') or m['cpu']}", "",
             f"Date: {rep['date']}; torch {m['torch']} (CUDA {m.get('cuda') or '-'}), {m['cpu_count']} CPUs; "
             f"batch {st['batch']}, warm-up {st['warmup']}, median of {st['iters']} steps; "
             f"{rep['seconds_total']:.0f} s in all.", "",
             "## Model steps (images/s, peak memory)", "",
             "| model | input | mode | variant | images/s | peak memory (MiB) | note |", "|---|---|---|---|---:|---:|---|"]
    for r in rep["steps"]:
        hw = f"{r['input'][0]}x{r['input'][1]}"
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['model']} | {hw} | {r['mode']} | {r['variant']} | - | - | "
                         f"{r.get('skipped') or r['error'][:120]} |")
        else:
            note = f"compile {r['compile_s']:.1f} s" if "compile_s" in r else ""
            lines.append(f"| {r['model']} | {hw} | {r['mode']} | {r['variant']} | {r['images_per_s']:.1f} | "
                         f"{r['peak_mem_mb']:.0f} | {note} |")
    lines += ["", "## Data loader (training pipeline)", "", f"Data: {rep['loader']['data']}", "",
              "| workers | images/s | images/s per worker |", "|---:|---:|---:|"]
    for r in rep["loader"]["rows"]:
        lines.append(f"| {r['workers']} | {r['images_per_s']:.1f} | {r['images_per_s_per_worker']:.1f} |")
    lines += ["", "| model | bf16+channels_last train images/s | workers needed |", "|---|---:|---:|"]
    for name, need in rep["loader"]["needed"].items():
        w = "-" if need["workers"] is None else f"{need['workers']}{' (extrapolated)' if need['extrapolated'] else ''}"
        lines.append(f"| {name} | {need['target_ips']:.1f} | {w} |")
    t = rep["training"]
    lines += ["", "## Training through torchrun, killed and resumed", "",
              f"{t['model']} {t['input'][0]}x{t['input'][1]}, batch {t['batch']}, {t['iters']} iterations, bf16, "
              f"{t['nproc']} process(es), backend {t['backend']}; "
              f"{t['images_per_s'] or float('nan'):.1f} images/s (trainer log, median)"
              + ("" if t["process_group"] else " (one process: the trainer forms no process group)") + ".",
              f"SIGTERM after {t['kill_at']} logged iterations; checkpoint at iteration {t['interrupted_at']}; "
              f"resumed with --resume auto.",
              f"Final checkpoints equal: **{t['equal']}** (max abs difference {t['max_abs_diff']}); "
              f"check {'passed' if t['ok'] else 'FAILED'}."]
    for k in ("straight", "first", "resumed"):
        if t[k].get("log_tail"):
            lines += ["", f"{k} run failed (exit {t[k]['returncode']}):", "```", t[k]["log_tail"], "```"]
    return "\n".join(lines) + "\n"


def run_check(s: GpuCheckSettings, out_dir: str | Path, work_dir: str | Path, *, progress: bool = True) -> dict:
    """Run the three sections; write ``<out_dir>/gpu-<device>.{md,json}``; returns the report."""
    from datetime import datetime, timezone

    from tqdm import tqdm

    if s.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("gpu-check: CUDA is not available on this machine (--cpu runs the CPU smoke path)")
    t_start = time.perf_counter()
    deadline = t_start + s.budget_s
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cells = [(n, hw, mode, v) for v in VARIANTS[:2] for n, hw in s.models for mode in ("train", "infer")]
    compile_cells = [(n, hw, mode, "compile") for n in s.compile_models for m, hw in s.models if m == n
                     for mode in ("train", "infer")]
    steps = []
    bar = tqdm(total=len(cells) + len(compile_cells), desc="gpu-check steps", unit="cell", disable=not progress)
    for cell in cells:
        bar.set_postfix_str(" ".join(str(c) for c in (cell[0], cell[2], cell[3])))
        steps.append(time_cell(*cell, s))
        bar.update(1)

    # Data: synthetic crowds (generated once, reused), through the training pipeline.
    data_root = work / "synthetic"
    generate(data_root, SynthConfig(image_size=s.synth_image_size,
                                    num_images={"train": s.synth_train_images, "val": 0, "occluded": 0}),
             progress=progress, workers=max(1, min(8, (os.cpu_count() or 1))))
    ds = build_dataset("synthetic", data_root, "train", input_size=s.train_input, train=True, seed=0)
    loader_rows = loader_bench(ds, s)
    needed = {}
    for r in steps:
        if r["mode"] == "train" and r["variant"] == "bf16+channels_last" and "images_per_s" in r:
            needed[r["model"]] = workers_needed(r["images_per_s"], loader_rows) | {"target_ips": r["images_per_s"]}
    loader = {"data": f"synthetic crowds {s.synth_image_size[0]}x{s.synth_image_size[1]} JPEGs, "
                      f"{len(ds)} instances, crops {s.train_input[0]}x{s.train_input[1]} (COCO photos decode slower)",
              "rows": loader_rows, "needed": needed, "batch": s.loader_batch}

    training = train_kill_resume(s, data_root, work / "train")

    for cell in compile_cells:
        bar.set_postfix_str(f"{cell[0]} {cell[2]} compile")
        if deadline - time.perf_counter() < s.compile_reserve_s:
            steps.append({"model": cell[0], "input": list(cell[1]), "mode": cell[2], "variant": "compile",
                          "batch": s.batch, "skipped": f"time budget ({s.budget_s:.0f} s) reached"})
        else:
            steps.append(time_cell(*cell, s))
        bar.update(1)
    bar.close()
    rep = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(s.device),
           "settings": json.loads(json.dumps(dataclasses.asdict(s), default=str)), "steps": steps, "loader": loader,
           "training": training, "seconds_total": time.perf_counter() - t_start}
    out = Path(out_dir)
    slug = device_slug(s)
    atomic_write_text(out / f"gpu-{slug}.json", json.dumps(rep, indent=2, default=float) + "\n")
    atomic_write_text(out / f"gpu-{slug}.md", render_markdown(rep))
    rep["paths"] = [str(out / f"gpu-{slug}.md"), str(out / f"gpu-{slug}.json")]
    return rep


__all__ = ["GpuCheckSettings", "VARIANTS", "compare_checkpoints", "device_slug", "loader_bench", "render_markdown",
           "run_check", "time_cell", "train_kill_resume", "workers_needed"]
