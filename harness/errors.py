"""The project's errors: one base class for everything caused by the user's input.

Every error a user can fix (a flag, a config field, a dataset, a predictions or weights file, a
checkpoint) is a :class:`HrbenchError`. Its message starts with what it is about -- the file, the
entry and the field (``annotation file a.json: annotations[3].bbox: '12' is not a number``) -- and
``python -m harness`` prints it as ``error: <message>`` with exit status 2 and no traceback (``-v``
adds the traceback). Any other exception is a bug in hrbench and keeps its traceback.

Each subclass also derives from the built-in exception it replaces (``ValueError``,
``FileNotFoundError``, ``OSError``, ``RuntimeError``), so ``except ValueError`` in calling code keeps
working.

    HrbenchError
    ├── UsageError            a command-line flag or an output path (also ValueError)
    ├── ConfigError           an experiment/demo/ablation config field (ValueError)
    ├── MissingFileError      a file the user named does not exist (FileNotFoundError)
    ├── DataError             a dataset (ValueError)
    │   └── AnnotationError   an annotation or detection file
    ├── ImageError            a missing, unreadable or corrupt image (OSError)
    ├── PredictionError       a raw-predictions file (ValueError)
    ├── WeightsError          a weights file that cannot be read or does not fit the model (RuntimeError)
    ├── CheckpointError       a training checkpoint (``last.pth``/``best.pth``) (RuntimeError)
    ├── WorkDirError          a work dir that holds another run (FileExistsError)
    ├── RecordError           a result record (ValueError)
    ├── ResultsError          malformed files in the results store (RuntimeError)
    └── TrainingError         a run that cannot go on (non-finite loss) (RuntimeError)
"""
from __future__ import annotations

import os

__all__ = [
    "HrbenchError", "UsageError", "ConfigError", "MissingFileError", "DataError", "AnnotationError",
    "ImageError", "PredictionError", "WeightsError", "CheckpointError", "RecordError", "ResultsError",
    "TrainingError", "WorkDirError",
]


class HrbenchError(Exception):
    """An error in the user's input. ``file``/``field`` (optional) say what it is about.

    ``HrbenchError("no predictions", file="raw.json")`` reads ``raw.json: no predictions``;
    ``HrbenchError("must be > 0", field="train.epochs")`` reads ``train.epochs: must be > 0``.
    A message that already names its file and field is passed alone.
    """

    def __init__(self, what: str = "", *, file: str | os.PathLike | None = None, field: str | None = None):
        self.file = None if file is None else os.fspath(file)
        self.field = field
        self.what = what
        where = ": ".join(p for p in (self.file, field) if p)
        super().__init__(f"{where}: {what}" if where else what)


class UsageError(HrbenchError, ValueError):
    """A bad command-line value or output path (names the flag)."""


class ConfigError(HrbenchError, ValueError):
    """A config value is invalid; the message starts with the dotted field name."""


class MissingFileError(HrbenchError, FileNotFoundError):
    """A file or folder the user named does not exist."""

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would show the errno form
        return self.args[0] if self.args else ""


class DataError(HrbenchError, ValueError):
    """A dataset that cannot be used (no usable instance, a path outside its root...)."""


class AnnotationError(DataError):
    """A malformed or inconsistent annotation/detection file (message names file, entry and field)."""


class ImageError(HrbenchError, OSError):
    """A missing, unreadable or corrupt image (message names the file)."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class PredictionError(HrbenchError, ValueError):
    """A raw-predictions file or list that is malformed or out of range (names entry and field)."""


class WeightsError(HrbenchError, RuntimeError):
    """A weights file that cannot be read or does not fit the model."""


class CheckpointError(HrbenchError, RuntimeError):
    """A training checkpoint that is missing, corrupt, damaged (checksum) or of another run."""


class WorkDirError(HrbenchError, FileExistsError):
    """A work dir that already holds a run (continue it with ``--resume auto`` or pick another)."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class RecordError(HrbenchError, ValueError):
    """A record (or a file holding one) does not match the schema; the message names the field."""


class ResultsError(HrbenchError, RuntimeError):
    """Raised by ``load_results(strict=True)`` when any file is malformed; lists every bad file."""

    def __init__(self, bad_files: list[dict[str, str]] | str):
        if isinstance(bad_files, str):  # re-raised from a worker process with its message only
            self.bad_files = []
            super().__init__(bad_files)
            return
        self.bad_files = bad_files
        lines = "\n".join(f"  {b['file']}: {b['reason']}" for b in bad_files)
        super().__init__(f"{len(bad_files)} malformed result file(s):\n{lines}")


class TrainingError(HrbenchError, RuntimeError):
    """A run that cannot continue (e.g. a non-finite loss); the message says what to change."""
