"""`python -m harness evaluate-predictions`: COCO keypoint metrics of raw top-down predictions."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from harness.eval.options import NMS_MODES, SCORE_MODES  # light (no numpy/torch): fine at CLI start-up

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-predictions",
        help="evaluate raw top-down predictions made elsewhere (scoring + OKS-NMS + COCO eval)",
        description="Evaluate RAW.json, a list of raw top-down predictions {image_id, category_id, "
        "bbox [x,y,w,h], bbox_score, area, keypoints [[x,y],...], keypoint_scores [...]} "
        "('area' = product of the padded, aspect-fixed crop scale): score each instance, NMS per image, "
        "evaluate with xtcocotools, print a table and write the metrics as JSON. The options are mmpose "
        "1.3.2 CocoMetric's (same names, meanings and defaults) and the numbers equal CocoMetric's with "
        "the same options on the same predictions.",
    )
    p.add_argument("--ann", required=True, help="COCO-format GT annotation file")
    p.add_argument("--preds", required=True, help="RAW.json raw predictions")
    p.add_argument("--dataset", default="coco",
                   help="coco | ochuman | crowdpose (sigmas; CrowdPose evaluates with keypoints_crowd, no areas)")
    p.add_argument("--meta", default=None, help="dataset metadata JSON for another keypoint layout")
    add_eval_options(p)
    p.add_argument("--json", default=None, help="write the metrics here (JSON)")
    p.add_argument("--outfile-prefix", default=None,
                   help="also write <prefix>.keypoints.json (COCO results after scoring and NMS)")
    p.add_argument("--breakdown", choices=["occlusion"], default=None,
                   help="also AP/AR per occlusion level (printed, and under 'breakdown' in --json)")
    p.set_defaults(func=run)


def add_eval_options(p: argparse.ArgumentParser) -> None:
    """mmpose CocoMetric's scoring and NMS options (same names, meanings, defaults), shared by the commands
    that score raw predictions (``evaluate-predictions``, ``compare``)."""
    p.add_argument("--score-mode", choices=SCORE_MODES, default="bbox_keypoint",
                   help="instance score the results are ranked by: bbox_keypoint = box score x mean of the "
                   "keypoint scores above --keypoint-score-thr (0 if none is); bbox = box score; keypoint = "
                   "mean of all keypoint scores (default bbox_keypoint)")
    p.add_argument("--keypoint-score-thr", type=float, default=0.2,
                   help="keypoint scores above this count in the bbox_keypoint score (other modes ignore it; "
                   "default 0.2)")
    p.add_argument("--nms-mode", choices=NMS_MODES, default="oks_nms",
                   help="per image: oks_nms = greedy, drop an instance whose OKS with a kept one is > --nms-thr; "
                   "soft_oks_nms = keep at most 20 instances, picked greedily while each pick decays the "
                   "others' ranking score by exp(-OKS^2/--nms-thr) (reported scores unchanged); none = keep all "
                   "(default oks_nms)")
    p.add_argument("--nms-thr", type=float, default=0.9,
                   help="OKS threshold of oks_nms, decay width of soft_oks_nms (default 0.9)")
    p.add_argument("--no-postprocess", action="store_true",
                   help="alias of --nms-mode none (the instance scores still follow --score-mode; add "
                   "--score-mode bbox for the box scores as they are)")


def eval_options(args: argparse.Namespace) -> dict:
    """The options of :func:`add_eval_options` as ``harness.eval.evaluate`` keywords (checked there);
    ``--no-postprocess`` is ``--nms-mode none`` and contradicts any other ``--nms-mode``."""
    if args.no_postprocess and args.nms_mode != "oks_nms":
        raise ValueError(f"--no-postprocess means --nms-mode none; it contradicts --nms-mode {args.nms_mode}")
    return dict(score_mode=args.score_mode, keypoint_score_thr=args.keypoint_score_thr,
                nms_mode="none" if args.no_postprocess else args.nms_mode, nms_thr=args.nms_thr)


def run(args: argparse.Namespace) -> int:
    from harness.data import resolve_meta
    from harness.data.coco import load_json
    from harness.errors import MissingFileError, UsageError
    from harness.eval.coco_eval import evaluate, format_metrics, load_coco_gt
    from harness.eval.details import EvalDetails
    from harness.eval.options import check_options
    from harness.eval.postprocess import RawPredictions
    from harness.io import atomic_write_json, check_output_file

    try:
        opts = eval_options(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_options(**opts)
    nms_mode = opts["nms_mode"]
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
    details = EvalDetails(meta.name, breakdown_kind=args.breakdown, keep_results=False)
    t0 = time.perf_counter()
    metrics = evaluate(raw, args.ann, meta, outfile_prefix=args.outfile_prefix, coco_gt=gt, on_eval=details, **opts)
    dt = time.perf_counter() - t0
    score = args.score_mode + (f" {args.keypoint_score_thr:g}" if args.score_mode == "bbox_keypoint" else "")
    nms = nms_mode + (f" {args.nms_thr:g}" if nms_mode != "none" else "")
    title = f"{Path(args.preds).name} on {Path(args.ann).name} ({meta.name}; score {score}; NMS {nms})"
    print(format_metrics(metrics, title))
    if details.breakdown is not None:
        from harness.report.breakdown import format_breakdown

        print("\n" + format_breakdown(details.breakdown))
    print(f"\n{len(preds)} raw predictions evaluated in {dt:.2f} s")
    if args.json:
        atomic_write_json(args.json, metrics if details.breakdown is None else
                          {**metrics, "breakdown": details.breakdown}, indent=2)
        print(f"metrics written to {args.json}")
    return 0
