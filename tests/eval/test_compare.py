"""`compare` on prediction files and on finished runs; `test --breakdown` records; breakdown tables/figure."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli import main
from support.paths import COCO_MINI, RESULTS, SHARED, MMPOSE_REF as REF

pytestmark = pytest.mark.usefixtures("one_thread")

OCH = SHARED / "data" / "ochuman-samples" / "test_ochuman.json"


def test_compare_prediction_files(tmp_path, capsys):
    out = tmp_path / "cmp.json"
    rc = main(["compare", "--ann", str(OCH), "--dataset", "ochuman", "--preds", str(REF / "ochuman__noise0.02.json"),
               str(REF / "ochuman__noise0.08.json"), str(REF / "ochuman__noise0.02.json"), "--names", "good", "bad",
               "same", "--baseline", "good", "--resamples", "100", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "sign flips" in text and "bad − good" in text
    res = json.loads(out.read_text())
    diffs = {(d["a"], d["b"]): d for d in res["diffs"]}
    assert set(diffs) == {("bad", "good"), ("same", "good")}
    same = diffs[("same", "good")]
    assert same["diff"] == same["lo"] == same["hi"] == 0 and same["sign_flip"] == 0
    assert diffs[("bad", "good")]["diff"] == pytest.approx(0.3198 - 0.7657, abs=1e-3)
    assert res["models"]["good"]["lo"] <= res["models"]["good"]["value"] <= res["models"]["good"]["hi"]


def test_compare_bad_input(tmp_path, capsys):
    assert main(["compare", "--ann", str(OCH), "--preds", str(REF / "ochuman__gt.json")]) == 1
    assert "at least two" in capsys.readouterr().err
    assert main(["compare", "--preds", str(REF / "ochuman__gt.json"), str(REF / "ochuman__gt.json")]) == 1
    assert "--ann is required" in capsys.readouterr().err
    rec = tmp_path / "old.json"
    rec.write_text("{}")
    assert main(["compare", "--runs", str(rec), str(rec)]) == 1
    assert "run record" in capsys.readouterr().err


def _checkpoint(tmp_path: Path, seed: int) -> Path:
    from harness import create_pose_model

    torch.manual_seed(seed)
    path = tmp_path / f"w{seed}.pth"
    torch.save(create_pose_model("hrnet-demo").state_dict(), path)
    return path


@pytest.mark.slow
def test_test_breakdown_records_then_compare_runs_and_tables(tmp_path, capsys):
    runs = tmp_path / "results" / "runs"
    recs = []
    for seed in (0, 1):
        rc = main(["test", "coco-mini-hrnet", "--checkpoint", str(_checkpoint(tmp_path, seed)), "--set",
                   f"data.root={COCO_MINI}", "--set", f"train.seed={seed}", "--split", "val", "--breakdown",
                   "occlusion", "--results-root", str(runs), "--no-progress"])
        assert rc == 0, capsys.readouterr().err
        new = sorted(set(runs.rglob("*.json")) - set(recs))
        assert len(new) == 1
        recs += new
    rec = json.loads(recs[0].read_text())
    assert [a["attribute"] for a in rec["breakdown"]["attributes"]] == ["overlaps", "num_keypoints"]
    pred = recs[0].parent / rec["predictions"]["file"]
    assert pred.name.endswith(".keypoints.json.gz") and pred.is_file()
    assert rec["predictions"]["ann_file"].endswith("person_keypoints_val2017.json")
    capsys.readouterr()
    out = tmp_path / "cmp.json"
    assert main(["compare", "--runs", str(recs[0]), str(recs[1]), "--resamples", "50", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    # The identity resample of the stored predictions reproduces each record's AP.
    for r, m in zip(recs, res["models"].values()):
        assert m["value"] == pytest.approx(json.loads(r.read_text())["metrics"]["AP"], abs=1e-12)
    # Tables: the two seeds pool into one row (n=2); the figure is written.
    from harness.report.breakdown import make_breakdown_figure, make_breakdown_table

    table = make_breakdown_table("coco", tmp_path / "results", tmp_path / "tables", echo=False)
    row = table[table["Source"].str.startswith("measured")]
    assert len(row) == 1 and int(row["n"].iloc[0]) == 2 and "(n=2)" in row["AP"].iloc[0]
    assert (tmp_path / "tables" / "coco_breakdown.md").is_file()
    files = make_breakdown_figure("coco", tmp_path / "results", tmp_path / "figures")
    assert [f.suffix for f in files] == [".png", ".pdf"] and all(f.stat().st_size > 1000 for f in files)
    # Interval table: both runs with ± and the second's difference from the first; a pooled seed row.
    from harness.report.breakdown import make_interval_table

    it = make_interval_table("coco", tmp_path / "results", tmp_path / "tables", resamples=50, echo=False)
    assert list(it["n"]) == [1, 1, 2]
    assert it.iloc[0]["Δ AP vs HRNet-DEMO"] == "baseline" and it.iloc[1]["Δ AP vs HRNet-DEMO"].startswith(("+", "-"))
    assert "(n=2)" in it.iloc[2]["AP"] and float(it.iloc[0]["± (95%)"]) >= 0


def test_breakdown_table_lists_reported_rows_without_numbers(tmp_path):
    from harness.report.breakdown import make_breakdown_table

    table = make_breakdown_table("ochuman", RESULTS, tmp_path, echo=False)
    reported = table[table["Source"].str.startswith("reported")]
    assert len(reported) > 0 and reported["Source"].str.endswith("no breakdown").all()
    assert "No measured run on ochuman has a breakdown yet" in (tmp_path / "ochuman_breakdown.md").read_text() or \
        (table["Source"].str.startswith("measured")).any()


def test_seed_pooling():
    from harness.report.seeds import mean_std

    m, s, n = mean_std([0.2, 0.4, None])
    assert (m, n) == (pytest.approx(0.3), 2) and s == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert mean_std([0.5]) == (0.5, 0.0, 1)


def test_record_breakdown_and_predictions_are_validated():
    from harness.results.schema import RecordError, RunRecord

    base = dict(model="hrnet-demo", family="hrnet", experiment="x", dataset="coco", split="val", boxes="gt",
                input_size=[64, 48], metrics={"AP": 0.5}, params=10, recipe="demo", pretrain="none",
                config_hash="abcdef123", seed=0)
    ok = {"kind": "occlusion", "attributes": [{"attribute": "overlaps", "bins": [
        {"bin": "0", "people": 3, "AP": 0.4, "AR": 0.5}, {"bin": "3+", "people": 0, "AP": None}]}]}
    RunRecord.from_dict({**base, "breakdown": ok, "predictions": {"file": "predictions/a.keypoints.json.gz",
                                                                   "ann_file": "/x/ann.json"}})
    bad = {"kind": "occlusion", "attributes": [{"attribute": "overlaps", "bins": [{"bin": "0", "people": 3, "AP": 40.0}]}]}
    with pytest.raises(RecordError, match=r"breakdown.attributes\[0\].bins\[0\].AP"):
        RunRecord.from_dict({**base, "breakdown": bad})
    with pytest.raises(RecordError, match="'predictions'"):
        RunRecord.from_dict({**base, "predictions": {"file": "a.json.gz"}})
