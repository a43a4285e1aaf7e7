"""`python -m harness bench` (= `make bench`): the speed of the parts that matter, side by side, in one run.

1. Ours against the reference implementations (``harness.profile.sidebyside.compare``): backbone train
   and inference steps of hrnet-w32, hrformer-s and hrnext-s (``--models``) at their paper input sizes,
   batch 8, 2 threads, under the reference kit's protocol; each side a fresh process, alternating for
   at least 3 rounds; the median ratio with its min-max spread.  The reference kit is reused when its
   interpreter runs the project's torch, else rebuilt with ``--torch-spec`` (make passes ``TORCH_SPEC``);
   a ratio across torch versions is refused unless ``--allow-mismatch`` (then labelled).
2. Ours in channels_last against ours in the default layout, the same way (HRNeXt only: HRNet and HRFormer
   always run channels-last).
3. The data pipeline (``harness.profile.databench.bench_pipeline``): ours against mmpose's (the
   reference kit's interpreter has mmpose), per sample on one thread.
4. Evaluation: parsing, rescoring + OKS-NMS and COCOeval of a synthetic COCO-val-sized set, and the
   paired bootstrap (``harness.profile.databench.bench_bootstrap``): 1,000 resamples of two models.

Writes ``results/bench/report.md`` and ``report.json`` (atomically): ratios, spreads, both sides' torch,
machine and date.  ``--quick`` (demo models, no reference, one round, a smaller evaluation set) is what
the tests run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.io import atomic_write_text

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
FULL_MODELS = ("hrnet-w32", "hrformer-s", "hrnext-s")
QUICK_MODELS = ("hrnet-demo", "hrformer-demo", "hrnext-demo")
MODES = ("train", "infer")


@dataclass(frozen=True)
class BenchSettings:
    """What one bench run measures; validated on construction (errors name the field)."""

    models: tuple[str, ...] = FULL_MODELS
    modes: tuple[str, ...] = MODES
    batch: int = 8
    threads: int = 2
    iters: int = 10
    warmup: int = 3
    rounds: int = 3
    data_repeats: int = 3
    eval_images: int = 5000
    eval_per_image: int = 20
    bootstrap_resamples: int = 1000
    layouts: bool = True  # section 2 (channels_last vs the default layout)
    quick: bool = False

    def __post_init__(self):
        for f in ("batch", "threads", "iters", "rounds", "data_repeats", "eval_images", "eval_per_image",
                  "bootstrap_resamples"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"BenchSettings.{f}={v!r}: expected a positive integer")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"BenchSettings.warmup={self.warmup!r}: expected an integer >= 0")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"BenchSettings.modes={self.modes!r}: expected a subset of {MODES}")
        if not self.models:
            raise ValueError("BenchSettings.models: empty")

    @classmethod
    def quick_settings(cls) -> "BenchSettings":
        # Demo models at batch 2, one round: every section runs, in a minute or two on two busy cores.
        return cls(models=QUICK_MODELS, batch=2, iters=2, warmup=1, rounds=1, data_repeats=1, eval_images=500,
                   eval_per_image=20, bootstrap_resamples=100, quick=True)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="side-by-side speed of model steps, data pipeline and evaluation (results/bench/report.md)",
        description="Benchmark, in one run: backbone train/inference steps against the reference "
                    "implementations (the reference kit, same torch, alternating processes, >= 3 rounds, median "
                    "ratio with min-max spread), channels_last against the default layout, the data pipeline "
                    "against mmpose's, and evaluation (OKS-NMS + COCOeval on a synthetic set). Writes a Markdown "
                    "and a JSON report.")
    p.add_argument("--quick", action="store_true", help="demo models, one round, no reference (a minute or two)")
    p.add_argument("--refkit", default=None, metavar="PYTHON",
                   help="interpreter of the reference kit's venv (default: $REFKIT_PYTHON, else /tmp/refkit-venv)")
    p.add_argument("--refkit-dir", default=None, metavar="DIR",
                   help="the reference kit's folder with time_ref.py and setup.sh (default: $REFKIT_DIR, else "
                        "the development checkout's ../shared/tools/refkit)")
    p.add_argument("--torch-spec", default=None, metavar="SPEC",
                   help="pip spec of the project's torch (make passes TORCH_SPEC): (re)build the reference kit with "
                        "it when the kit is missing or runs another torch")
    p.add_argument("--hrnext-mirror", default=os.environ.get("HRNEXT_MIRROR"), metavar="GITDIR",
                   help="git directory of a mirror of github ZiyiZhang27/HRNeXt, for the HRNeXt reference "
                        "(default: $HRNEXT_MIRROR)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="report ratios whose two sides ran different torch versions (labelled) instead of refusing")
    p.add_argument("--no-refkit", action="store_true", help="do not time the reference implementations")
    p.add_argument("--models", nargs="+", default=None, help=f"models to time (default: {' '.join(FULL_MODELS)})")
    p.add_argument("--modes", nargs="+", default=None, choices=MODES, help="train and/or infer (default both)")
    p.add_argument("--batch", type=int, default=None, help="batch size of the model steps (default 8)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the model steps (default 2)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per measurement (default 10)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds per comparison (default 3, >= 3 "
                                                            "against the reference)")
    p.add_argument("--data-root", default=None,
                   help="COCO-format folder with train2017 for the pipeline (default: the development "
                        "checkout's ../shared/data/coco-mini when present)")
    p.add_argument("--out", default=str(REPO / "results" / "bench"), help="report folder (default results/bench)")
    p.add_argument("--no-layouts", action="store_true", help="skip section 2 (channels_last vs default layout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ sections
def bench_data(s: BenchSettings, root: str | None, mmpose_python: str | None) -> dict:
    from harness.profile import databench

    root = root or (str(databench.DEV_ROOT) if databench.DEV_ROOT.is_dir() else None)
    if root is None:
        return {"error": "no COCO-format data: pass --data-root DIR (a folder with "
                         "annotations/person_keypoints_train2017.json and train2017/)"}
    if not Path(root).is_dir():
        return {"error": f"data root {root}: not found"}
    res = _pipeline(s, root, mmpose_python, "full")
    res["ours"]["images_per_s"] = 1e3 / res["ours"]["ms_per_sample"]
    res["root"] = str(root)
    res["restart_marked"] = bench_data_restart_marked(s, Path(root), mmpose_python if "mmpose_error" not in res
                                                      else None)
    return res


def _pipeline(s: BenchSettings, root: str | Path, mmpose_python: str | None, decode: str) -> dict:
    """``databench.bench_pipeline`` on ``root``; when the mmpose worker fails, ours alone (``mmpose_error`` set)."""
    from harness.profile import databench

    try:
        return databench.bench_pipeline(root, "train2017", s.data_repeats, mmpose_python, decode=decode)
    except RuntimeError as e:  # the mmpose worker failed: still report ours
        log.warning("mmpose pipeline timing failed (%s); timing ours alone", str(e).splitlines()[0])
        res = databench.bench_pipeline(root, "train2017", s.data_repeats, None, decode=decode)
        res["mmpose_error"] = str(e)[-500:]
        return res


def bench_data_restart_marked(s: BenchSettings, root: Path, mmpose_python: str | None) -> dict:
    """The pipeline on a restart-marked copy of ``root``'s train2017 (``harness.data.restarts``): ours
    with ``decode="full"``, ``"roi"`` and ``"scaled"`` against mmpose decoding the same files whole."""
    import shutil
    import tempfile

    from harness.data.restarts import add_restarts

    if shutil.which("jpegtran") is None:
        return {"error": "jpegtran not found (libjpeg-turbo-progs): no restart-marked copy"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hrbench-restarts-") as tmp:
        copy = Path(tmp)
        (copy / "annotations").symlink_to((root / "annotations").resolve(), target_is_directory=True)
        add_restarts(root / "train2017", copy / "train2017", progress=False)
        for decode in ("full", "roi", "scaled"):
            r = _pipeline(s, copy, mmpose_python, decode)
            rows.append({"decode": decode, "ours_ms": r["ours"]["ms_per_sample"],
                         "mmpose_ms": (r.get("mmpose") or {}).get("ms_per_sample"), "speedup": r.get("speedup"),
                         "samples": r["ours"]["samples"]})
    return {"rows": rows}


# ------------------------------------------------------------------------------------------------- report
def _ratio_cell(r: dict) -> str:
    if r.get("rounds", 1) > 1:
        return f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
    return f"{r['ratio']:.2f}x"


def _malloc_cell(setting: dict | None) -> str:
    if not setting:  # machine_info's malloc.current(): the allocator variables in the environment
        return "glibc defaults"
    return ", ".join(f"{k}={v}" for k, v in setting.items()) + " (harness.malloc)"


def render_markdown(report: dict) -> str:
    m = report["machine"]
    st = report["settings"]
    kit = report.get("refkit") or {}
    lines = [f"# hrbench speed report{' (quick)' if st['quick'] else ''}", "",
             f"Date: {report['date']}  ", f"Machine: {m['cpu']} ({m['cpu_count']} logical CPUs), torch {m['torch']}, "
             f"Python {m['python']}; model steps on {st['threads']} threads, batch {st['batch']}.  ",
             f"Reference kit: {kit.get('python') or 'not used'}"
             + (f" (torch {kit['torch']})" if kit.get("torch") else "")
             + (f"; {kit['note']}" if kit.get("note") else "") + "  ",
             f"Allocator (both sides' processes): {_malloc_cell(m.get('malloc'))}", "",
             "Ratio > 1: ours is faster than the reference (reference / ours), or channels_last faster than "
             "the default layout (default / channels_last). The median over alternating rounds, each side a "
             "fresh process, with the min-max spread over rounds in brackets.", "",
             "## 1. Backbone steps", "",
             "| model | mode | comparison | rounds | ours (s/step) | other (s/step) | ratio (spread) | torch (ours / other) |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in report["models"]:
        other = r.get("reference_s", r.get("channels_last_s"))
        kind = r["kind"] + (" **TORCH MISMATCH: not comparable**" if r.get("torch_mismatch") else "")
        lines.append(f"| {r['model']} | {r['mode']} | {kind} | {r['rounds']} | {r['ours_s']:.3f} | {other:.3f} | "
                     f"{_ratio_cell(r)} | {r['ours_torch']} / {r['reference_torch']} |")
    for name, why in report.get("not_compared", {}).items():
        lines.append(f"\n{name}: not compared with a reference ({why})")
    if report.get("always_channels_last"):
        lines.append(f"\n{', '.join(report['always_channels_last'])}: no channels_last vs default row (the family "
                     f"always runs channels-last: `channels_last` of its backbone class)")
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
        lines.append(f"\n{d['ours']['samples']} samples from {d.get('root', 'the data root')}.")
        rm = d.get("restart_marked")
        if rm and "error" in rm:
            lines.append(f"\nRestart-marked copy: not measured ({rm['error']}).")
        elif rm:
            lines += ["", "The same images re-packed losslessly with restart markers (`python -m harness.data.restarts`, "
                      "what `data.decode=roi` needs); mmpose decodes them whole, as its pipeline does:", "",
                      "| our `data.decode` | hrbench (ms) | mmpose (ms) | ratio (mmpose / ours) |", "|---|---:|---:|---:|"]
            for r in rm["rows"]:
                mm = f"{r['mmpose_ms']:.2f}" if r["mmpose_ms"] is not None else "not available"
                ratio = f"{r['speedup']:.2f}x" if r["speedup"] is not None else "-"
                lines.append(f"| {r['decode']} | {r['ours_ms']:.2f} | {mm} | {ratio} |")
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
                  f"after OKS-NMS ({e['predictions_per_s']:.0f} predictions/s end to end); parsing the RAW list "
                  f"{e['seconds_parse_raw_list']:.2f} s, the COCO results list {e['seconds_to_coco_results']:.2f} s."]
        b = e.get("bootstrap")
        if b:
            lines += ["", f"Paired bootstrap: {b['images']} images, {b['people']} people, 2 models x "
                      f"{b['predictions_per_model']} raw predictions: COCOeval once per model "
                      + ", ".join(f"{v:.1f} s" for v in b["seconds_cocoeval_per_model"].values())
                      + f", then {b['resamples']} paired resamples in {b['seconds_resamples']:.1f} s."]
    return "\n".join(lines) + "\n"


def run_bench(s: BenchSettings, *, kit=None, allow_mismatch: bool = False, data_root: str | None = None,
              out_dir: str | Path = REPO / "results" / "bench", progress: bool = True, runner=None,
              kit_note: str | None = None) -> dict:
    """Run the sections and write ``report.md`` / ``report.json`` into ``out_dir``; returns the report.
    ``kit``: a ``sidebyside.RefKit`` (None: ours only); ``runner`` replaces ``sidebyside.run_side`` (tests).
    Raises ``sidebyside.TorchMismatchError`` (nothing written) on a torch mismatch unless ``allow_mismatch``."""
    import torch

    from harness.profile import databench, machine_info, sidebyside

    runner = runner or sidebyside.run_side
    t0 = time.perf_counter()
    torch.set_num_threads(s.threads)
    steps = dict(batch=s.batch, threads=s.threads, iters=s.iters, warmup=s.warmup, runner=runner, progress=progress)
    models, not_compared = [], {}
    if kit is not None:
        names = []
        for name in s.models:
            why = kit.available(name)
            if why:
                not_compared[name] = why
            else:
                names.append(name)
        log.info("bench 1/4: ours vs reference (%s)", ", ".join(names) or "none")
        models += sidebyside.compare(names, s.modes, kit, rounds=max(s.rounds, sidebyside.MIN_ROUNDS),
                                     allow_mismatch=allow_mismatch, **steps)
    always_cl = []  # models whose family always runs channels-last: nothing to compare in section 2
    if s.layouts:
        always_cl = [n for n in s.models if sidebyside.always_channels_last(n)]
        timed = [n for n in s.models if n not in always_cl]
        log.info("bench 2/4: channels_last vs default (%s)", ", ".join(timed) or "none")
        models += sidebyside.compare_layouts(timed, s.modes, rounds=s.rounds, **steps)
    log.info("bench 3/4: data pipeline")
    mmpose_python = str(kit.python) if (kit is not None and not s.quick) else None  # the kit's venv has mmpose
    data = bench_data(s, data_root, mmpose_python)
    torch.set_num_threads(s.threads)  # the data bench pins one thread
    log.info("bench 4/4: evaluation (%d images x %d predictions)", s.eval_images, s.eval_per_image)
    ev = databench.bench_eval(s.eval_images, s.eval_per_image)
    log.info("bench 4/4: paired bootstrap (%d images, %d resamples)", s.eval_images, s.bootstrap_resamples)
    ev["bootstrap"] = databench.bench_bootstrap(s.eval_images, s.eval_per_image, s.bootstrap_resamples)
    ref_torch = sorted({r["reference_torch"] for r in models if r["kind"] == "ours vs reference"})
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_info("cpu", s.threads),
              "settings": dataclasses.asdict(s) | {"models": list(s.models), "modes": list(s.modes)},
              "refkit": None if kit is None else {"python": str(kit.python), "kit_dir": str(kit.kit_dir),
                                                  "torch": ", ".join(ref_torch) or None, "note": kit_note},
              "models": models, "not_compared": not_compared, "always_channels_last": always_cl, "data": data,
              "eval": ev,
              "seconds_total": time.perf_counter() - t0}
    if kit is None and kit_note:
        report["refkit"] = {"python": None, "note": kit_note}
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, default=float) + "\n")
    atomic_write_text(out_dir / "report.md", render_markdown(report))
    return report


def _find_kit(args, torch_version: str):
    """(kit or None, note): the reference kit made ready for this torch, or why there is none."""
    from harness.profile import sidebyside

    try:
        kit = sidebyside.RefKit.discover(args.refkit, args.refkit_dir, require_python=bool(args.torch_spec))
    except sidebyside.RefKitError as e:
        if args.refkit or args.refkit_dir:  # asked for explicitly: an error
            raise
        log.warning("no reference kit (%s): timing ours only", e)
        return None, f"not found ({e})"
    try:
        sidebyside.ensure_refkit(kit, torch_version, torch_spec=args.torch_spec, setup=bool(args.torch_spec),
                                 mirror=args.hrnext_mirror)
    except sidebyside.RefKitError:
        if not args.allow_mismatch:
            raise
    note = None if kit.has_hrnext else f"no HRNeXt reference: {sidebyside.MIRROR_HINT}"
    return kit, note


def run(args) -> int:
    import torch

    from harness.profile import sidebyside

    s = BenchSettings.quick_settings() if args.quick else BenchSettings()
    overrides = {k: v for k, v in (("batch", args.batch), ("threads", args.threads), ("iters", args.iters),
                                   ("rounds", args.rounds)) if v is not None}
    if args.models:
        overrides["models"] = tuple(args.models)
    if args.modes:
        overrides["modes"] = tuple(args.modes)
    if args.no_layouts:
        overrides["layouts"] = False
    try:
        if overrides:
            s = dataclasses.replace(s, **overrides)
        import backbones

        for m in s.models:
            backbones.get_entry(m)
        kit, note = (None, None) if (args.no_refkit or args.quick) else _find_kit(args, torch.__version__)
        report = run_bench(s, kit=kit, allow_mismatch=args.allow_mismatch, data_root=args.data_root,
                           out_dir=args.out, progress=not args.no_progress, kit_note=note)
    except (ValueError, KeyError, sidebyside.RefKitError, sidebyside.TorchMismatchError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(render_markdown(report))
    print(f"wrote {out / 'report.md'} and {out / 'report.json'} in {report['seconds_total']:.0f} s")
    return 0
