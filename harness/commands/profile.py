"""`python -m harness profile MODEL`: params, GFLOPs (fvcore and the paper's convention), latency, memory."""
from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "profile", help="params, GFLOPs (two labelled conventions), latency/throughput and peak memory of a model",
        description="Profile one pose model (backbone + 1x1 head): parameter count, GFLOPs counted by fvcore "
                    "and by the convention that reproduces the HRNeXt paper's table (with the paper's figure "
                    "and the difference), then inference and training-step latency, throughput and peak "
                    "memory for each batch size. Saves results/profiles/<model>_<H>x<W>_<device>.json.")
    p.add_argument("model", help="registered model name, e.g. hrnext-s (see `python -m harness models`)")
    p.add_argument("--input", default=None, metavar="HxW",
                   help="input size (default: the paper's size for the six paper models, else 256x192)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], metavar="N", help="batch sizes (default: 1 8)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"],
                   help="what to time (default: infer train)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (default: 3)")
    p.add_argument("--iters", type=int, default=10, help="timed steps; the median is reported (default: 10)")
    p.add_argument("--channels-last", action="store_true", help="run the model and input in channels_last")
    p.add_argument("--static-only", action="store_true", help="params and GFLOPs only, no timing")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the full result to this JSON file")
    p.add_argument("--no-save", action="store_true", help="do not write results/profiles/...json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _fmt_diff(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:+.2f}{unit}"


def static_table(st) -> str:
    """A readable block for a ``ProfileStatic``."""
    from harness.profile import CONVENTIONS

    pp = "-" if st.paper_params_m is None else f"{st.paper_params_m:.1f}M"
    pg = "-" if st.paper_gflops is None else f"{st.paper_gflops:.1f}"
    fv_diff = None if st.paper_gflops is None else st.gflops_fvcore - st.paper_gflops
    lines = [
        f"{st.model} @ {st.input_hw[0]}x{st.input_hw[1]} (pose model = backbone + 1x1 head, batch 1)",
        "| quantity | ours | paper | ours - paper |",
        "|---|---:|---:|---:|",
        f"| params | {st.params_m:.2f}M ({st.params:,}) | {pp} | {_fmt_diff(st.params_diff_m, 'M')} |",
        f"| GFLOPs, fvcore (1 multiply-add = 1 flop, all ops fvcore counts + SDPA handle) | "
        f"{st.gflops_fvcore:.2f} | {pg} | {_fmt_diff(fv_diff, '')} |",
        f"| GFLOPs, paper convention `{st.convention}` | {st.gflops_paper_convention:.2f} | {pg} | "
        f"{_fmt_diff(st.gflops_diff, '')} |",
        f"paper convention `{st.convention}`: {CONVENTIONS[st.convention].description}",
    ]
    if st.fvcore_skipped_ops:
        skipped = ", ".join(f"{k.replace('aten::', '')} x{v}" for k, v in sorted(st.fvcore_skipped_ops.items()))
        lines.append(f"not counted by fvcore (element-wise): {skipped}")
    return "\n".join(lines)


def runtime_table(rt: dict) -> str:
    m = rt["machine"]
    lines = [f"runtime on {rt['device']} ({m.get('gpu') or m['cpu']}), {rt['threads']} threads, torch "
             f"{m['torch']}, warm-up {rt['warmup']}, median of {rt['iters']}"
             + (", channels_last" if rt.get("channels_last") else ""),
             "| mode | batch | median (ms) | min (ms) | throughput (img/s) | peak memory (MiB) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rt["results"]:
        if "skipped" in r:
            lines.append(f"| {r['mode']} | {r['batch']} | skipped: {r['skipped']} | | | |")
        else:
            lines.append(f"| {r['mode']} | {r['batch']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
                         f"{r['throughput_ips']:.2f} | {r['peak_mem_mb']:.0f} |")
    kinds = {r["mem_kind"] for r in rt["results"] if "mem_kind" in r}
    if kinds:
        lines.append("memory: " + "; ".join(sorted(kinds)))
    return "\n".join(lines)


def run(args) -> int:
    from harness import profile as prof

    try:
        hw = prof.parse_hw(args.input) if args.input else prof.default_input_hw(args.model)
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if min(args.batch) < 1 or args.iters < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        print(f"error: --batch {args.batch} / --iters {args.iters} / --warmup {args.warmup} / --threads "
              f"{args.threads}: batch, iters and threads must be positive, warmup >= 0", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        st = prof.profile_static(args.model, hw)
    except KeyError as e:  # unknown model: the message lists the valid names
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    print(static_table(st))
    out = {"static": st.to_dict(), "runtime": None}
    rt = None
    if not args.static_only:
        try:
            rt = prof.profile_runtime(args.model, hw, batch_sizes=args.batch, modes=args.modes, device=args.device,
                                      threads=args.threads, warmup=args.warmup, iters=args.iters,
                                      progress=not args.no_progress, channels_last=args.channels_last)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print()
        print(runtime_table(rt))
        out["runtime"] = rt
    if not args.no_save:
        path = prof.write_profile_record(st, rt, device=args.device)
        print(f"\nsaved {path}")
    if args.json:
        from harness.io import atomic_write_json

        atomic_write_json(args.json, json.loads(json.dumps(out, default=float)), indent=2)
        print(f"wrote {args.json}")
    return 0
