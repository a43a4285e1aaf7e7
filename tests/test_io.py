import os

import pytest

from harness.errors import UsageError
from harness.io import atomic_path, atomic_write_json, atomic_write_text, check_output_dir


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


def test_check_output_dir_creates_a_commands_own_folder_on_first_use(tmp_path):
    own = tmp_path / "results" / "tables"
    assert check_output_dir(own, "--out", owned=True) == own and own.is_dir()  # missing parents made
    assert check_output_dir(own, "--out", owned=True) == own  # and again once it exists
    user = tmp_path / "mine"
    assert check_output_dir(user, "--out") == user and user.is_dir()  # its parent exists
    with pytest.raises(UsageError, match="does not exist"):
        check_output_dir(tmp_path / "typo" / "out", "--out")  # a user's missing tree is not created
    assert not (tmp_path / "typo").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        check_output_dir(tmp_path / "f" / "out", "--out", owned=True)


def test_synth_cli_writes_to_its_default_folder_in_a_fresh_checkout(tmp_path, monkeypatch):
    from harness.cli import main

    monkeypatch.chdir(tmp_path)  # no data/ yet: the command's default root is made for it
    assert main(["synth", "--train", "2", "--val", "1", "--occluded", "1", "--no-progress"]) == 0
    assert (tmp_path / "data" / "synthetic" / "annotations").is_dir()
