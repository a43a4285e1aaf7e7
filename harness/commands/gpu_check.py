"""`python -m harness gpu-check` (= `make gpu-check`): model steps, data loader and a killed-and-resumed
torchrun training on one GPU, in under 8 minutes -> results/bench/gpu-<device>.{md,json}."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "gpu-check", help="GPU readiness: images/s + peak memory (fp32, bf16+channels_last, compile), data loader, "
                          "torchrun training killed and resumed (results/bench/gpu-<device>.md)",
        description="On one GPU, in under 8 minutes: train and inference images/s and peak memory of the six paper "
                    "models at fp32, bf16 autocast + channels_last and torch.compile; data-loader images/s per "
                    "worker and the workers each model needs; a short bf16 training on synthetic crowds through "
                    "torchrun (NCCL), killed with SIGTERM and resumed, compared with an uninterrupted run. "
                    "--cpu runs the same code on the CPU at tiny sizes (demo models, gloo).")
    p.add_argument("--cpu", action="store_true", help="the CPU smoke path (demo models, tiny sizes, gloo; CI)")
    p.add_argument("--out", default=str(REPO / "results" / "bench"), help="report folder (default results/bench)")
    p.add_argument("--work-dir", default=str(REPO / "work_dirs" / "gpu-check"),
                   help="synthetic data and training runs (default work_dirs/gpu-check)")
    p.add_argument("--budget", type=float, default=None, metavar="S",
                   help="seconds for the whole check; compile cells that would not fit are skipped (default 450)")
    p.add_argument("--train-model", default=None, help="model of the torchrun training (default hrnet-w32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from harness.profile.gpucheck import GpuCheckSettings, run_check

    s = GpuCheckSettings.cpu_smoke() if args.cpu else GpuCheckSettings.gpu()
    try:
        if args.budget is not None:
            s = dataclasses.replace(s, budget_s=args.budget)
        if args.train_model:
            s = dataclasses.replace(s, train_model=args.train_model)
        rep = run_check(s, args.out, args.work_dir, progress=not args.no_progress)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {' and '.join(rep['paths'])} in {rep['seconds_total']:.0f} s; training killed and resumed: "
          f"{'equal' if rep['training']['ok'] else 'CHECK FAILED'}")
    return 0 if rep["training"]["ok"] else 1
