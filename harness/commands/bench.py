"""`python -m harness bench` (= `make bench`): the speed of the parts that matter, side by side, in one run.

1. Backbone train and inference steps (hrnet-w32, hrformer-s, hrnext-s at 256x192, batch 8, 2 threads):
   ours against the reference implementations (``harness.bench.compare_models``) when a refkit
   interpreter is given or found; always ours in channels_last against ours in the default layout.
2. The data pipeline (``harness.bench_data.bench_pipeline``): ours against mmpose's when an interpreter
   with mmpose is available, else ours alone (images/s).
3. Evaluation: rescoring + OKS-NMS of a synthetic COCO-val-sized prediction set, then COCOeval on it.

Writes ``results/bench/report.md`` and ``report.json`` (atomically): ratios, machine (CPU, threads, torch)
and date.  ``--quick`` (demo models, small batches, one round, a smaller evaluation set) takes a minute
or two and is what the tests run.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.io import atomic_write_text

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REFKIT_PYTHON = "/tmp/refkit-venv/bin/python"
REFKIT_DIR = REPO.parent / "shared" / "tools" / "refkit"
FULL_MODELS = ("hrnet-w32", "hrformer-s", "hrnext-s")
QUICK_MODELS = ("hrnet-demo", "hrformer-demo", "hrnext-demo")


@dataclass(frozen=True)
class BenchSettings:
    """What one bench run measures; validated on construction (errors name the field)."""

    models: tuple[str, ...] = FULL_MODELS
    modes: tuple[str, ...] = ("train", "infer")
    batch: int = 8
    threads: int = 2
    iters: int = 10
    warmup: int = 3
    rounds: int = 2
    data_repeats: int = 3
    eval_images: int = 5000
    eval_per_image: int = 20
    quick: bool = False

    def __post_init__(self):
        for f in ("batch", "threads", "iters", "rounds", "data_repeats", "eval_images", "eval_per_image"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"BenchSettings.{f}={v!r}: expected a positive integer")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"BenchSettings.warmup={self.warmup!r}: expected an integer >= 0")
        bad = [m for m in self.modes if m not in ("train", "infer")]
        if bad or not self.modes:
            raise ValueError(f"BenchSettings.modes={self.modes!r}: expected a subset of ('train', 'infer')")
        if not self.models:
            raise ValueError("BenchSettings.models: empty")

    @classmethod
    def quick_settings(cls) -> "BenchSettings":
        # Demo models at batch 2: every section runs, in about a minute on two busy cores.
        return cls(models=QUICK_MODELS, batch=2, iters=2, warmup=1, rounds=1, data_repeats=1, eval_images=500,
                   eval_per_image=20, quick=True)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="side-by-side speed of model steps, data pipeline and evaluation (results/bench/report.md)",
        description="Benchmark, in one run: backbone train/inference steps (ours vs the reference "
                    "implementations when a refkit interpreter is available, and channels_last vs default), "
                    "the data pipeline (ours vs mmpose when available) and evaluation (OKS-NMS + COCOeval on "
                    "a synthetic set). Writes a Markdown and a JSON report with ratios.")
    p.add_argument("--quick", action="store_true", help="demo models, few iterations (about 1-2 minutes)")
    p.add_argument("--refkit", default=None, metavar="PYTHON",
                   help="interpreter of the reference kit's venv (default: $REFKIT_PYTHON, else "
                        f"{DEFAULT_REFKIT_PYTHON} if present; none: ours only)")
    p.add_argument("--no-refkit", action="store_true", help="do not time the reference implementations")
    p.add_argument("--models", nargs="+", default=None, help=f"models to time (default: {' '.join(FULL_MODELS)})")
    p.add_argument("--batch", type=int, default=None, help="batch size of the model steps (default 8)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the model steps (default 2)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per measurement (default 10)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds per comparison (default 2)")
    p.add_argument("--data-root", default=None, help="COCO-format folder for the pipeline (default: shared coco-mini)")
    p.add_argument("--out", default=str(REPO / "results" / "bench"), help="report folder (default results/bench)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def find_refkit(explicit: str | None) -> str | None:
    """The refkit interpreter: ``explicit``, else $REFKIT_PYTHON, else the default path if it exists."""
    for cand in (explicit, os.environ.get("REFKIT_PYTHON"), DEFAULT_REFKIT_PYTHON):
        if cand:
            if Path(cand).is_file() and os.access(cand, os.X_OK):
                return cand
            if cand is explicit:
                raise FileNotFoundError(f"--refkit {cand}: not an executable file")
    return None


# ------------------------------------------------------------------------------------------------ sections
def bench_models(s: BenchSettings, ref_python: str | None, progress: bool = True) -> list[dict]:
    """Per (model, mode): ours default vs ours channels_last (alternating rounds), and the reference."""
    from tqdm import tqdm

    from harness import bench as hb

    rows = []
    if ref_python:
        ref_names = [m for m in s.models if m in hb.INPUT_HW]
        skipped = sorted(set(s.models) - set(ref_names))
        if skipped:
            log.info("no reference implementation for %s: ours only", skipped)
        if ref_names:
            for r in hb.compare_models(ref_names, s.modes, ref_python=ref_python, refkit_dir=REFKIT_DIR,
                                       rounds=s.rounds, batch=s.batch, threads=s.threads, iters=s.iters,
                                       progress=progress):
                rows.append({**r, "kind": "ours vs reference"})
    jobs = [(n, m) for n in s.models for m in s.modes]
    for name, mode in tqdm(jobs, desc="bench channels_last", disable=not progress):
        default, cl = [], []
        for _ in range(s.rounds):  # alternate, so that load on the machine hits both alike
            default.append(hb.time_ours(name, mode, s.batch, s.threads, s.iters, s.warmup).median_s)
            cl.append(hb.time_ours(name, mode, s.batch, s.threads, s.iters, s.warmup, channels_last=True).median_s)
        d, c = statistics.median(default), statistics.median(cl)
        rows.append({"kind": "channels_last vs default", "model": name, "mode": mode, "batch": s.batch,
                     "threads": s.threads, "ours_s": d, "channels_last_s": c, "speedup": d / c})
    return rows


def bench_data(s: BenchSettings, root: str | None, mmpose_python: str | None) -> dict:
    try:
        from harness import bench_data as bd
    except ImportError as e:  # the data helper's module is optional
        return {"error": f"harness.bench_data not available ({e})"}
    root = root or bd.DEFAULT_ROOT
    if not Path(root).is_dir():
        return {"error": f"data root {root}: not found"}
    try:
        res = bd.bench_pipeline(root, "train2017", s.data_repeats, mmpose_python)
    except RuntimeError as e:  # the mmpose worker failed: still report ours
        log.warning("mmpose pipeline timing failed (%s); timing ours alone", str(e).splitlines()[0])
        res = bd.bench_pipeline(root, "train2017", s.data_repeats, None)
        res["mmpose_error"] = str(e)[-500:]
    res["ours"]["images_per_s"] = 1e3 / res["ours"]["ms_per_sample"]
    return res


def _synthetic_gt(raw, selected):
    """An in-memory xtcocotools COCO: one GT person per kept prediction, jittered (timing only)."""
    import contextlib
    import io

    import numpy as np
    from xtcocotools.coco import COCO

    rng = np.random.default_rng(1)
    kps = raw.keypoints[selected] + rng.normal(0, 3, raw.keypoints[selected].shape)
    k = kps.shape[1]
    vis = np.full((len(selected), k, 1), 2.0)
    flat = np.concatenate([kps, vis], axis=2).reshape(len(selected), -1)
    lo, hi = kps.min(1), kps.max(1)
    images = [{"id": int(i), "width": 1000, "height": 1000} for i in np.unique(raw.image_ids)]
    anns = [{"id": j + 1, "image_id": int(raw.image_ids[i]), "category_id": 1, "iscrowd": 0,
             "keypoints": flat[j].tolist(), "num_keypoints": k, "area": float(raw.areas[i]),
             "bbox": [float(lo[j, 0]), float(lo[j, 1]), float(hi[j, 0] - lo[j, 0]), float(hi[j, 1] - lo[j, 1])]}
            for j, i in enumerate(selected.tolist())]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def bench_eval(s: BenchSettings) -> dict:
    """Rescoring + OKS-NMS (ours, vectorised) and COCOeval (xtcocotools) on a synthetic set."""
    from harness.data.metainfo import COCO_META
    from harness.eval.coco_eval import evaluate
    from harness.eval.postprocess import postprocess

    try:
        from harness.bench_data import synthetic_raw_predictions
    except ImportError as e:
        return {"error": f"harness.bench_data not available ({e})"}
    raw = synthetic_raw_predictions(s.eval_images, s.eval_per_image)
    t = time.perf_counter()
    sel, _ = postprocess(raw, COCO_META.sigmas_array)
    t_nms = time.perf_counter() - t
    gt = _synthetic_gt(raw, sel)
    t = time.perf_counter()
    metrics = evaluate(raw, "<synthetic>", COCO_META, coco_gt=gt)  # includes its own rescoring + NMS
    t_eval = time.perf_counter() - t
    return {"predictions": len(raw), "images": s.eval_images, "kept_after_nms": int(len(sel)),
            "seconds_rescore_oks_nms": t_nms, "seconds_evaluate_total": t_eval,
            "seconds_cocoeval": max(t_eval - t_nms, 0.0), "nms_share_of_evaluate": t_nms / t_eval,
            "predictions_per_s": len(raw) / t_eval, "AP_sanity": metrics["AP"]}


# ------------------------------------------------------------------------------------------------- report
def render_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# hrbench speed report{' (quick)' if report['settings']['quick'] else ''}", "",
             f"Date: {report['date']}  ", f"Machine: {m['cpu']} ({m['cpu_count']} logical CPUs), torch {m['torch']}, "
             f"Python {m['python']}; model steps on {report['settings']['threads']} threads.  ",
             f"Reference kit: {report['refkit'] or 'not available (ours only)'}", "",
             "Ratios > 1 mean ours (or channels_last) is faster. Medians of timed steps; ours and the "
             "other side run alternately.", "",
             "## 1. Backbone steps", "",
             "| model | mode | batch | threads | comparison | ours (s/step) | other (s/step) | ratio |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in report["models"]:
        other = r.get("reference_s", r.get("channels_last_s"))
        comp = r["kind"] if ("reference_s" in r or "channels_last_s" in r) else "ours only"
        other_s = "-" if other is None else f"{other:.3f}"
        ratio = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        lines.append(f"| {r['model']} | {r['mode']} | {r['batch']} | {r['threads']} | {comp} | {r['ours_s']:.3f} | "
                     f"{other_s} | {ratio} |")
    d = report["data"]
    lines += ["", "## 2. Data pipeline (one thread, 256x192 training transforms, per sample)", ""]
    if "error" in d:
        lines.append(f"not measured: {d['error']}")
    else:
        lines += ["| pipeline | full (ms) | without JPEG decode (ms) | images/s | ratio (mmpose / ours) |",
                  "|---|---:|---:|---:|---:|",
                  f"| hrbench | {d['ours']['ms_per_sample']:.2f} | {d['ours']['ms_per_sample_without_decode']:.2f} | "
                  f"{d['ours']['images_per_s']:.1f} | - |"]
        if d.get("mmpose"):
            mm = d["mmpose"]
            lines.append(f"| mmpose | {mm['ms_per_sample']:.2f} | {mm['ms_per_sample_without_decode']:.2f} | "
                         f"{1e3 / mm['ms_per_sample']:.1f} | {d['speedup']:.2f}x "
                         f"({d['speedup_without_decode']:.2f}x without decode) |")
        else:
            lines.append("| mmpose | not available | | | - |")
        lines.append(f"\n{d['ours']['samples']} samples from the shared coco-mini train split.")
    e = report["eval"]
    lines += ["", "## 3. Evaluation (synthetic set)", ""]
    if "error" in e:
        lines.append(f"not measured: {e['error']}")
    else:
        lines += ["| step | seconds | ratio to the whole evaluation |", "|---|---:|---:|",
                  f"| rescoring + OKS-NMS (ours, vectorised) | {e['seconds_rescore_oks_nms']:.2f} | "
                  f"{e['nms_share_of_evaluate']:.2f} |",
                  f"| COCOeval (xtcocotools) | {e['seconds_cocoeval']:.2f} | "
                  f"{e['seconds_cocoeval'] / e['seconds_evaluate_total']:.2f} |",
                  f"| whole `harness.eval.evaluate` | {e['seconds_evaluate_total']:.2f} | 1.00 |",
                  "", f"{e['predictions']} raw predictions over {e['images']} images, {e['kept_after_nms']} kept "
                  f"after OKS-NMS ({e['predictions_per_s']:.0f} predictions/s end to end)."]
    return "\n".join(lines) + "\n"


def run_bench(s: BenchSettings, *, ref_python: str | None = None, data_root: str | None = None,
              out_dir: str | Path = REPO / "results" / "bench", progress: bool = True) -> dict:
    """Run the three sections and write ``report.md`` / ``report.json`` into ``out_dir``; returns the report."""
    import torch

    from harness.profile import machine_info

    t0 = time.perf_counter()
    torch.set_num_threads(s.threads)
    log.info("bench 1/3: model steps (%s; reference: %s)", ", ".join(s.models), ref_python or "none")
    models = bench_models(s, ref_python, progress)
    log.info("bench 2/3: data pipeline")
    mmpose_python = ref_python if (ref_python and not s.quick) else None  # the refkit venv has mmpose
    data = bench_data(s, data_root, mmpose_python)
    torch.set_num_threads(s.threads)  # the data bench pins one thread
    log.info("bench 3/3: evaluation (%d images x %d predictions)", s.eval_images, s.eval_per_image)
    ev = bench_eval(s)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_info("cpu", s.threads), "settings": vars(s) | {"models": list(s.models),
                                                                               "modes": list(s.modes)},
              "refkit": ref_python, "models": models, "data": data, "eval": ev,
              "seconds_total": time.perf_counter() - t0}
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, default=float) + "\n")
    atomic_write_text(out_dir / "report.md", render_markdown(report))
    return report


def run(args) -> int:
    s = BenchSettings.quick_settings() if args.quick else BenchSettings()
    overrides = {k: v for k, v in (("batch", args.batch), ("threads", args.threads), ("iters", args.iters),
                                   ("rounds", args.rounds)) if v is not None}
    if args.models:
        overrides["models"] = tuple(args.models)
    try:
        if overrides:
            from dataclasses import replace

            s = replace(s, **overrides)
        import backbones

        for m in s.models:
            backbones.get_entry(m)
        ref = None if (args.no_refkit or args.quick) else find_refkit(args.refkit)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    report = run_bench(s, ref_python=ref, data_root=args.data_root, out_dir=args.out, progress=not args.no_progress)
    out = Path(args.out)
    print(render_markdown(report))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'} in {report['seconds_total']:.0f} s")
    return 0
