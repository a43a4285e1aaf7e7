"""Run records: validation, atomic unique writes, and the loader that never drops a bad file silently."""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.results import COLUMNS, RecordError, ResultsError, RunRecord, load_results, write_record
from harness.results import store
from support.paths import REPO, FIXTURES as _FIXTURES

FIXTURES = _FIXTURES / "records"


def good_record(**over) -> dict:
    rec = {
        "model": "hrnet-w32", "family": "hrnet", "experiment": "baseline", "dataset": "coco", "split": "val2017",
        "boxes": "det", "input_size": [256, 192],
        "metrics": {"AP": 0.731, "AP .5": 0.89, "AP .75": 0.80, "AP (M)": 0.70, "AP (L)": 0.79, "AR": 0.78},
        "params": 28_536_785, "gflops": 7.12, "recipe": "hrbench-coco-210e", "pretrain": "imagenet",
        "config_hash": "0123abcd4567ef89", "seed": 3, "git_commit": "deadbeef", "hardware": {"device": "cpu"},
        "date": "2026-11-20T10:30:00+00:00", "checkpoint": None, "extra": {"epochs": 210},
    }
    rec.update(over)
    return rec


def fixture_root(tmp_path: Path) -> Path:
    """reported/ from the repo plus the fixture runs/ and profiles/."""
    root = tmp_path / "results"
    shutil.copytree(REPO / "results" / "reported", root / "reported")
    shutil.copytree(FIXTURES / "runs", root / "runs")
    shutil.copytree(FIXTURES / "profiles", root / "profiles")
    return root


# ------------------------------------------------------------------------------------------ writer


def test_write_record_round_trip(tmp_path):
    path = write_record(good_record(), root=tmp_path / "runs")
    assert path.parent == tmp_path / "runs" / "coco" / "hrnet-w32"
    assert re.fullmatch(rf"20261120T103000_0123abcd_{os.getpid()}_[0-9a-f]{{6}}\.json", path.name)
    on_disk = json.loads(path.read_text())
    assert on_disk["schema_version"] == 1 and on_disk["kind"] == "measured"
    assert on_disk["family"] == "HRNet"  # canonical spelling
    assert on_disk["metrics"]["AP"] == 0.731 and on_disk["input_size"] == [256, 192]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind

    df = load_results(tmp_path, strict=True)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["kind"] == "measured" and row["display_name"] == "HRNet-W32"
    assert (row["input_h"], row["input_w"], row["params"], row["seed"]) == (256, 192, 28_536_785, 3)
    assert row["params_m"] == pytest.approx(28.536785)
    assert row["AP"] == 0.731 and math.isnan(row["AR .5"])
    assert row["hardware"] == "device=cpu" and row["file"] == str(path)
    assert row["date"] == pd.Timestamp("2026-11-20T10:30:00Z")


def test_numpy_scalars_are_accepted_and_stored_as_plain_numbers(tmp_path):
    rec = good_record(params=np.int64(28_536_785), gflops=np.float32(7.5), seed=np.int32(1),
                      metrics={"AP": np.float32(0.5), "AR": np.float64(0.625)}, input_size=[np.int64(256), 192])
    data = json.loads(write_record(rec, root=tmp_path).read_text())
    assert (data["params"], data["gflops"], data["seed"], data["input_size"]) == (28_536_785, 7.5, 1, [256, 192])
    assert data["metrics"] == {"AP": 0.5, "AR": 0.625}


def test_optional_fields_get_defaults(tmp_path):
    rec = good_record()
    for k in ("gflops", "git_commit", "hardware", "date", "checkpoint", "extra"):
        del rec[k]
    data = json.loads(write_record(rec, root=tmp_path).read_text())
    assert data["gflops"] is None and data["extra"] == {} and data["checkpoint"] is None
    assert pd.Timestamp(data["date"]).tzinfo is not None


def test_concurrent_writes_never_collide(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: write_record(good_record(), root=tmp_path), range(32)))
    assert len(set(paths)) == 32
    assert sorted(p.name for p in (tmp_path / "coco" / "hrnet-w32").iterdir()) == sorted(p.name for p in paths)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_record(good_record(), root=tmp_path)
    assert list((tmp_path / "coco" / "hrnet-w32").iterdir()) == []


@pytest.mark.parametrize(
    "change, field",
    [
        ({"boxes": "detector"}, "boxes"),
        ({"input_size": [256]}, "input_size"),
        ({"input_size": [256, -192]}, "input_size"),
        ({"input_size": [256.0, 192]}, "input_size"),
        ({"metrics": {"AP": 73.1}}, "metrics.AP"),
        ({"metrics": {"AP": float("nan")}}, "metrics.AP"),
        ({"metrics": {"AR": 0.7}}, "metrics"),  # AP is required
        ({"metrics": {"AP": 0.7, "AP50": 0.9}}, "metrics"),  # not an mmpose name
        ({"params": True}, "params"),
        ({"params": 0}, "params"),
        ({"gflops": -1.0}, "gflops"),
        ({"pretrain": "in1k"}, "pretrain"),
        ({"model": "HRNet W32"}, "model"),
        ({"dataset": "../coco"}, "dataset"),
        ({"config_hash": "abc"}, "config_hash"),
        ({"seed": "0"}, "seed"),
        ({"date": "yesterday"}, "date"),
        ({"kind": "reported"}, "kind"),
        ({"schema_version": 2}, "schema_version"),
        ({"extra": []}, "extra"),
    ],
)
def test_invalid_fields_are_named(tmp_path, change, field):
    with pytest.raises(RecordError, match=re.escape(f"field {field!r}")):
        write_record(good_record(**change), root=tmp_path)
    assert not tmp_path.joinpath("coco").exists()


def test_missing_and_unknown_fields(tmp_path):
    rec = good_record()
    del rec["seed"], rec["recipe"]
    with pytest.raises(RecordError, match=r"partial record: missing field\(s\) \['recipe', 'seed'\]"):
        write_record(rec, root=tmp_path)
    with pytest.raises(RecordError, match=r"unknown field\(s\) \['accuracy'\]"):
        write_record(good_record(accuracy=0.7), root=tmp_path)
    with pytest.raises(RecordError, match="field 'extra': not JSON-serialisable"):
        write_record(good_record(extra={"when": object()}), root=tmp_path)
    with pytest.raises(RecordError, match="expected a JSON object"):
        RunRecord.from_dict([1, 2])


def test_minus_one_metric_is_no_ground_truth(tmp_path):
    write_record(good_record(metrics={"AP": 0.6, "AP (M)": -1}), root=tmp_path / "runs")
    df = load_results(tmp_path, strict=True)
    assert df.loc[0, "AP"] == 0.6 and math.isnan(df.loc[0, "AP (M)"])


# ------------------------------------------------------------------------------------------ loader


def test_load_fixture_records_reports_each_bad_file(tmp_path, caplog):
    root = fixture_root(tmp_path)
    with caplog.at_level(logging.WARNING, logger="harness.results.store"):
        df = load_results(root)
    assert list(df.columns) == list(COLUMNS)
    assert df["kind"].value_counts().to_dict() == {"reported": 20, "profile": 5, "measured": 4}
    bad = {Path(b["file"]).relative_to(root).as_posix(): b["reason"] for b in df.attrs["bad_files"]}
    assert sorted(bad) == [
        "runs/coco/hrformer-b/20261105T080000_e5f60718_4246_4d5e6f.json",
        "runs/coco/hrnet-w48/20261107T080000_07182930_4248_6f7081.json",
        "runs/ochuman/hrnext-b/20261106T080000_f6071829_4247_5e6f70.json",
    ]
    assert bad["runs/coco/hrformer-b/20261105T080000_e5f60718_4246_4d5e6f.json"].startswith("invalid JSON at line")
    assert "field 'metrics.AP'" in bad["runs/coco/hrnet-w48/20261107T080000_07182930_4248_6f7081.json"]
    assert bad["runs/ochuman/hrnext-b/20261106T080000_f6071829_4247_5e6f70.json"] == (
        "partial record: missing field(s) ['metrics']")
    # One warning names every bad file and its reason.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3 malformed result file(s)" in warnings[0]
    for rel, reason in bad.items():
        assert f"{root / rel}: {reason}" in warnings[0]

    measured = df[df["kind"] == "measured"].set_index(["dataset", "model"])
    assert measured.loc[("coco", "hrnext-s"), "AP"] == 0.748
    assert measured.loc[("crowdpose", "hrnet-w32"), "AP(H)"] == 0.574
    assert math.isnan(measured.loc[("ochuman", "hrformer-s"), "gflops"])  # recorded as null
    assert math.isnan(measured.loc[("ochuman", "hrformer-s"), "AP (M)"])  # recorded as -1
    prof = df[df["kind"] == "profile"].set_index("model")
    assert prof.loc["hrformer-s", "gflops"] == 2.84  # the paper convention wins over fvcore's 2.7
    assert prof.loc["hrformer-s", "gflops_fvcore"] == 2.7
    assert str(df["input_h"].dtype) == "Int64" and str(df["date"].dtype).startswith("datetime64")


def test_strict_raises_naming_every_bad_file(tmp_path):
    root = fixture_root(tmp_path)
    with pytest.raises(ResultsError) as err:
        load_results(root, strict=True)
    assert len(err.value.bad_files) == 3
    for b in err.value.bad_files:
        assert b["file"] in str(err.value)


def test_bad_reported_csv_and_profile_are_reported(tmp_path):
    root = tmp_path
    (root / "reported").mkdir()
    src = (REPO / "results" / "reported" / "hrnext_tmm2023_coco_val2017.csv").read_text().splitlines()
    (root / "reported" / "typo.csv").write_text("\n".join([src[0], src[1].replace("0.734", "0,734")]) + "\n")
    (root / "reported" / "nokind.csv").write_text(
        "\n".join([src[0].replace(",kind", ""), src[1].rsplit(",", 1)[0]]) + "\n")
    (root / "reported" / "percent.csv").write_text("\n".join([src[0], src[1].replace("0.734", "73.4")]) + "\n")
    (root / "profiles").mkdir()
    (root / "profiles" / "noflops.json").write_text(json.dumps(
        {"schema_version": 1, "kind": "profile", "model": "hrnet-w32", "input_size": [256, 192], "params": 10}))
    (root / "profiles" / "latin1.json").write_bytes(b'{"model": "caf\xe9"}')
    df = load_results(root)
    assert df.empty and list(df.columns) == list(COLUMNS)
    reasons = {Path(b["file"]).name: b["reason"] for b in df.attrs["bad_files"]}
    assert reasons["nokind.csv"] == "missing column(s) ['kind']"
    assert reasons["percent.csv"] == "line 2: column 'AP': 73.4 is outside [0, 1]"
    assert reasons["typo.csv"] == "line 2: 20 cells, the header has 19"
    assert "gflops_fvcore" in reasons["noflops.json"]
    assert reasons["latin1.json"].startswith("not UTF-8")


def test_empty_or_missing_root_gives_empty_frame(tmp_path):
    df = load_results(tmp_path / "nothing-here", strict=True)
    assert df.empty and list(df.columns) == list(COLUMNS) and df.attrs["bad_files"] == []
