"""`python -m harness evaluate-predictions`: COCO keypoint metrics of raw top-down predictions."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-predictions",
        help="evaluate raw top-down predictions made elsewhere (rescoring + OKS-NMS + COCO eval)",
        description="Evaluate RAW.json, a list of raw top-down predictions {image_id, category_id, "
        "bbox [x,y,w,h], bbox_score, area, keypoints [[x,y],...], keypoint_scores [...]} "
        "('area' = product of the padded, aspect-fixed crop scale). Applies mmpose's "
        "rescoring (box score x mean keypoint score above 0.2) and OKS-NMS at 0.9 unless "
        "--no-postprocess, evaluates with xtcocotools, prints a table and writes the metrics as JSON. "
        "The numbers equal mmpose 1.3.2's CocoMetric on the same predictions.",
    )
    p.add_argument("--ann", required=True, help="COCO-format GT annotation file")
    p.add_argument("--preds", required=True, help="RAW.json raw predictions")
    p.add_argument("--dataset", default="coco",
                   help="coco | ochuman | crowdpose (sigmas, CrowdPose uses keypoints_crowd); default coco")
    p.add_argument("--meta", default=None, help="dataset metadata JSON for another keypoint layout")
    p.add_argument("--no-postprocess", action="store_true", help="skip OKS-NMS (rescoring still applies)")
    p.add_argument("--json", default=None, help="write the metrics here (JSON)")
    p.add_argument("--outfile-prefix", default=None,
                   help="also write <prefix>.keypoints.json (COCO results after post-processing)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.data import resolve_meta
    from harness.data.coco import load_json
    from harness.eval.coco_eval import evaluate, format_metrics, load_coco_gt
    from harness.errors import MissingFileError
    from harness.eval.postprocess import RawPredictions
    from harness.io import atomic_write_json, check_output_file

    # Output paths first: a typo must not cost the evaluation.
    if args.json:
        check_output_file(args.json, "--json")
    if args.outfile_prefix:
        check_output_file(f"{args.outfile_prefix}.keypoints.json", "--outfile-prefix")
    if not Path(args.ann).is_file():
        raise MissingFileError(f"--ann: annotation file {args.ann} not found")
    meta = resolve_meta(args.dataset, args.meta, args.ann)
    gt = load_coco_gt(args.ann, meta)  # training's annotation validator, then xtcocotools' index
    preds = load_json(args.preds, "predictions file")
    raw = RawPredictions.from_list(preds, meta.num_keypoints, source=str(args.preds))
    t0 = time.perf_counter()
    metrics = evaluate(raw, args.ann, meta, postprocess=not args.no_postprocess,
                       outfile_prefix=args.outfile_prefix, coco_gt=gt)
    dt = time.perf_counter() - t0
    title = f"{Path(args.preds).name} on {Path(args.ann).name} ({meta.name}, " + (
        "no post-processing)" if args.no_postprocess else "rescoring + OKS-NMS 0.9)")
    print(format_metrics(metrics, title))
    print(f"\n{len(preds)} raw predictions evaluated in {dt:.2f} s")
    if args.json:
        atomic_write_json(args.json, metrics, indent=2)
        print(f"metrics written to {args.json}")
    return 0
