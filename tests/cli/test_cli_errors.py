"""Bad input never gives a traceback (issue 15): every user error is ``error: <file/field>: <what>`` on
stderr with exit status 2, through the one error path in ``harness.cli.main``.

Each case is a regression test: the input, the exit code and the file/field the message must name.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from harness.cli import main, user_message
from harness.errors import HrbenchError, ImageError
from support import engine_support as support
from support.paths import REPO, SHARED

COCO_SAMPLES = SHARED / "data" / "coco-samples"


def run(capsys, *argv: str) -> tuple[int, str]:
    """``python -m harness ARGV`` in-process: (exit code, stderr)."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


def assert_user_error(rc: int, err: str, *names: str) -> None:
    assert rc == 2, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A 2+2-image synthetic dataset (COCO format, 17 keypoints)."""
    from harness.data.synthetic import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthConfig(image_size=(128, 128), num_images={"train": 2, "val": 2, "occluded": 0}), progress=False)
    return root


def _copy(synth: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(synth, dst)
    return dst


def _tiny_run(tmp_path: Path, monkeypatch, capsys) -> Path:
    """A finished 1-epoch run of the engine's stand-ins; returns its work dir."""
    support.install(monkeypatch)
    wd = tmp_path / "w"
    sets = sum((["--set", s] for s in support.tiny_overrides(**{"train.epochs": 1, "train.val_interval": 0})), [])
    rc, err = run(capsys, "train", "coco-mini-hrnet", *sets, "--work-dir", wd, "--no-progress")
    assert rc == 0, err
    return wd


TINY = sum((["--set", s] for s in support.tiny_overrides(**{"train.epochs": 1, "train.val_interval": 0})), [])


# ------------------------------------------------------------------------------ checkpoints


def test_train_resume_missing_file(tmp_path, monkeypatch, capsys):
    support.install(monkeypatch)
    rc, err = run(capsys, "train", "coco-mini-hrnet", *TINY, "--work-dir", tmp_path / "w", "--resume",
                  tmp_path / "nope.pth", "--no-progress")
    assert_user_error(rc, err, "--resume", "nope.pth", "not found")


def test_train_resume_corrupt_last_pth(tmp_path, monkeypatch, capsys):
    support.install(monkeypatch)
    wd = tmp_path / "w"
    wd.mkdir()
    (wd / "last.pth").write_bytes(b"PK\x03\x04 truncated")
    rc, err = run(capsys, "train", "coco-mini-hrnet", *TINY, "--work-dir", wd, "--resume", "auto", "--no-progress")
    assert_user_error(rc, err, str(wd / "last.pth"), "truncated or corrupt")


def test_resume_cleans_temp_files_left_by_kill_9(tmp_path, monkeypatch, capsys):
    wd = _tiny_run(tmp_path, monkeypatch, capsys)
    stale = wd / ".last.pth.k9x2ab.tmp"
    stale.write_bytes(b"half a checkpoint")
    rc, err = run(capsys, "train", "coco-mini-hrnet", *TINY, "--work-dir", wd, "--resume", "auto", "--no-progress")
    assert rc == 0, err
    assert not stale.exists() and (wd / "last.pth").is_file()


def test_train_resume_checkpoint_of_another_experiment(tmp_path, monkeypatch, capsys):
    wd = _tiny_run(tmp_path, monkeypatch, capsys)
    other = sum((["--set", s] for s in support.tiny_overrides(**{"train.epochs": 1, "train.val_interval": 0,
                                                                   "optim.lr": 0.5})), [])
    rc, err = run(capsys, "train", "coco-mini-hrnet", *other, "--work-dir", tmp_path / "w2", "--resume",
                  wd / "last.pth", "--no-progress")
    assert_user_error(rc, err, str(wd / "last.pth"), "experiment 'coco-mini-hrnet' with another config")


def _flip_a_weight_bit(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor record of a torch zip file."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    pos = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    raw[pos] ^= 0x10
    path.write_bytes(bytes(raw))


def test_flipped_bit_in_a_checkpoint_is_refused(tmp_path, monkeypatch, capsys):
    wd = _tiny_run(tmp_path, monkeypatch, capsys)
    _flip_a_weight_bit(wd / "last.pth")
    rc, err = run(capsys, "test", "coco-mini-hrnet", *TINY, "--checkpoint", wd / "last.pth", "--results-root",
                  tmp_path / "r", "--no-progress")
    assert_user_error(rc, err, str(wd / "last.pth"))
    assert "checksum mismatch" in err or "truncated or corrupt" in err
    rc, err = run(capsys, "train", "coco-mini-hrnet", *TINY, "--work-dir", wd, "--resume", "auto", "--no-progress")
    assert_user_error(rc, err, str(wd / "last.pth"))
    assert not (tmp_path / "r").exists()


def test_checkpoint_with_nan_weights(tmp_path, monkeypatch, capsys):
    wd = _tiny_run(tmp_path, monkeypatch, capsys)
    from harness.engine.checkpoint import atomic_save

    ckpt = torch.load(wd / "last.pth", weights_only=True)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][key] = torch.full_like(ckpt["model"][key], float("nan"))
    atomic_save(ckpt, wd / "nan.pth")
    rc, err = run(capsys, "test", "coco-mini-hrnet", *TINY, "--checkpoint", wd / "nan.pth", "--no-progress",
                  "--results-root", tmp_path / "r")
    assert_user_error(rc, err, "nan.pth", "checkpoint has non-finite weights", key)
    # a foreign weights file with NaN says the same, through load_weights
    torch.save({"state_dict": ckpt["model"]}, tmp_path / "foreign.pth")
    rc, err = run(capsys, "test", "coco-mini-hrnet", *TINY, "--checkpoint", tmp_path / "foreign.pth",
                  "--no-progress", "--results-root", tmp_path / "r")
    assert_user_error(rc, err, "foreign.pth", "checkpoint has non-finite weights")


@pytest.fixture
def hrformer_weights(tmp_path) -> Path:
    from harness import create_pose_model

    path = tmp_path / "hrformer-demo.pth"
    torch.save({"state_dict": create_pose_model("hrformer-demo").state_dict()}, path)
    return path


def test_test_and_evaluate_with_another_models_weights(tmp_path, monkeypatch, capsys, hrformer_weights):
    support.install(monkeypatch, model="real")
    rc, err = run(capsys, "test", "coco-mini-hrnet", "--checkpoint", hrformer_weights, "--no-progress",
                  "--results-root", tmp_path / "r")
    assert_user_error(rc, err, str(hrformer_weights), "does not fit hrnet-demo")
    rc, err = run(capsys, "evaluate", "hrnet-demo", "--checkpoint", hrformer_weights, "--data", "ochuman",
                  "--data-root", tmp_path, "--boxes", "gt", "--input-size", "64x48", "--no-progress",
                  "--results-root", tmp_path / "r")
    assert_user_error(rc, err, str(hrformer_weights), "does not fit hrnet-demo")
    rc, err = run(capsys, "test", "coco-mini-hrnet", "--checkpoint", tmp_path, "--no-progress")
    assert_user_error(rc, err, "--checkpoint", "is a directory")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------ images and annotations


@pytest.mark.parametrize("damage,names", [
    ("missing", ["image ", "file not found"]),
    ("corrupt", ["image ", "cannot decode"]),
    ("directory", ["image ", "is a directory"]),
])
def test_bad_image_during_test_and_train(synth, tmp_path, monkeypatch, capsys, damage, names):
    from harness import create_pose_model

    root = _copy(synth, tmp_path)
    for split in ("train", "val"):
        for img in sorted((root / split).glob("*.jpg")):
            img.unlink()
            if damage == "corrupt":
                img.write_bytes(b"\x89PNG not really")
            elif damage == "directory":
                img.mkdir()
    weights = tmp_path / "hrnet-demo.pth"
    torch.save(create_pose_model("hrnet-demo").state_dict(), weights)
    common = ["--set", f"data.root={root}", "--set", "data.input_size=64x48", "--set", "eval.boxes=gt",
              "--set", "eval.batch_size=2", "--set", "train.batch_size=2", "--no-progress"]
    rc, err = run(capsys, "test", "demo-hrnet", "--checkpoint", weights, "--results-root", tmp_path / "r", *common)
    assert_user_error(rc, err, str(root / "val"), *names)
    rc, err = run(capsys, "train", "demo-hrnet", "--work-dir", tmp_path / "w", "--set", "train.epochs=1", *common)
    assert_user_error(rc, err, str(root / "train"), *names)


@pytest.mark.parametrize("mutate,names", [
    (lambda d: d["annotations"][0].__setitem__("id", [1, 2]), ["annotations[0].id", "is not an integer"]),
    (lambda d: d["images"][0].__setitem__("id", {"x": 1}), ["images[0].id", "is not an integer"]),
    (lambda d: d["images"][0].__setitem__("file_name", 42), ["images[0].file_name", "42 is not a file name"]),
    (lambda d: d["images"][0].__setitem__("file_name", "../../../etc/hostname"), ["images[0].file_name", "outside"]),
])
def test_bad_annotation_file_in_training_and_evaluation(synth, tmp_path, capsys, mutate, names):
    root = _copy(synth, tmp_path)
    ann = root / "annotations" / "person_keypoints_train.json"
    d = json.loads(ann.read_text())
    mutate(d)
    ann.write_text(json.dumps(d))
    rc, err = run(capsys, "train", "demo-hrnet", "--set", f"data.root={root}", "--work-dir", tmp_path / "w",
                  "--no-progress")
    assert_user_error(rc, err, str(ann), *names)
    preds = tmp_path / "p.json"
    preds.write_text("[]")
    rc, err = run(capsys, "evaluate-predictions", "--ann", ann, "--preds", preds)
    assert_user_error(rc, err, str(ann), *names)


def test_data_check_fails_a_split_without_usable_instances(synth, tmp_path, capsys):
    root = _copy(synth, tmp_path)
    ann = root / "annotations" / "person_keypoints_val.json"
    d = json.loads(ann.read_text())
    for a in d["annotations"]:
        a["iscrowd"] = 1
    ann.write_text(json.dumps(d))
    rc = main(["data", "check", "synthetic", "--root", str(root), "--split", "val"])
    out = capsys.readouterr().out
    assert rc == 1 and "[synthetic/val] PROBLEMS" in out and "no usable person instance" in out


# ------------------------------------------------------------------------------ configs, models, devices


def test_unknown_model_name_and_override(tmp_path, capsys):
    rc, err = run(capsys, "train", "coco-mini-hrnet", "--set", "model.name=hrnet-w99", "--work-dir", tmp_path / "a",
                  "--no-progress")
    assert_user_error(rc, err, "model.name", "unknown model 'hrnet-w99'", "hrnet-w32")
    rc, err = run(capsys, "train", "coco-mini-hrnet", "--set", "model.overrides.bogus=1", "--work-dir",
                  tmp_path / "b", "--no-progress")
    assert_user_error(rc, err, "model.overrides", "bogus")


def test_device_cuda_without_a_gpu(tmp_path, monkeypatch, capsys, hrformer_weights):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    support.install(monkeypatch)
    rc, err = run(capsys, "train", "coco-mini-hrnet", *TINY, "--work-dir", tmp_path / "w", "--device", "cuda")
    assert_user_error(rc, err, "--device", "no CUDA device")
    rc, err = run(capsys, "test", "coco-mini-hrnet", "--checkpoint", hrformer_weights, "--device", "cuda")
    assert_user_error(rc, err, "--device", "no CUDA device")


def test_models_unknown_name(capsys):
    rc, err = run(capsys, "models", "hrnet-w99")
    assert_user_error(rc, err, "models", "unknown model 'hrnet-w99'", "hrnext-s")


@pytest.mark.parametrize("text,names", [
    ("[1, 2]", ["cfg.json", "a JSON object, got a list"]),
    ("{not json", ["cfg.json", "not valid JSON"]),
    ('{"name": "x"}', ["cfg.json", "model"]),
])
def test_config_file_that_is_not_a_config(tmp_path, capsys, text, names):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(text)
    rc, err = run(capsys, "train", cfg, "--print-config")
    assert_user_error(rc, err, *names)


@pytest.mark.parametrize("size", ["abc", "256", "256x0", "255x192", "1.5x2"])
def test_evaluate_input_size(tmp_path, capsys, size):
    rc, err = run(capsys, "evaluate", "hrnet-demo", "--checkpoint", tmp_path / "w.pth", "--data", "coco",
                  "--data-root", tmp_path, "--input-size", size)
    assert_user_error(rc, err, "--input-size", repr(size) if not size[0].isdigit() or "x" not in size else "")


# ------------------------------------------------------------------------------ output paths (before the work)


def test_output_paths_are_checked_before_the_work(tmp_path, monkeypatch, capsys):
    from harness.eval import coco_eval

    def boom(*a, **k):  # the evaluation must not even start
        raise AssertionError("evaluated before the output path was checked")

    monkeypatch.setattr(coco_eval, "evaluate", boom)
    ann = COCO_SAMPLES / "test_coco.json"
    rc, err = run(capsys, "evaluate-predictions", "--ann", ann, "--preds", tmp_path / "p.json", "--json", tmp_path)
    assert_user_error(rc, err, "--json", "is a directory")
    rc, err = run(capsys, "evaluate-predictions", "--ann", ann, "--preds", tmp_path / "p.json", "--json",
                  tmp_path / "typo" / "deeper" / "m.json")
    assert_user_error(rc, err, "--json", "does not exist")
    assert not (tmp_path / "typo").exists()  # no tree created
    rc, err = run(capsys, "data", "check", "coco", "--root", tmp_path, "--json", tmp_path)
    assert_user_error(rc, err, "--json", "is a directory")


def test_table_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    rc, err = run(capsys, "table", "coco", "--no-live", "--out", f)
    assert_user_error(rc, err, "--out", "is a file, not a folder")
    rc, err = run(capsys, "figures", "--out", f)
    assert_user_error(rc, err, "--out", "is a file, not a folder")
    rc, err = run(capsys, "table", "coco", "--no-live", "--out", tmp_path / "a" / "b" / "c")
    assert_user_error(rc, err, "--out", "does not exist")
    assert not (tmp_path / "a").exists()


def test_synth_root_unwritable(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    rc, err = run(capsys, "synth", "--root", f / "data", "--train", "1", "--val", "1", "--occluded", "0")
    assert_user_error(rc, err, "--root", "is not a folder")
    rc, err = run(capsys, "synth", "--root", "/proc/hrbench-synth", "--train", "1", "--val", "1", "--occluded", "0")
    assert_user_error(rc, err, "--root", "/proc/hrbench-synth")


# ------------------------------------------------------------------------------ the error path itself


def test_verbose_shows_the_traceback_and_bugs_keep_theirs(capsys, monkeypatch):
    rc = main(["-v", "models", "hrnet-w99"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and "error: models: unknown model" in err
    from harness.commands import models

    def bug(args):
        raise ZeroDivisionError("a bug in hrbench")

    monkeypatch.setattr(models, "run", bug)
    with pytest.raises(ZeroDivisionError):  # an internal error is not dressed up as a user error
        main(["models", "hrnet-w32"])


def test_worker_traceback_is_not_shown():
    """A DataLoader worker re-raises ImageError with the worker's traceback in its message."""
    msg = ("Caught ImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
           '  File "x.py", line 1, in f\nharness.errors.ImageError: image /d/a.jpg: cannot decode\n')
    assert user_message(ImageError(msg)) == "image /d/a.jpg: cannot decode"
    assert user_message(HrbenchError("plain", file="f.json", field="x")) == "f.json: x: plain"


@pytest.mark.parametrize("argv,names", [
    (["models", "nope"], ["models", "nope"]),
    (["train", "no-such-experiment"], ["experiment", "no-such-experiment"]),
    (["train", "coco-mini-hrnet", "--set", "train.epochs=-1", "--print-config"], ["train.epochs"]),
    (["test", "coco-mini-hrnet", "--checkpoint", "/nonexistent/w.pth"], ["--checkpoint", "/nonexistent/w.pth"]),
    (["evaluate", "hrnet-demo", "--checkpoint", "w.pth", "--data", "coco", "--data-root", ".", "--input-size", "x"],
     ["--input-size"]),
    (["evaluate-predictions", "--ann", "/nonexistent/a.json", "--preds", "p.json"], ["--ann", "/nonexistent/a.json"]),
    (["synth", "--root", "/proc/x/y", "--train", "1"], ["--root"]),
    (["table", "coco", "--no-live", "--out", "/etc/hostname"], ["--out"]),
    (["figures", "--out", "/etc/hostname"], ["--out"]),
    (["visualize", "--preds", "nonsense"], ["--preds", "MODEL=PATH"]),
    (["ablate", "no-such-ablation"], ["no-such-ablation"]),
])
def test_every_command_reports_bad_input_in_one_line(capsys, argv, names):
    rc, err = run(capsys, *argv)
    assert_user_error(rc, err, *names)


@pytest.mark.parametrize("argv,names", [
    (["models", "hrnet-w99"], ["unknown model 'hrnet-w99'"]),
    (["evaluate", "hrnet-demo", "--checkpoint", "w.pth", "--data", "coco", "--data-root", ".", "--input-size", "abc"],
     ["--input-size: expected HxW such as 256x192, got 'abc'"]),
])
def test_real_process(argv, names):
    """Two real ``python -m harness`` processes: stderr and exit status as a shell sees them."""
    p = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert_user_error(p.returncode, p.stderr, *names)
