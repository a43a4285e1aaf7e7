"""The files of a work dir (``work_dirs/<experiment>/``): their names, in one place.

Everything that reads or writes a work dir -- the trainer, ``test``, ``--resume auto``, the demo and
ablation runners, ``visualize`` -- imports these names instead of spelling them.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["LAST", "BEST", "CONFIG", "LOG_CSV", "VAL_CSV", "TENSORBOARD", "DEMO_MARKER", "ABLATION_MARKER",
           "clean_stale_temp_files"]

LAST = "last.pth"  # the latest training checkpoint (what ``--resume auto`` continues from)
BEST = "best.pth"  # the checkpoint with the best validation AP
CONFIG = "config.json"  # the resolved experiment config and its hash
LOG_CSV = "log.csv"  # one row per ``train.log_interval`` iterations
VAL_CSV = "val.csv"  # one row per validation
TENSORBOARD = "tb"  # TensorBoard event files
DEMO_MARKER = "demo_result.json"  # a finished demo run (``make demo``)
ABLATION_MARKER = "ablation_cell.json"  # a finished ablation cell


def clean_stale_temp_files(work_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files an atomic write leaves when the process is killed (``kill -9``)
    mid-write: ``.<name>.<random>.tmp`` beside the work dir's files. Returns what was removed.

    Only call this when no other process writes into ``work_dir`` (the trainer does, on resume, on
    rank 0 before any write).
    """
    removed = []
    for p in sorted(Path(work_dir).glob(".*.tmp")):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted write: %s", work_dir, len(removed),
                 ", ".join(p.name for p in removed))
    return removed
