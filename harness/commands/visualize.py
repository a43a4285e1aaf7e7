"""`python -m harness visualize`: the qualitative figure, models side by side on crowded images."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ROOTS = {"synthetic": "data/synthetic", "ochuman": "data/ochuman", "coco": "data/coco"}
DEFAULT_SPLITS = {"synthetic": "occluded", "ochuman": "val", "coco": "val"}
DEFAULT_OUT = "results/figures/qualitative.png"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "visualize", help="qualitative figure: predicted skeletons of several models side by side",
        description="Draw each model's predicted skeletons (keypoints coloured by confidence, limbs by body "
        "side) over the same images, one column per model, one row per image; the images are the most "
        "crowded of the split unless --image-id picks them. Predictions come from --preds MODEL=RAW.json "
        "(the evaluate-predictions format) or --checkpoint MODEL=PATH (run on the images' GT boxes). With "
        "neither, the three demo models are used: their checkpoints from work_dirs/demo when `make demo` "
        "has run, else untrained (with a warning), on the synthetic `occluded` split.")
    p.add_argument("--data", choices=sorted(DEFAULT_ROOTS), default="synthetic", help="dataset (default synthetic)")
    p.add_argument("--root", default=None, help="dataset folder (default data/<dataset>)")
    p.add_argument("--split", default=None, help="split (default: occluded for synthetic, val otherwise)")
    p.add_argument("--images", type=int, default=4, help="number of images (rows), most crowded first (default 4)")
    p.add_argument("--image-id", type=int, action="append", default=None, help="use this image (repeatable)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                   help="a model (registry name, e.g. hrnet-w32) and its weights; repeatable, one column each")
    p.add_argument("--preds", action="append", default=[], metavar="MODEL=RAW.json",
                   help="saved raw predictions of a model; repeatable, one column each")
    p.add_argument("--input-size", default=None, metavar="HxW",
                   help="network input for --checkpoint (default: the checkpoint's config.json, else 256x192)")
    p.add_argument("--kpt-thr", type=float, default=0.3, help="hide keypoints below this confidence (default 0.3)")
    p.add_argument("--cell-height", type=int, default=320, help="height of one image cell in pixels (default 320)")
    p.add_argument("--demo-work-dir", default="work_dirs/demo", help="where `make demo` keeps its checkpoints")
    p.add_argument("--no-flip", action="store_true", help="no flip test for --checkpoint models")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output PNG (default {DEFAULT_OUT})")
    p.set_defaults(func=run)


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    from harness.visualize import VisualizeError

    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise VisualizeError(f"{flag}: expected MODEL=PATH, got {item!r}")
        out.append((name.strip(), path.strip()))
    return out


def _input_size_for(checkpoint: str | None, override: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if override:
        from harness.validate import parse_hw

        return parse_hw(override, "--input-size", multiple_of=4)
    if checkpoint:
        cfg = Path(checkpoint).parent / "config.json"
        if cfg.is_file():
            from harness.config import load_config

            try:
                return tuple(load_config(cfg).data.input_size)
            except Exception as e:  # a foreign config.json: fall back to the default size
                log.debug("%s: not a harness config (%s)", cfg, e)
    return default


def run(args: argparse.Namespace) -> int:
    from harness.data import build_dataset
    from harness.io import check_output_dir, check_output_file
    from harness.results import display_name
    from harness.workdir import DEMO_MARKER, LAST
    from harness.visualize import VisualizeError, load_raw_predictions, make_comparison, predict_images, select_images

    if args.images < 1:
        raise VisualizeError(f"--images: must be >= 1, got {args.images}")
    root = args.root or DEFAULT_ROOTS[args.data]
    split = args.split or DEFAULT_SPLITS[args.data]
    ckpts = _pairs(args.checkpoint, "--checkpoint")
    preds_files = _pairs(args.preds, "--preds")
    if args.out == DEFAULT_OUT:  # the command's own folder
        check_output_dir(Path(args.out).parent, "--out", owned=True)
    check_output_file(args.out, "--out")  # before the work
    columns: list[tuple[str, str | None, str | None]] = []  # (model, checkpoint, preds file)
    partial: set[str] = set()  # demo models whose training has not finished
    default_hw = (256, 192)
    if not ckpts and not preds_files:
        from harness.experiments.demo import FAMILIES, DemoConfig

        demo = DemoConfig()
        default_hw = demo.input_size
        if args.data == "synthetic" and args.root is None:
            # The demo's data, so a fresh clone gets the same images `make demo` trains on.
            from harness.data.synthetic import ensure_synthetic

            ensure_synthetic(root, demo.synth_config())
        for fam in FAMILIES:
            ck = Path(args.demo_work_dir) / fam / LAST
            if ck.is_file():
                if not (ck.parent / DEMO_MARKER).is_file():
                    log.warning("%s: the demo run of %s has not finished; drawing its latest checkpoint", ck, fam)
                    partial.add(f"{fam}-demo")
                columns.append((f"{fam}-demo", str(ck), None))
            else:
                log.warning("%s not found: drawing the UNTRAINED %s-demo model (run `make demo` first for "
                            "trained ones)", ck, fam)
                columns.append((f"{fam}-demo", None, None))
    columns += [(m, c, None) for m, c in ckpts] + [(m, None, p) for m, p in preds_files]

    ds = build_dataset(args.data, root, split, input_size=_input_size_for(None, None, default_hw), train=False)
    ids = select_images(ds.coco, args.images, args.image_id)
    images = [(i, ds.coco.image_path(i)) for i in ids]
    predictions: dict[str, list] = {}
    titles: dict[str, str] = {}
    for model, ckpt, pfile in columns:
        key = model if model not in predictions else f"{model} ({len(predictions)})"
        if pfile is not None:
            preds = load_raw_predictions(pfile, ds.num_keypoints)
            have = {int(p["image_id"]) for p in preds}
            if not have & set(ids):
                raise VisualizeError(f"predictions file {pfile} ({model}): none of its {len(have)} image ids is "
                                     f"among the chosen images {ids}; pick them with --image-id")
            titles[key] = f"{display_name(model)} (saved)"
        else:
            hw = _input_size_for(ckpt, args.input_size, default_hw)
            mds = ds if tuple(hw) == tuple(ds.input_size) else build_dataset(args.data, root, split, input_size=hw,
                                                                               train=False)
            log.info("%s: predicting %d image(s) at %dx%d%s", model, len(ids), hw[0], hw[1],
                     "" if ckpt else " (untrained)")
            preds = predict_images(model, ckpt, mds, ids, flip_test=not args.no_flip)
            titles[key] = display_name(model) + (" (untrained)" if not ckpt else " (partial)" if model in partial else "")
        predictions[key] = preds
    info = make_comparison(images, predictions, args.out, ds.meta, cell_height=args.cell_height,
                           kpt_thr=args.kpt_thr, titles=titles)
    print(f"wrote {info.path}: {len(info.models)} model(s) x {len(info.image_ids)} image(s) "
          f"({info.size_hw[1]}x{info.size_hw[0]} px); images {info.image_ids}")
    return 0
