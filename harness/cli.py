"""`python -m harness ...`: one entry point, one sub-command per module.

Each module named in COMMANDS defines ``add_parser(subparsers)`` which registers its sub-command(s)
and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Modules are imported lazily so that `--help` stays fast and one broken optional piece cannot take
the whole CLI down.

Errors: every :class:`harness.errors.HrbenchError` (the user's input is wrong) is caught here, in one
place, and printed as ``error: <file/field>: <what>`` with exit status 2 and no traceback (``-v`` shows
it); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from harness import malloc
from harness.errors import HrbenchError

COMMANDS = [
    "harness.commands.models",
    "harness.commands.demo", "harness.commands.visualize",
    "harness.commands.data", "harness.commands.evaluate_predictions", "harness.commands.compare",
    "harness.commands.synth",
    "harness.commands.train",
    "harness.commands.report",
    "harness.commands.profile", "harness.commands.bench", "harness.commands.gpu_check",
    "harness.commands.ablate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="hrbench: train, evaluate, profile and compare HRNet, HRFormer and HRNeXt "
        "under one top-down pose pipeline.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging; on an error also print its traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    malloc.configure()  # keep freed tensor memory between steps (harness.malloc); children inherit it
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except HrbenchError as e:  # the user's input: one line naming the file/field; bugs keep their traceback
        if args.verbose:
            traceback.print_exc()
        print(f"error: {user_message(e)}", file=sys.stderr)
        return 2


def user_message(e: BaseException) -> str:
    """The message of a project error, without the worker traceback a DataLoader adds when it
    re-raises an error from a worker process."""
    text = str(e)
    if "\nOriginal Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith(type(e).__name__) else last
    return text
