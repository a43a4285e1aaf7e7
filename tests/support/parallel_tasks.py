"""Module-level tasks for tests/test_parallel.py (spawned workers import them by name)."""
import os


def square_and_threads(x):
    import torch

    from harness.parallel import bar_position

    if x == "boom":
        raise ValueError("task boom failed")
    return x * x, torch.get_num_threads(), os.getpid(), bar_position()


def write_then_fail(args):
    path, fail = args
    if fail:
        raise RuntimeError(f"failed on purpose ({path})")
    import time

    time.sleep(1.0)  # still running when the other job fails: it must finish, not be killed
    with open(path, "w") as f:
        f.write("done")
    return path
