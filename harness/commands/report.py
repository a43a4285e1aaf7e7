"""`python -m harness table DATASET` and `python -m harness figures`: tables and plots from results/."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

TABLE_DATASETS = ("coco", "ochuman", "crowdpose")
DEFAULT_TABLES = "results/tables"
DEFAULT_FIGURES = "results/figures"


def _table(args: argparse.Namespace) -> int:
    from harness.io import check_output_dir
    from harness.report.build import build_tables

    check_output_dir(args.out, "--out", owned=args.out == DEFAULT_TABLES)  # before the work
    build_tables(args.dataset, args.results, args.out, live=not args.no_live, baseline=args.baseline,
                 resamples=args.resamples)
    return 0


def _figures(args: argparse.Namespace) -> int:
    from harness.io import check_output_dir
    from harness.report.build import build_figures

    check_output_dir(args.out, "--out", owned=args.out == DEFAULT_FIGURES)
    result = build_figures(args.results, args.out, TABLE_DATASETS)
    for p in result.files:
        print(p)
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "table",
        help="comparison table (reported + measured rows, live params/GFLOPs) as Markdown, LaTeX and CSV",
        description="Merge the paper's reported rows with measured runs under RESULTS for one dataset, add "
        "live parameter/FLOP counts, print the table and write <out>/<dataset>.{md,tex,csv}; also the AP-by-occlusion "
        "table <dataset>_breakdown.* and the bootstrap-interval table <dataset>_intervals.* (md, tex, csv).",
    )
    p.add_argument("dataset", choices=TABLE_DATASETS, help="which benchmark table")
    p.add_argument("--results", default="results", help="results root (reported/, runs/, profiles/); default: results")
    p.add_argument("--out", default=DEFAULT_TABLES, help=f"output folder; default: {DEFAULT_TABLES}")
    p.add_argument("--no-live", action="store_true",
                   help="do not build and profile models: take live params/GFLOPs from cached results/profiles only")
    p.add_argument("--baseline", help="model whose AP the others are compared with in <dataset>_intervals "
                   "(default: the first run of each split)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    p.set_defaults(func=_table)

    f = subparsers.add_parser(
        "figures",
        help="accuracy-vs-cost plots (AP vs GFLOPs / params, COCO and OCHuman) as PNG and PDF",
        description="Plot AP against GFLOPs and parameters for COCO and OCHuman from RESULTS: families "
        "coloured, input sizes as markers, reported filled, measured hollow, Pareto front dashed.",
    )
    f.add_argument("--results", default="results", help="results root; default: results")
    f.add_argument("--out", default=DEFAULT_FIGURES, help=f"output folder; default: {DEFAULT_FIGURES}")
    f.set_defaults(func=_figures)
