"""Is a short demo-recipe training bit-reproducible?  Trains ``demo-<family>`` for a few iterations on a tiny
synthetic set in fresh processes under different settings and compares the final weights bit for bit.

    python -m harness.profile.determinism [--family hrnext] [--iters 4] [--out /tmp/determinism] [--only ...]

Settings compared against the first run (1 torch thread, no data-loader workers, in-process):
same settings again (fresh process); 2 torch threads; 2 data-loader workers; oneDNN (mkldnn) off; one job
of ``harness.parallel.run_jobs`` (a spawned single-threaded worker, as ``make demo`` runs families);
``torch.use_deterministic_algorithms(True)``; the kernels another CPU would select (``ATEN_CPU_CAPABILITY``,
``ONEDNN_MAX_CPU_ISA``).  Prints one line per setting: bit-identical or the largest
absolute weight difference.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

SETTINGS = {
    "base": {},
    "base-again": {},
    "threads-2": {"threads": 2},
    "loader-workers-2": {"workers": 2},
    "mkldnn-off": {"mkldnn": False},
    "use-deterministic-algorithms": {"det_algos": True},
    "parallel-worker": {"parallel": True},
    # What another CPU would select: ATen's vectorised kernels without AVX2, oneDNN limited to SSE4.1.
    "aten-cpu-capability-default": {"env": {"ATEN_CPU_CAPABILITY": "default"}},
    "onednn-max-isa-sse41": {"env": {"ONEDNN_MAX_CPU_ISA": "SSE41"}},
}


def train_once(family: str, iters: int, data: str, out: str, threads: int = 1, workers: int = 0,
               mkldnn: bool = True, det_algos: bool = False, parallel: bool = False) -> None:
    """Train in this process (or one spawned harness.parallel worker) and save the final weights."""
    import torch

    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn
    if det_algos:
        torch.use_deterministic_algorithms(True)
    job = (family, iters, data, out, workers)
    if parallel:
        from harness.parallel import run_jobs

        # Two tasks force the process pool (jobs=1 would run in this process); only the first is kept.
        run_jobs(_train_job, [job, (family, iters, data, out + ".other", workers)], jobs=2)
    else:
        _train_job(job)


def _train_job(job) -> str:
    family, iters, data, out, workers = job
    import torch

    from harness.config import get_experiment
    from harness.engine import Trainer

    exp = get_experiment(f"demo-{family}", {
        "data.root": data, "data.input_size": "64x48", "train.batch_size": 8, "train.max_iters": iters,
        "train.epochs": 1, "train.val_interval": 0, "sched.warmup_iters": 1, "data.num_workers": workers})
    wd = Path(out + ".wd")
    Trainer(exp, work_dir=wd, resume=None, device="cpu", progress=False, results_root=wd / "records").fit()
    ckpt = torch.load(wd / "last.pth", map_location="cpu", weights_only=True)
    torch.save(ckpt["model"], out)
    return out


def compare(a: str, b: str) -> str:
    import torch

    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    worst, name = 0.0, ""
    for k in sa:
        if sa[k].dtype.is_floating_point:
            d = (sa[k] - sb[k]).abs().max().item()
            if d > worst:
                worst, name = d, k
        elif not torch.equal(sa[k], sb[k]):
            return f"differs in {k}"
    return "bit-identical" if worst == 0 else f"max |diff| {worst:.3e} ({name})"


REPO = Path(__file__).resolve().parents[2]


def check(family: str = "hrnext", iters: int = 4, out: str | Path = "/tmp/determinism",
          only: list[str] | None = None, echo: bool = False) -> dict[str, str]:
    """Train ``demo-<family>`` for ``iters`` iterations under each setting (``base`` first, then
    ``only`` or all of :data:`SETTINGS`), each in a fresh process; return ``{setting: verdict}``
    (``"reference"`` for base, ``"bit-identical"`` or the largest weight difference)."""
    from harness.data.synthetic import SynthConfig, ensure_synthetic

    out = Path(out)
    data = out / "data"
    ensure_synthetic(data, SynthConfig(seed=0, image_size=(128, 128), num_images={"train": 24, "val": 4,
                                                                                  "occluded": 4}), progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONHASHSEED": "random"}
    names = ["base"] + [n for n in SETTINGS if n != "base" and (not only or n in only)]
    verdicts = {}
    for name in names:
        dst = out / f"{family}-{name}.pt"
        setting = dict(SETTINGS[name])
        child_env = {**env, **setting.pop("env", {})}
        kw = {"family": family, "iters": iters, "data": str(data), "out": str(dst), **setting}
        subprocess.run([sys.executable, "-m", "harness.profile.determinism", "--_child", json.dumps(kw)], check=True,
                       env=child_env, cwd=REPO, stdout=subprocess.DEVNULL)
        verdicts[name] = "reference" if name == "base" else compare(str(out / f"{family}-base.pt"), str(dst))
        if echo:
            digest = hashlib.sha256(dst.read_bytes()).hexdigest()[:12]
            print(f"{family} {name:30s} {verdicts[name]}  (file sha256 {digest})", flush=True)
    return verdicts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="hrnext", choices=["hrnet", "hrformer", "hrnext"])
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--out", default="/tmp/determinism")
    ap.add_argument("--only", nargs="*", help="run only these settings (besides base)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        train_once(**json.loads(args._child))
        return 0
    check(args.family, args.iters, args.out, args.only, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
