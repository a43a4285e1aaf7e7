"""Atomic file writes: readers (and resumed runs) never see a half-written file.

Everything the harness writes for later (checkpoints, result records, configs, tables, figures, dataset
files) goes through these: the data is written to a temporary file in the target's folder, flushed to
disk, and moved over the target with ``os.replace`` (atomic on POSIX); on any error the temporary file
is removed and the target is untouched.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from harness.errors import UsageError

log = logging.getLogger(__name__)

# mkstemp creates 0600 files; give results and datasets the mode any newly created file would get.
FILE_MODE = 0o666


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    ``durable`` fsyncs the data before the rename (skip it for bulk files of a regenerable cache).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if durable:  # make the bytes durable before the rename makes them visible
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs) -> Path:
    return atomic_write_text(path, json.dumps(obj, **dumps_kwargs) + ("\n" if dumps_kwargs.get("indent") else ""))


def atomic_write_png(path: str | os.PathLike, img: Any) -> Path:
    """Encode a BGR/grey uint8 image (OpenCV order) as PNG and write it atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed")
    return atomic_write_bytes(path, buf.tobytes())


def read_marker(path: str | os.PathLike, key: Any) -> dict | None:
    """The payload of a "finished" marker written by :func:`write_marker` for ``key``, else None.

    The one skip-finished-work rule (demo families, ablation cells, the synthetic-data cache): work is
    skipped only when its marker exists, parses, and was written for the same ``key`` (whatever the
    result depends on: config hash, versions, settings). A missing marker is silent; an unreadable one
    or one for another key is logged and treated as absent, so the work is redone, never half-reused.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable done marker (%s); the work will be redone", path, e)
        return None
    if not isinstance(payload, dict) or payload.get("key") != _jsonable_key(key):
        log.info("%s: marker of other settings; the work will be redone", path)
        return None
    return payload


def write_marker(path: str | os.PathLike, key: Any, payload: dict) -> Path:
    """Mark work finished (atomically, last): ``payload`` plus ``key`` as JSON at ``path``."""
    return atomic_write_json(path, {**payload, "key": _jsonable_key(key)}, indent=2, sort_keys=True)


def _jsonable_key(key: Any) -> Any:
    return json.loads(json.dumps(key, sort_keys=True))


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Validate a user-given output file *before* the work that produces it: not a directory, its
    folder exists (a typo must not create a tree) and can be written. Returns the path."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what}: {p} is a directory; give a file name")
    if not p.parent.is_dir():
        kind = "is not a folder" if p.parent.exists() else "does not exist"
        raise UsageError(f"{what}: folder {p.parent} {kind} (create it first; only the folders a command "
                         f"owns are created for you)")
    _probe_writable(p.parent, what)
    return p


def check_output_dir(path: str | os.PathLike, what: str, *, create: bool = True, owned: bool = False) -> Path:
    """Validate (and with ``create``, make) a user-given output folder before the work: it may be created
    when its parent exists; a missing tree above it, a file in its place or an unwritable place is refused.
    ``owned``: the folder is the command's own default (``results/tables``...): missing parents are made."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what}: {p} is a file, not a folder")
    if not p.exists():
        if owned and create:
            for parent in reversed(p.parents):
                if parent.exists() and not parent.is_dir():
                    raise UsageError(f"{what}: {parent} is a file, not a folder")
        elif not p.parent.is_dir():
            kind = "is not a folder" if p.parent.exists() else "does not exist"
            raise UsageError(f"{what}: {p.parent} {kind} (create it first; only the folders a command owns "
                             f"are created for you)")
        if not create:
            return p
        try:
            p.mkdir(parents=owned)
        except OSError as e:
            raise UsageError(f"{what}: cannot create folder {p} ({e.strerror or e})") from None
    _probe_writable(p, what)
    return p


def _probe_writable(folder: Path, what: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"{what}: folder {folder} is not writable ({e.strerror or e})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
