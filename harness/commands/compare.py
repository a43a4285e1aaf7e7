"""`python -m harness compare`: paired bootstrap intervals of AP and of AP differences between models."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.evaluate_predictions import add_eval_options, eval_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="AP of two or more prediction sets with paired-bootstrap intervals, and their differences",
        description="Score prediction sets on the same annotation file, resample the images with replacement "
        "(the same resamples for every set) and print each AP with its percentile interval, each difference "
        "with its interval and the fraction of resamples in which its sign flips. Sources: --preds (raw "
        "top-down predictions as for evaluate-predictions, or COCO keypoint results) with --ann, or --runs "
        "(result records written by test/evaluate, which point to their stored predictions).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preds", nargs="+", metavar="FILE", help="prediction files (raw or COCO results)")
    src.add_argument("--runs", nargs="+", metavar="RECORD", help="result records (results/runs/**.json)")
    p.add_argument("--ann", help="COCO-format GT annotation file (required with --preds)")
    p.add_argument("--dataset", default="coco", help="coco | ochuman | crowdpose (with --preds); default coco")
    p.add_argument("--meta", default=None, help="dataset metadata JSON for another keypoint layout")
    p.add_argument("--names", nargs="+", help="names of the sets (default: file names / model names)")
    p.add_argument("--baseline", help="compare every set with this one (default: every pair)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples (default 0)")
    p.add_argument("--metric", choices=["AP", "AP .5", "AP .75", "AR"], default="AP")
    add_eval_options(p)  # raw predictions are scored and suppressed as evaluate-predictions does
    p.add_argument("--json", help="write the result here (JSON)")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from harness.data import resolve_meta
    from harness.data.coco import AnnotationError, load_json
    from harness.eval.coco_eval import load_coco_gt
    from harness.eval.compare import compare, load_run, load_set
    from harness.io import atomic_write_json
    from harness.report.breakdown import format_comparison

    sources = args.preds or args.runs
    if len(sources) < 2:
        return _fail("compare: give at least two prediction sets")
    if args.names and len(args.names) != len(sources):
        return _fail(f"--names: {len(args.names)} names for {len(sources)} sets")
    try:
        loaded = []
        if args.preds:
            if not args.ann:
                return _fail("--ann is required with --preds")
            ann = args.ann
            meta = resolve_meta(args.dataset, args.meta, ann)
            for i, f in enumerate(sources):
                loaded.append((args.names[i] if args.names else Path(f).name, load_json(f, "predictions file")))
        else:
            recs = [load_run(r) for r in sources]
            ann = recs[0][0]["predictions"]["ann_file"]
            dataset = recs[0][0]["predictions"].get("dataset", recs[0][0]["dataset"])
            meta = resolve_meta(dataset, args.meta, ann)
            for i, (rec, preds) in enumerate(recs):
                if rec["predictions"]["ann_file"] != ann:
                    raise ValueError(f"run record {sources[i]}: scored on {rec['predictions']['ann_file']}, "
                                     f"not {ann}; a paired comparison needs the same annotation file")
                name = args.names[i] if args.names else f"{rec['model']} (seed {rec['seed']}, {Path(sources[i]).stem})"
                loaded.append((name, preds))
        gt = load_coco_gt(ann)
        sets = [load_set(n, p, ann, meta, coco_gt=gt, **eval_options(args)) for n, p in loaded]
        res = compare(sets, resamples=args.resamples, seed=args.seed, confidence=args.confidence,
                      baseline=args.baseline, metric=args.metric)
    except (FileNotFoundError, AnnotationError, ValueError) as e:
        return _fail(str(e))
    print(format_comparison(res, title=f"{args.metric} on {Path(ann).name} ({meta.name})"))
    if args.json:
        atomic_write_json(args.json, {"ann_file": str(ann), "dataset": meta.name, **res.to_dict()}, indent=2)
        print(f"\nwritten to {args.json}")
    return 0
