"""harness.malloc: glibc's mmap/trim thresholds for CPU runs, applied by the CLI, inherited by children."""
import os
import subprocess
import sys

import pytest

from harness import cli, malloc


class FakeLibc:
    def __init__(self, ok=1):
        self.calls, self.ok = [], ok

    def mallopt(self, param, value):
        self.calls.append((param.value, value.value))
        return self.ok


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(malloc, "_APPLIED", None)
    for var in (*malloc.SETTINGS, malloc.OPT_OUT, "LD_PRELOAD"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_configure_sets_glibc_thresholds_and_exports_them(fresh):
    libc = FakeLibc()
    applied = malloc.configure(libc)
    assert sorted(libc.calls) == sorted([(-3, 32 * 1024 * 1024), (-1, 2 ** 31 - 1)])
    assert applied == {"MALLOC_MMAP_THRESHOLD_": 33554432, "MALLOC_TRIM_THRESHOLD_": 2147483647}
    assert malloc.current() == {k: str(v) for k, v in applied.items()}
    assert malloc.configure(FakeLibc()) is applied  # once per process


def test_a_failed_mallopt_is_not_exported(fresh):
    assert malloc.configure(FakeLibc(ok=0)) == {}
    assert malloc.current() == {}


@pytest.mark.parametrize("env, reason", [
    ({"HRBENCH_MALLOC": "default"}, "HRBENCH_MALLOC=default"),
    ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "MALLOC_MMAP_THRESHOLD_ is set by the user"),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "LD_PRELOAD=/usr/lib/libjemalloc.so.2"),
])
def test_user_choices_are_left_alone(fresh, env, reason):
    for k, v in env.items():
        fresh.setenv(k, v)
    libc = FakeLibc()
    assert malloc.skip_reason() == reason
    assert malloc.configure(libc) == {} and libc.calls == []
    assert {k: os.environ.get(k) for k in malloc.SETTINGS} == {k: env.get(k) for k in malloc.SETTINGS}


def test_the_cli_configures_before_running_a_command(fresh):
    seen = []
    fresh.setattr(malloc, "configure", lambda: seen.append("configured") or {})
    assert cli.main(["models"]) == 0
    assert seen == ["configured"]


REUSE = """
import os, resource, torch
def run():
    keep = []
    for s in (3_000_000, 12_000_000, 5_000_000, 25_000_000, 1_000_000, 7_000_000):
        keep.append(torch.ones(s // 4))
        if len(keep) > 2:
            keep.pop(0)
for _ in range(3):
    run()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    run()
print(os.environ.get("MALLOC_MMAP_THRESHOLD_"), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""
# A configured process, and a process it starts (what spawned workers and the bench's timing processes
# are): glibc reads the exported variables at the child's start-up.  (In the configuring process itself,
# mallopt after start-up removes most but not all of the faults: ~450 pages per 20 rounds of this loop
# in about a third of runs, measured.)
CHILD = """
import subprocess, sys
from harness import malloc
print(sorted(malloc.configure().items()))
print(subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True, check=True).stdout.strip())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or malloc._glibc() is None, reason="glibc only")
def test_on_glibc_children_inherit_the_setting_and_reuse_step_sized_buffers():
    env = {k: v for k, v in os.environ.items() if k not in (*malloc.SETTINGS, malloc.OPT_OUT)}
    out = subprocess.run([sys.executable, "-c", CHILD, REUSE], capture_output=True, text=True, env=env, check=True)
    applied, child = out.stdout.split("\n")[:2]
    assert applied == "[('MALLOC_MMAP_THRESHOLD_', 33554432), ('MALLOC_TRIM_THRESHOLD_', 2147483647)]"
    inherited, faults = child.split()
    assert inherited == "33554432"
    assert int(faults) < 100  # 120 allocations of 1-25 MB: no fresh pages once the heap holds them
