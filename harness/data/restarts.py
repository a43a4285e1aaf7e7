"""Copy an image folder with restart markers added to every JPEG, losslessly, for ``data.decode=roi``.

``python -m harness.data.restarts SRC DST`` runs libjpeg-turbo's ``jpegtran -copy all -restart NB``
on each ``*.jpg``/``*.jpeg`` under SRC (other files are copied as they are) and writes the result at
the same relative path under DST. The DCT coefficients are kept, so DST's images decode to exactly
the same pixels as SRC's; files grow by a few percent (coco-mini: 4.4 -> 4.7 MB). N, the restart
interval in MCUs (:func:`restart_interval`), is the largest divisor of the image's MCUs per row up
to ``--max-interval`` (4): an interval never straddles two MCU rows, which is what
``harness.data.decode`` needs to cut out a crop's region. ``jpegtran`` comes with libjpeg-turbo
(Debian/Ubuntu: the ``libjpeg-turbo-progs`` package).
"""
from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

__all__ = ["restart_interval", "add_restarts", "main"]

JPEG_SUFFIXES = (".jpg", ".jpeg")


def restart_interval(path: str | Path, max_interval: int = 4) -> int:
    """Restart interval (MCUs) for ``path``: the largest divisor of its MCUs per row <= ``max_interval``."""
    data = Path(path).read_bytes()
    i = 2
    if data[:2] != b"\xff\xd8":
        raise ValueError(f"image {path}: not a JPEG")
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            _h, w, nf = struct.unpack_from(">HHB", data, i + 5)
            hmax = max(data[i + 11 + 3 * c] >> 4 for c in range(nf))
            mcu_w = 8 if nf == 1 else 8 * hmax
            per_row = -(-w // mcu_w)
            return max(n for n in range(1, max_interval + 1) if per_row % n == 0)
        if marker == 0xDA:
            break
        i += 2 + length
    raise ValueError(f"image {path}: no frame header before the scan (corrupt JPEG)")


def add_restarts(src: str | Path, dst: str | Path, *, max_interval: int = 4, progress: bool = True) -> int:
    """Copy ``src`` to ``dst`` with restart markers in every JPEG; returns the number of JPEGs."""
    jpegtran = shutil.which("jpegtran")
    if jpegtran is None:
        raise FileNotFoundError("jpegtran not found on PATH: install libjpeg-turbo's tools "
                                "(Debian/Ubuntu package libjpeg-turbo-progs)")
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist")
    if dst.resolve() == src.resolve():
        raise ValueError(f"destination {dst} is the source folder; write to a new folder")
    from tqdm import tqdm

    files = sorted(p for p in src.rglob("*") if p.is_file())
    n_jpeg = 0
    for f in tqdm(files, desc="restart markers", unit="file", disable=not progress):
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        if f.suffix.lower() in JPEG_SUFFIXES:
            n = restart_interval(f, max_interval)
            proc = subprocess.run([jpegtran, "-copy", "all", "-restart", f"{n}B", "-outfile", str(tmp), str(f)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise RuntimeError(f"image {f}: jpegtran failed: {proc.stderr.strip()}")
            n_jpeg += 1
        else:
            shutil.copyfile(f, tmp)
        os.replace(tmp, out)
    return n_jpeg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.data.restarts", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="image folder (e.g. data/coco/train2017)")
    ap.add_argument("dst", help="new folder for the copies")
    ap.add_argument("--max-interval", type=int, default=4, help="largest restart interval in MCUs (default 4)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        n = add_restarts(args.src, args.dst, max_interval=args.max_interval, progress=not args.no_progress)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{n} JPEGs written with restart markers to {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
