"""One side of the side-by-side bench: time our pose model under the reference kit's protocol.

    python -m harness.profile.steptimer NAME [--mode train|infer] [--batch 8] [--threads 2] [--iters 10]
        [--warmup 3] [--seed 0] [--input HxW] [--reference-dir DIR] [--channels-last]

Mirrors ``time_ref.py`` of the reference kit (``timing.make_step(..., protocol="refkit")``): a fresh
process, ``torch.set_num_threads(threads)``, ``torch.manual_seed(seed)``, a pose model loaded with the
deterministic reference weights when ``--reference-dir`` names the folder with the kit's ``refweights.py``
and ``<name>.manifest.json`` (else the model's own initialisation, reported as ``"weights": "default"``),
input ``randn(batch, 3, H, W)`` from a generator seeded with ``seed``.  Prints one JSON line with the
median and minimum seconds, every step time and ``torch.__version__``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import torch

from harness import create_pose_model, load_weights

from .counting import default_input_hw, parse_hw
from .timing import make_step, time_step


def reference_weights(reference_dir: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The reference kit's deterministic state dict for ``name`` (reference key layout), built by the
    kit's own ``refweights.py`` from ``<name>.manifest.json`` in ``reference_dir``."""
    d = Path(reference_dir)
    rule, manifest = d / "refweights.py", d / f"{name}.manifest.json"
    for p in (rule, manifest):
        if not p.is_file():
            raise FileNotFoundError(f"--reference-dir {d}: {p.name} not found (the reference kit's weight rule "
                                    f"and manifests live in shared/reference)")
    spec = importlib.util.spec_from_file_location("_refkit_refweights", rule)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_state_dict(json.loads(manifest.read_text())["keys"])


def time_ours(name: str, *, mode: str = "train", batch: int = 8, threads: int = 2, iters: int = 10,
              warmup: int = 3, seed: int = 0, input_hw: tuple[int, int] | None = None,
              reference_dir: str | Path | None = None, channels_last: bool = False, fuse: bool = False) -> dict:
    """Time ``name`` under the reference kit's protocol in this process; the JSON-ready result.
    ``fuse`` (inference only): time ``PoseModel.fuse()``, as the harness's evaluation predicts."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = create_pose_model(name)
    if reference_dir is not None:
        load_weights(model, reference_weights(reference_dir, name))
    if fuse:
        if mode != "infer":
            raise ValueError("fuse: a fused model is for inference only (mode='infer')")
        model = model.fuse()
    h, w = parse_hw(input_hw) if input_hw else default_input_hw(name)
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = time_step(make_step(model, x, mode, protocol="refkit"), warmup=warmup, iters=iters)
    return dict(name=name, mode=mode, batch=batch, threads=threads, median_s=statistics.median(times),
                min_s=min(times), iters=iters, warmup=warmup, torch=torch.__version__,
                impl="hrbench" + ("+fused" if fuse else "") + ("+channels_last" if channels_last else ""), input_hw=[h, w],
                weights="reference" if reference_dir is not None else "default", times_s=times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.profile.steptimer", description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input", default=None, metavar="HxW", help="default: the paper's size, else 256x192")
    ap.add_argument("--reference-dir", default=None, help="folder with refweights.py and the manifests")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--fuse", action="store_true", help="inference: time PoseModel.fuse() (as evaluation runs)")
    a = ap.parse_args(argv)
    res = time_ours(a.name, mode=a.mode, batch=a.batch, threads=a.threads, iters=a.iters, warmup=a.warmup,
                    seed=a.seed, input_hw=a.input, reference_dir=a.reference_dir, channels_last=a.channels_last,
                    fuse=a.fuse)
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
