"""``harness.data.restarts``: the restart interval per image, the jpegtran calls and the copied folder."""
from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from harness.data import restarts
from harness.data.restarts import add_restarts, main, restart_interval
from support.paths import FIXTURES as _FIXTURES, SHARED

FIXTURES = _FIXTURES / "jpeg"


def test_restart_interval_divides_the_mcus_per_row(tmp_path):
    assert restart_interval(SHARED / "data" / "coco-mini" / "val2017" / "000000397133.jpg") == 4  # 640/8 = 80
    assert restart_interval(SHARED / "data" / "ochuman-samples" / "000817.jpg") == 3  # 4:2:0, ceil(665/16) = 42
    assert restart_interval(FIXTURES / "rst444_rows.jpg") == 3  # ceil(333/8) = 42
    assert restart_interval(FIXTURES / "rst444_rows.jpg", max_interval=2) == 2
    png = tmp_path / "a.jpg"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match=r"a\.jpg: not a JPEG"):
        restart_interval(png)


def _fake_jpegtran(tmp_path: Path) -> Path:
    """A stand-in that records its arguments and copies the input to -outfile."""
    log = tmp_path / "calls.txt"
    script = tmp_path / "bin" / "jpegtran"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport shutil, sys\na = sys.argv[1:]\n"
                      f"open({str(log)!r}, 'a').write(' '.join(a) + '\\n')\n"
                      "shutil.copyfile(a[-1], a[a.index('-outfile') + 1])\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_add_restarts_calls_jpegtran_per_jpeg_and_copies_the_rest(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "x.jpg").write_bytes((FIXTURES / "rst444_rows.jpg").read_bytes())
    (src / "notes.txt").write_text("keep me")
    fake = _fake_jpegtran(tmp_path)
    monkeypatch.setattr(restarts.shutil, "which", lambda name: str(fake) if name == "jpegtran" else None)
    assert add_restarts(src, tmp_path / "dst", progress=False) == 1
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("-copy all -restart 3B -outfile ")
    assert (tmp_path / "dst" / "sub" / "x.jpg").read_bytes() == (src / "sub" / "x.jpg").read_bytes()
    assert (tmp_path / "dst" / "notes.txt").read_text() == "keep me"
    assert not [p for p in (tmp_path / "dst").rglob(".*")]  # no temporary files left
    with pytest.raises(ValueError, match="is the source folder"):
        add_restarts(src, src, progress=False)


def test_missing_jpegtran_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(restarts.shutil, "which", lambda name: None)
    assert main([str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "jpegtran not found on PATH" in err and "libjpeg-turbo-progs" in err
