"""`python -m harness demo`: train and compare the three demo models end to end on synthetic data (CPU)."""
from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="end-to-end demo on synthetic data: train HRNet/HRFormer/HRNeXt (demo sizes), compare",
        description="Generate the synthetic crowd dataset if absent, train the demo variants of HRNet, "
        "HRFormer and HRNeXt under one identical recipe on the CPU, evaluate each on `val` (detection boxes) "
        "and `occluded` (GT boxes), also score the untrained models, then print and write a comparison table "
        "(table.md, table.csv) and an accuracy-vs-cost plot (accuracy_vs_cost.png) under --out. Finished "
        "runs are reused on a re-run (same settings); an interrupted one resumes; --force retrains.")
    p.add_argument("--force", action="store_true", help="retrain every family from scratch")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes (24/8/8 images, 2 iterations): checks the plumbing in about a minute")
    p.add_argument("--out", default=None, help="output folder (default results/demo; results/demo-smoke with --smoke)")
    p.add_argument("--data-root", default=None, help="synthetic data folder (default data/synthetic)")
    p.add_argument("--work-dir", default=None, help="checkpoints and logs (default work_dirs/demo)")
    p.add_argument("--families", default=None, help="comma-separated subset of hrnet,hrformer,hrnext")
    # The defaults are the registered demo-<family> experiment's and SynthConfig's (python -m harness
    # train --list / synth --help); not imported here, so building the parser stays cheap.
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo-<family> experiment's)")
    p.add_argument("--max-iters", type=int, default=None, help="cap on iterations per family (default: none)")
    p.add_argument("--train-images", type=int, default=None,
                   help="synthetic training images (default: SynthConfig's, as `python -m harness synth`)")
    p.add_argument("--input-size", default=None, metavar="HxW",
                   help="network input (default: the demo-<family> experiment's)")
    p.add_argument("--jobs", type=int, default=None,
                   help="families trained side by side, one process each with cores/jobs torch threads "
                   "(default 0: one per CPU core; 1: one after another)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from harness.experiments.demo import DemoConfig

    kw = {}
    if args.out:
        kw["out_dir"] = args.out
    if args.data_root:
        kw["data_root"] = args.data_root
    if args.work_dir:
        kw["work_dir"] = args.work_dir
    if args.families:
        kw["families"] = tuple(f.strip() for f in args.families.split(",") if f.strip())
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.max_iters is not None:
        kw["max_iters"] = args.max_iters
    if args.train_images is not None:
        kw["synth_train"] = args.train_images
    if args.input_size:
        try:
            h, w = (int(v) for v in args.input_size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--input-size: expected HxW such as 128x96, got {args.input_size!r}") from None
        kw["input_size"] = (h, w)
    if args.jobs is not None:
        kw["jobs"] = args.jobs
    kw["force"] = bool(args.force)
    kw["progress"] = not args.no_progress
    return DemoConfig.smoke_preset(**kw) if args.smoke else DemoConfig(**kw)


def run(args: argparse.Namespace) -> int:
    from harness.experiments.demo import DemoError, run_demo

    try:
        cfg = _config(args)
    except (DemoError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from harness.engine import NonFiniteLossError, TrainingInterrupted

    try:
        res = run_demo(cfg)
    except TrainingInterrupted as e:  # checkpointed: the next `make demo` resumes where this one stopped
        print(f"{e}\nrun the demo again to resume", file=sys.stderr)
        return 128 + int(e.signum)
    except (DemoError, FileNotFoundError, ValueError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print()
    print(res["markdown"])
    for name, path in res["files"].items():
        print(f"{name}: {path}")
    best = max(res["results"], key=lambda r: r["val"].get("AP", -1.0))
    reused = f"; reused {', '.join(res['cached'])}" if res["cached"] else ""
    print(f"demo finished in {res['wall_seconds'] / 60:.1f} min{reused}: best {best['model']} "
          f"AP {best['val'].get('AP', float('nan')):.3f} on val (untrained {best['untrained_val'].get('AP', 0.0):.3f})")
    return 0
