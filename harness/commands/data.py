"""`python -m harness data check DATASET --root DIR`: validate a dataset layout."""
from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)

DEFAULT_SPLITS = {"coco": ["train", "val"], "ochuman": ["val", "test"], "crowdpose": ["trainval", "test"]}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="dataset utilities (check a dataset layout)",
                              description="Dataset utilities.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = sub.add_parser(
        "check",
        help="validate a dataset layout; print exactly what is missing and where to get it",
        description="Validate a COCO-format keypoint dataset: annotation files present and well-formed "
        "(keypoint counts, boxes, ids), every image present (and decodable with --decode), detection "
        "file readable. Exit status 0 when everything is in place, 1 otherwise.",
    )
    c.add_argument("dataset", help="coco | ochuman | crowdpose | any name for a COCO-format folder")
    c.add_argument("--root", required=True, help="dataset folder")
    c.add_argument("--split", action="append", default=None,
                   help="split to check (repeatable); default: coco train+val, ochuman val+test, "
                   "crowdpose trainval+test, others every annotations/person_keypoints_<split>.json")
    c.add_argument("--ann-file", default=None, help="annotation file (overrides the layout)")
    c.add_argument("--img-dir", default=None, help="image folder (overrides the layout)")
    c.add_argument("--det-file", default=None,
                   help="person detection file to check ('auto' = the layout's standard file)")
    c.add_argument("--meta", default=None, help="dataset metadata JSON for non-built-in keypoint layouts")
    c.add_argument("--decode", action="store_true", help="fully decode every image (slow) to catch corrupt files")
    c.add_argument("--json", default=None, help="also write the report as JSON here")
    c.set_defaults(func=run_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _generic_splits(root: str) -> list[str]:
    """Splits of a COCO-format folder: every annotations/person_keypoints_<split>.json (else train, val)."""
    from pathlib import Path

    found = sorted(p.stem[len("person_keypoints_"):] for p in (Path(root) / "annotations").glob("person_keypoints_*.json"))
    return found or ["train", "val"]


def run_check(args: argparse.Namespace) -> int:
    from harness.data import resolve_meta
    from harness.data.layout import check_layout, resolve_layout
    from harness.io import atomic_write_json

    from harness.io import check_output_file

    if args.json:
        check_output_file(args.json, "--json")  # before the work
    splits = args.split or DEFAULT_SPLITS.get(args.dataset) or _generic_splits(args.root)
    reports = []
    ok = True
    for split in splits:
        try:
            ann = resolve_layout(args.dataset, args.root, split, ann_file=args.ann_file).ann_file
            meta = resolve_meta(args.dataset, args.meta, ann if ann.is_file() else None)
        except (ValueError, FileNotFoundError) as e:
            print(f"[{args.dataset}/{split}] cannot determine the keypoint layout: {e}", file=sys.stderr)
            ok = False
            continue
        rep = check_layout(args.dataset, args.root, split, meta, ann_file=args.ann_file,
                           img_dir=args.img_dir, det_file=args.det_file, decode=args.decode,
                           progress=sys.stderr.isatty())
        reports.append(rep)
        lay = rep.layout
        status = "OK" if rep.ok else "PROBLEMS"
        print(f"[{args.dataset}/{split}] {status}")
        print(f"  annotations: {lay.ann_file}")
        print(f"  images:      {lay.img_dir}")
        if lay.det_file:
            print(f"  detections:  {lay.det_file}")
        if rep.num_images:
            line = (f"  {rep.num_images} images, {rep.num_annotations} annotations, "
                    f"{rep.num_instances} usable person instances")
            if rep.num_detections is not None:
                line += f", {rep.num_detections} person detections"
            print(line)
        if rep.skipped:
            print("  skipped (by policy): " + ", ".join(f"{n} {r}" for r, n in sorted(rep.skipped.items())))
        for prob in rep.problems:
            print(f"  - {prob}")
        if rep.where_to_get:
            print(f"  where to get it: {rep.where_to_get}")
        ok = ok and rep.ok
    if args.json:
        atomic_write_json(args.json, [r.to_dict() for r in reports], indent=2)
    return 0 if ok else 1
