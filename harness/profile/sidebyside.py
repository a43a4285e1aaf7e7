"""Side-by-side speed of our pose models against the reference implementations (a development tool).

The reference implementations live in the *reference kit*, a scratch environment that is never part of
the project: an interpreter with mmpose 1.3.2 and the HRNeXt authors' code (``setup.sh``), the timer
``time_ref.py`` and, next to it in ``../../reference``, the deterministic weight rule ``refweights.py``
with the state-dict manifests.  :meth:`RefKit.discover` finds it (arguments, then ``$REFKIT_PYTHON`` /
``$REFKIT_DIR``, then the development checkout's ``../shared/tools/refkit`` and ``/tmp/refkit-venv``) and
says what to set when it is missing.  Nothing else in the project reads it.

Protocol (:func:`compare`): for each (model, mode), ``rounds`` (>= 3) rounds, each running ours and then
the reference, every side a fresh process with the same protocol (``time_ref.py`` and
``python -m harness.profile.steptimer``: same threads, warm-up, iterations, input, deterministic
reference weights); a round's ratio is reference median / ours median (> 1: ours is faster); the row
reports the median ratio over rounds and its min-max spread.  Each side reports ``torch.__version__``;
a ratio whose sides ran different torch versions is refused (:class:`TorchMismatchError`) unless
``allow_mismatch``, and then labelled in every table.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import backbones

from .counting import REPO

log = logging.getLogger(__name__)

DEV_REFKIT_DIR = REPO.parent / "shared" / "tools" / "refkit"
DEV_REFKIT_PYTHON = Path("/tmp/refkit-venv/bin/python")
DEV_REFKIT_SRC = Path(os.environ.get("REFSPEED_SRC", "/tmp/refkit-src"))
MIN_ROUNDS = 3
MIRROR_HINT = ("set HRNEXT_MIRROR to the git directory of a mirror of github ZiyiZhang27/HRNeXt and re-run "
               "(make bench HRNEXT_MIRROR=/path/to/HRNeXt.git)")


class RefKitError(RuntimeError):
    """The reference kit is missing or unusable; the message says what to set or run."""


class TorchMismatchError(RuntimeError):
    """The two sides of a ratio ran different torch versions."""


def paper_models() -> list[str]:
    """The six paper models: the ones the reference kit implements."""
    return backbones.list_models(paper_only=True)


@dataclass(frozen=True)
class RefKit:
    """Where the reference kit is: its interpreter, its folder (``time_ref.py``, ``setup.sh``), the
    reference folder (``refweights.py``, manifests) and where ``setup.sh`` exported the HRNeXt code."""

    python: Path
    kit_dir: Path
    reference_dir: Path
    src_dir: Path = DEV_REFKIT_SRC

    @classmethod
    def discover(cls, python: str | os.PathLike | None = None, kit_dir: str | os.PathLike | None = None,
                 *, require_python: bool = True) -> "RefKit":
        """The kit from the arguments, else ``$REFKIT_PYTHON`` / ``$REFKIT_DIR``, else the development
        defaults; :class:`RefKitError` naming what to set when a piece is missing."""
        kit = Path(kit_dir or os.environ.get("REFKIT_DIR") or DEV_REFKIT_DIR)
        if not (kit / "time_ref.py").is_file():
            raise RefKitError(f"reference kit folder {kit}: no time_ref.py; pass --refkit-dir or set REFKIT_DIR to "
                              f"the folder holding the reference kit (shared/tools/refkit of the development "
                              f"checkout)")
        ref = (kit / ".." / ".." / "reference").resolve()
        if not (ref / "refweights.py").is_file():
            raise RefKitError(f"reference kit {kit}: {ref}/refweights.py not found (the kit expects the reference "
                              f"manifests and weight rule in ../../reference)")
        py = Path(python or os.environ.get("REFKIT_PYTHON") or DEV_REFKIT_PYTHON)
        if require_python and not (py.is_file() and os.access(py, os.X_OK)):
            raise RefKitError(f"reference interpreter {py}: not an executable file; build the kit with "
                              f"`TORCH_SPEC=... bash {kit}/setup.sh` (make bench does) or pass --refkit PYTHON")
        return cls(python=py, kit_dir=kit, reference_dir=ref)

    @property
    def venv(self) -> Path:
        return self.python.parent.parent

    @property
    def has_hrnext(self) -> bool:
        """Whether ``setup.sh`` exported the HRNeXt authors' code (it needs ``HRNEXT_MIRROR``)."""
        return (self.src_dir / "hrnext_authors" / "hrnext.py").is_file()

    def available(self, name: str) -> str | None:
        """None when the kit can time ``name``, else the reason."""
        if name not in paper_models():
            return f"{name} has no reference implementation (only the six paper models have one)"
        if name.startswith("hrnext") and not self.has_hrnext:
            return f"the reference kit has no HRNeXt authors' code in {self.src_dir}: {MIRROR_HINT}"
        return None


def interpreter_torch(python: str | os.PathLike) -> str | None:
    """``torch.__version__`` of another interpreter (None when it has no torch or does not run)."""
    try:
        out = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"], capture_output=True,
                             text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else None


def ensure_refkit(kit: RefKit, torch_version: str, *, torch_spec: str | None = None, setup: bool = True,
                  mirror: str | None = None) -> RefKit:
    """Reuse the kit when its interpreter runs ``torch_version``; else (``setup``) (re)build it with
    ``setup.sh`` and ``TORCH_SPEC=torch_spec`` (``HRNEXT_MIRROR=mirror`` for the HRNeXt code) and check again.
    Raises :class:`RefKitError` when the versions still differ or the kit cannot be built."""
    have = interpreter_torch(kit.python) if kit.python.is_file() else None
    if have != torch_version or (mirror and not kit.has_hrnext):
        if not setup:
            raise RefKitError(f"reference interpreter {kit.python} runs torch {have or '(none)'}, the project "
                              f"torch {torch_version}; rebuild the kit with TORCH_SPEC (make bench does)")
        if not torch_spec:
            raise RefKitError(f"reference interpreter {kit.python} runs torch {have or '(none)'}, the project "
                              f"torch {torch_version}: pass --torch-spec (the project's TORCH_SPEC) to rebuild it")
        env = {**os.environ, "TORCH_SPEC": torch_spec, "REFKIT_VENV": str(kit.venv),
               "REFSPEED_SRC": str(kit.src_dir)}
        if mirror:
            env["HRNEXT_MIRROR"] = mirror
        log.info("building the reference kit in %s (TORCH_SPEC=%s)", kit.venv, torch_spec)
        out = subprocess.run(["bash", str(kit.kit_dir / "setup.sh")], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RefKitError(f"{kit.kit_dir}/setup.sh failed:\n{out.stderr[-2000:]}")
        have = interpreter_torch(kit.python)
        if have != torch_version:
            raise RefKitError(f"reference interpreter {kit.python} runs torch {have} after setup.sh, the project "
                              f"torch {torch_version}: TORCH_SPEC={torch_spec!r} does not give the project's torch")
    if not kit.has_hrnext:
        log.warning("reference kit without HRNeXt: %s", MIRROR_HINT)
    return kit


# ------------------------------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class SideTiming:
    """One side's result in one round (the JSON line of ``time_ref.py`` or ``steptimer``)."""

    impl: str
    name: str
    mode: str
    batch: int
    threads: int
    median_s: float
    min_s: float
    torch: str
    weights: str
    times_s: tuple[float, ...]

    @classmethod
    def from_json(cls, text: str, source: str) -> "SideTiming":
        try:
            r = json.loads(text.strip().splitlines()[-1])
            return cls(impl=str(r["impl"]), name=str(r["name"]), mode=str(r["mode"]), batch=int(r["batch"]),
                       threads=int(r["threads"]), median_s=float(r["median_s"]), min_s=float(r["min_s"]),
                       torch=str(r["torch"]), weights=str(r.get("weights", "?")),
                       times_s=tuple(float(t) for t in r.get("times_s", ())))
        except (IndexError, ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"{source}: expected one JSON line with impl, name, mode, batch, threads, median_s, "
                               f"min_s and torch; got {text[-500:]!r} ({e})") from None


Runner = Callable[[list[str], int], SideTiming]


def run_side(cmd: list[str], threads: int) -> SideTiming:
    """Run one side's timer in a fresh process (``OMP_NUM_THREADS=threads``) and parse its JSON line."""
    # cwd: the repository root, so that ``python -m harness...`` runs this checkout's code.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO))
    if out.returncode != 0:
        raise RuntimeError(f"timer failed ({' '.join(cmd)}):\n{out.stderr[-2000:]}")
    return SideTiming.from_json(out.stdout, " ".join(cmd))


def side_commands(kit: RefKit, name: str, mode: str, *, batch: int, threads: int, iters: int, warmup: int,
                  python: str = sys.executable) -> tuple[list[str], list[str]]:
    """(ours, reference) command lines for one measurement, identical protocol arguments."""
    common = [name, "--mode", mode, "--batch", str(batch), "--threads", str(threads), "--iters", str(iters),
              "--warmup", str(warmup)]
    # Our inference is what the harness's evaluation runs: the BatchNorm-folded model (eval.fuse).
    ours = [python, "-m", "harness.profile.steptimer", *common, "--reference-dir", str(kit.reference_dir),
            *(["--fuse"] if mode == "infer" else [])]
    ref = [str(kit.python), str(kit.kit_dir / "time_ref.py"), *common]
    return ours, ref


def compare(names: Sequence[str], modes: Sequence[str], kit: RefKit, *, rounds: int = MIN_ROUNDS, batch: int = 8,
            threads: int = 2, iters: int = 10, warmup: int = 3, allow_mismatch: bool = False,
            runner: Runner = run_side, progress: bool = True) -> list[dict]:
    """Ours and the reference alternately (ours, reference, ours, reference, ...) for ``rounds`` rounds per
    (model, mode); one row each with the median ratio and its spread (see the module docstring)."""
    from tqdm import tqdm

    if rounds < MIN_ROUNDS:
        raise ValueError(f"rounds={rounds}: the side-by-side bench needs at least {MIN_ROUNDS} rounds")
    rows = []
    jobs = [(n, m) for n in names for m in modes]
    bar = tqdm(total=len(jobs) * rounds * 2, desc="ours vs reference", unit="run", disable=not progress)
    for name, mode in jobs:
        ours_cmd, ref_cmd = side_commands(kit, name, mode, batch=batch, threads=threads, iters=iters, warmup=warmup)
        ours, ref = [], []
        for _ in range(rounds):
            for cmd, into in ((ours_cmd, ours), (ref_cmd, ref)):
                bar.set_postfix_str(f"{name} {mode} {'ours' if into is ours else 'reference'}")
                into.append(runner(cmd, threads))
                bar.update(1)
            check_torch(ours[-1], ref[-1], allow_mismatch)
        rows.append(comparison_row(name, mode, batch, threads, ours, ref))
    bar.close()
    return rows


def check_torch(ours: SideTiming, ref: SideTiming, allow_mismatch: bool) -> None:
    """Refuse a ratio whose sides ran different torch versions (or log it loudly when allowed)."""
    if ours.torch == ref.torch:
        return
    msg = (f"{ours.name} {ours.mode}: ours ran torch {ours.torch}, the reference torch {ref.torch}; a ratio "
           f"across torch versions measures torch, not the implementations. Rebuild the reference kit with the "
           f"project's TORCH_SPEC (make bench does), or pass --allow-mismatch to report it labelled")
    if not allow_mismatch:
        raise TorchMismatchError(msg)
    log.warning("TORCH MISMATCH (reported, labelled): %s", msg)


def comparison_row(name: str, mode: str, batch: int, threads: int, ours: list[SideTiming],
                   ref: list[SideTiming]) -> dict:
    """Per-round ratios (reference / ours medians) -> median ratio with min-max spread."""
    ratios = [r.median_s / o.median_s for o, r in zip(ours, ref)]
    ours_torch, ref_torch = sorted({t.torch for t in ours}), sorted({t.torch for t in ref})
    return {"kind": "ours vs reference", "model": name, "mode": mode, "batch": batch, "threads": threads,
            "rounds": len(ratios), "ours_s": statistics.median(t.median_s for t in ours),
            "reference_s": statistics.median(t.median_s for t in ref), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "ratios": ratios,
            "ours_torch": ", ".join(ours_torch), "reference_torch": ", ".join(ref_torch),
            "torch_mismatch": ours_torch != ref_torch, "weights": sorted({t.weights for t in ours + ref})}


def always_channels_last(name: str) -> bool:
    """Whether ``name``'s family runs channels-last whatever its input (``HRNetBase.channels_last``): its
    default layout is channels-last, so :func:`compare_layouts` has nothing to compare."""
    return bool(getattr(backbones.get_entry(name).cls, "channels_last", False))


def compare_layouts(names: Sequence[str], modes: Sequence[str], *, rounds: int = MIN_ROUNDS, batch: int = 8,
                    threads: int = 2, iters: int = 10, warmup: int = 3, runner: Runner = run_side,
                    progress: bool = True) -> list[dict]:
    """Ours in channels_last against ours in the default layout, alternating fresh processes the same way."""
    from tqdm import tqdm

    rows = []
    jobs = [(n, m) for n in names for m in modes]
    bar = tqdm(total=len(jobs) * rounds * 2, desc="channels_last vs default", unit="run", disable=not progress)
    for name, mode in jobs:
        cmd = [sys.executable, "-m", "harness.profile.steptimer", name, "--mode", mode, "--batch", str(batch),
               "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup)]
        default, cl = [], []
        for _ in range(rounds):
            default.append(runner(cmd, threads))
            cl.append(runner(cmd + ["--channels-last"], threads))
            bar.update(2)
        ratios = [d.median_s / c.median_s for d, c in zip(default, cl)]
        rows.append({"kind": "channels_last vs default", "model": name, "mode": mode, "batch": batch,
                     "threads": threads, "rounds": rounds, "ours_s": statistics.median(t.median_s for t in default),
                     "channels_last_s": statistics.median(t.median_s for t in cl), "ratio": statistics.median(ratios),
                     "ratio_min": min(ratios), "ratio_max": max(ratios), "ratios": ratios,
                     "ours_torch": default[0].torch, "reference_torch": cl[0].torch, "torch_mismatch": False})
    bar.close()
    return rows


__all__ = ["MIN_ROUNDS", "RefKit", "RefKitError", "SideTiming", "TorchMismatchError", "always_channels_last",
           "check_torch", "compare", "compare_layouts", "comparison_row", "ensure_refkit", "interpreter_torch",
           "paper_models", "run_side", "side_commands"]
