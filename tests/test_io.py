import os

import pytest

from harness.io import atomic_path, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert os.listdir(p.parent) == ["a.txt"]
    assert (p.stat().st_mode & 0o777) == 0o666 & ~_umask()
    atomic_write_json(tmp_path / "b.json", {"x": 1}, indent=2)
    assert (tmp_path / "b.json").read_text() == '{\n  "x": 1\n}\n'


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m
