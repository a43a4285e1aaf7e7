"""Sub-command ``ablate``: train and compare a named grid of HRNeXt switch variations.

    python -m harness ablate default                 # the CPU grid on the synthetic crowd data
    python -m harness ablate default --seeds 0,1,2   # repeat over seeds: mean and std columns
    python -m harness ablate coco-paper --device cuda
    python -m harness ablate --list
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ablate", help="train/evaluate a named ablation grid of HRNeXt's context modules",
        description="Train and evaluate every cell (baseline + variations, x seeds) of a registered ablation, "
        "skipping finished cells and resuming interrupted ones, then write table.{md,tex,csv}, "
        "delta_ap_vs_cost.png and results.json to OUT_DIR/NAME/.")
    p.add_argument("name", nargs="?", help="ablation name (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered ablations and exit")
    p.add_argument("--seeds", help="comma-separated training seeds, e.g. 0,1,2 (default: the ablation's)")
    p.add_argument("--force", action="store_true", help="re-run every cell from scratch (deletes its work dir)")
    p.add_argument("--out-dir", default="results/ablations",
                   help="tables/plot go to OUT_DIR/NAME (default %(default)s)")
    p.add_argument("--work-root", default="work_dirs/ablations",
                   help="cells train in WORK_ROOT/NAME/<variation>-s<seed>-<key> (default %(default)s)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is fastest on a busy CPU)")
    p.add_argument("--jobs", type=int, default=1,
                   help="cells trained side by side, one process each with cores/jobs torch threads "
                   "(0: one per CPU core; default %(default)s)")
    p.add_argument("--report-only", action="store_true", help="train nothing: tabulate the finished cells")
    p.add_argument("--dry-run", action="store_true", help="print the cells, their switches and status, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_ablate)


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _parse_seeds(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers, got {text!r}") from None


def cmd_ablate(args: argparse.Namespace) -> int:
    from harness.experiments.ablation import AblationError, cell_marker, get_ablation, list_ablations, run_ablation
    from harness.config import ConfigError
    from harness.engine import NonFiniteLossError, TrainingInterrupted

    if args.list:
        for n in list_ablations():
            a = get_ablation(n)
            print(f"{n:12s} {len(a.variations) + 1} rows x {len(a.seeds)} seed(s): {a.description}")
        return 0
    if not args.name:
        return _err("ablate: give an ablation name (see --list)")
    try:
        abl = get_ablation(args.name)
        seeds = _parse_seeds(args.seeds)
        if args.dry_run:
            for c in abl.cells(seeds):
                wd = c.work_dir(args.work_root)
                status = "done" if cell_marker(wd, c) else "interrupted" if (wd / "last.pth").is_file() else "todo"
                sw = ", ".join(f"{k}={v}" for k, v in c.overrides.items()) or "-"
                print(f"{c.variation:16s} seed {c.seed}  {status:11s} {wd}  [{sw}]")
            return 0
        res = run_ablation(abl, seeds=seeds, force=args.force, out_dir=args.out_dir, work_root=args.work_root,
                           device=args.device, progress=not args.no_progress, report_only=args.report_only,
                           threads=args.threads, jobs=args.jobs)
    except TrainingInterrupted as e:
        print(f"{e}\nfinished cells are kept; run the same command again to resume", file=sys.stderr)
        return 128 + int(e.signum)
    except (AblationError, ConfigError, ValueError, FileNotFoundError, NonFiniteLossError) as e:
        return _err(str(e))
    print((res.out_dir / "table.md").read_text())
    print(f"{res.trained} cell(s) trained, {res.skipped} skipped in {res.wall_s:.0f} s "
          f"({res.cpu_s:.0f} CPU s); outputs: {', '.join(str(f) for f in res.files)}")
    return 0
