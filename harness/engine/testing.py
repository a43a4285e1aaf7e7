"""Evaluate a trained or published checkpoint and write one result record per split."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch
from torch import nn

from harness.config import Experiment, InitCfg
from harness.engine import builders
from harness.engine.checkpoint import ForeignCheckpointError, load_checkpoint
from harness.errors import MissingFileError

log = logging.getLogger(__name__)


def weights_from_file(path: str | os.PathLike) -> tuple[dict | str, str]:
    """What to hand to ``load_weights``, and which weights they are.

    Our training checkpoints are unpacked (the EMA weights when present: those are what validation
    scored); any other file goes by path so ``load_weights`` detects its layout (mmpose, the HRNeXt
    authors' release, backbone-only...).
    """
    path = builders.resolve_path(path)
    if not Path(path).is_file():
        raise MissingFileError(f"--checkpoint: {path} does not exist" + (" (it is a directory)" if Path(path).is_dir() else ""))
    try:
        ckpt = load_checkpoint(path)  # ours: verified (checksum, finite weights); damage raises here
    except ForeignCheckpointError:
        return str(path), "file"  # not ours; load_weights reads it and names any problem
    if "global_iter" not in ckpt:
        return str(path), "file"
    if ckpt.get("ema"):
        return ckpt["ema"]["module"], "ema"
    return ckpt["model"], "model"


def load_for_eval(exp: Experiment, checkpoint: str | os.PathLike, device: torch.device) -> tuple[nn.Module, str]:
    from harness import load_weights

    # Build without the recipe's ImageNet init: every weight comes from the checkpoint.
    model = builders.build_model(exp_without_init(exp))
    weights, kind = weights_from_file(checkpoint)
    report = load_weights(model, weights, strict=True)
    log.info("loaded %s (%s weights): %s", checkpoint, kind, report.summary())
    return model.to(device).eval(), kind


def exp_without_init(exp: Experiment) -> Experiment:
    """``exp`` built bare: no ImageNet init (every weight comes from the checkpoint), no checkpointing."""
    return dataclasses.replace(exp, init=InitCfg(pretrain="none"),
                               train=dataclasses.replace(exp.train, grad_checkpoint=False))


def run_test(exp: Experiment, checkpoint: str | os.PathLike, *, device: str | None = None,
             results_root: str | os.PathLike = "results/runs", splits: tuple[str, ...] | None = None,
             progress: bool = True, extra: dict | None = None, breakdown: str | None = None) -> list[dict]:
    """Evaluate ``checkpoint`` on every ``exp.eval.splits`` split; write and return the records.

    Each record points to its post-processed predictions (``predictions``, stored beside it, for a later
    ``compare``) and, with ``breakdown`` (e.g. ``"occlusion"``), holds AP/AR per occlusion bin.
    Returns a list of ``{"split", "metrics", "record", "path"}``.
    """
    from harness.eval.details import EvalDetails, write_predictions

    dev = builders.resolve_device(device)
    model, kind = load_for_eval(exp, checkpoint, dev)
    out = []
    for split in splits or exp.eval.splits:
        ds = builders.build_dataset(exp, split, train=False, eval_set=True)
        meta = getattr(ds, "meta", None)
        details = EvalDetails(dataset=meta.name if meta is not None else exp.eval.dataset, breakdown_kind=breakdown)
        metrics = builders.evaluate(model, ds, exp, device=dev, progress=progress, on_eval=details)
        rec = builders.make_record(exp, model=model, dataset_name=exp.eval.dataset, split=split,
                                   boxes=exp.eval.boxes, metrics=metrics, checkpoint=str(checkpoint),
                                   extra={"stage": "test", "weights": kind, **(extra or {})})
        if details.breakdown is not None:
            rec["breakdown"] = details.breakdown
        if details.results:
            folder = Path(results_root) / rec["dataset"] / rec["model"]
            pred = write_predictions(details.results, folder)
            rec["predictions"] = {"file": str(pred.relative_to(folder)), "ann_file": str(Path(ds.ann_file).resolve()),
                                  "dataset": details.dataset, "count": len(details.results)}
        path = builders.write_record(rec, root=results_root)
        log.info("%s %s/%s: %s -> %s", exp.model.name, exp.eval.dataset, split,
                 ", ".join(f"{k}={float(v):.4f}" for k, v in metrics.items() if k in rec["metrics"]), path)
        out.append({"split": split, "metrics": metrics, "record": rec, "path": path})
    return out
