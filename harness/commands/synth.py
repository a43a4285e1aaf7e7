"""`python -m harness synth`: generate (or reuse) the procedural synthetic crowd dataset."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

DEFAULT_ROOT = "data/synthetic"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    # No harness.data import here: building the parser must stay cheap for every other command.
    # None means "the SynthConfig default", so the defaults live in one place.
    p = subparsers.add_parser(
        "synth",
        help="generate the synthetic crowd dataset (COCO format, no download needed)",
        description="Draw seeded, COCO-format person-keypoint data: stick figures with the 17 COCO "
        "keypoints over textured clutter, in splits train/val (moderate overlap) and occluded "
        "(OCHuman-like heavy overlap), plus a detection-results box file for val. The data is cached: "
        "a second run with the same settings reuses it.",
    )
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"output directory (default: {DEFAULT_ROOT})")
    p.add_argument("--train", type=int, default=None, help="number of train images (default: SynthConfig's)")
    p.add_argument("--val", type=int, default=None, help="number of val images (default: SynthConfig's)")
    p.add_argument("--occluded", type=int, default=None,
                   help="number of images in the heavily overlapping `occluded` split (default: SynthConfig's)")
    p.add_argument("--seed", type=int, default=None, help="random seed; same seed, same bytes (default: SynthConfig's)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="image size in pixels (default: SynthConfig's)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes; the output is identical for any count (default: 1)")
    p.add_argument("--force", action="store_true", help="regenerate even if the cached data matches")
    p.add_argument("--preview", metavar="PNG", default=None,
                   help="also write a grid of val images with their GT skeletons to this PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.data.synthetic import SynthConfig, generate, write_preview
    from harness.errors import UsageError
    from harness.io import check_output_dir, check_output_file

    d = SynthConfig()
    counts = {s: n if n is not None else d.num_images[s]
              for s, n in (("train", args.train), ("val", args.val), ("occluded", args.occluded))}
    try:
        cfg = SynthConfig(seed=d.seed if args.seed is None else args.seed,
                          image_size=tuple(args.size) if args.size else d.image_size,
                          num_images=counts)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.workers < 1:
        raise UsageError(f"--workers: must be >= 1, got {args.workers}")
    # The output folder before the work: a typo must not create a tree, an unwritable place fails now.
    check_output_dir(args.root, "--root", owned=args.root == DEFAULT_ROOT)
    if args.preview:
        check_output_file(args.preview, "--preview")
    res = generate(args.root, cfg, force=args.force, progress=not args.no_progress, workers=args.workers)
    if res["cached"]:
        print(f"{args.root}: up to date for this config (use --force to regenerate)")
    else:
        total = sum(c["images"] for c in res["counts"].values())
        print(f"{args.root}: {total} images in {res['seconds']:.1f} s "
              f"({res['images_per_second']:.0f} images/s with {args.workers} worker(s))")
    print(f"{'split':<9} {'images':>6} {'people':>7} {'visible':>8} {'occluded':>9} {'mean max-IoU':>13}")
    for split, c in res["counts"].items():
        print(f"{split:<9} {c['images']:>6} {c['people']:>7} {c['v2']:>8} {c['v1']:>9} {c['mean_max_iou']:>13.3f}")
    for split, path in res["annotations"].items():
        print(f"annotations[{split}]: {path}")
    if res["detections"]:
        print(f"val detections:  {res['detections']}")
    if args.preview:
        split = "val" if cfg.num_images["val"] else next(s for s, n in cfg.num_images.items() if n)
        print(f"preview: {write_preview(args.root, args.preview, split=split)}")
    return 0
