"""Where each number of a comparison table comes from: reported citations, measured recipes' sources, and
other sources' published figures where they differ from the reported ones (issue 13); free text in a
record never breaks a Markdown row (issue 15)."""
from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

from harness.errors import ResultsError
from harness.report.tables import make_table
from harness.results import load_results, write_record
from support.paths import RESULTS

OTHER = RESULTS / "reported" / "other_sources" / "coco_val2017.csv"
HRNET_AUTHORS = "leoxiaobin/deep-high-resolution-net.pytorch@6f69e46:README.md line 40"
MMPOSE_HRNET = "open-mmlab/mmpose@759b39c:configs/body_2d_keypoint/topdown_heatmap/coco/hrnet_coco.md line 40"

# AP and AR as printed in each source's COCO val2017 table (detector boxes), typed independently of the CSV:
# (model, H, W, source, AP, AR, commit prefix, path, line).
READ = """
hrnet-w32 256 192 HRNet 0.744 0.798 6f69e46 README.md 40
hrnet-w32 384 288 HRNet 0.758 0.809 6f69e46 README.md 41
hrnet-w48 256 192 HRNet 0.751 0.804 6f69e46 README.md 42
hrnet-w48 384 288 HRNet 0.763 0.812 6f69e46 README.md 43
hrnet-w32 256 192 mmpose 0.749 0.804 759b39c configs/body_2d_keypoint/topdown_heatmap/coco/hrnet_coco.md 40
hrnet-w32 384 288 mmpose 0.761 0.811 759b39c configs/body_2d_keypoint/topdown_heatmap/coco/hrnet_coco.md 41
hrnet-w48 256 192 mmpose 0.756 0.809 759b39c configs/body_2d_keypoint/topdown_heatmap/coco/hrnet_coco.md 42
hrnet-w48 384 288 mmpose 0.767 0.817 759b39c configs/body_2d_keypoint/topdown_heatmap/coco/hrnet_coco.md 43
hrformer-s 256 192 HRFormer 0.740 0.794 1245b88 README.md 28
hrformer-s 384 288 HRFormer 0.756 0.807 1245b88 README.md 29
hrformer-b 256 192 HRFormer 0.756 0.808 1245b88 README.md 30
hrformer-b 384 288 HRFormer 0.772 0.820 1245b88 README.md 31
hrformer-s 256 192 mmpose 0.738 0.793 759b39c configs/body_2d_keypoint/topdown_heatmap/coco/hrformer_coco.md 40
hrformer-s 384 288 mmpose 0.757 0.807 759b39c configs/body_2d_keypoint/topdown_heatmap/coco/hrformer_coco.md 41
hrformer-b 256 192 mmpose 0.754 0.807 759b39c configs/body_2d_keypoint/topdown_heatmap/coco/hrformer_coco.md 42
hrformer-b 384 288 mmpose 0.774 0.823 759b39c configs/body_2d_keypoint/topdown_heatmap/coco/hrformer_coco.md 43
hrnext-s 256 192 HRNeXt 0.761 0.813 8bbbb0f README.md 30
hrnext-b 384 288 HRNeXt 0.770 0.820 8bbbb0f README.md 31
"""


def live(model: str, hw: tuple[int, int]) -> dict:
    return {"params": 1_000_000, "gflops": 1.0}


@pytest.fixture()
def clone(tmp_path) -> Path:
    """A results root holding what git holds (reported tables and other sources' figures)."""
    root = tmp_path / "results"
    shutil.copytree(RESULTS / "reported", root / "reported")
    return root


def record(**kw) -> dict:
    rec = dict(model="hrnet-w32", family="HRNet", experiment="hrnet-w32-paper", dataset="coco", split="val2017",
               boxes="det", input_size=[256, 192], metrics={"AP": 0.741, "AR": 0.795}, params=28_536_785,
               recipe="paper", pretrain="imagenet", config_hash="0123456789abcdef", seed=0,
               date="2026-11-20T10:00:00+00:00")
    return {**rec, **kw}


def test_committed_other_sources_are_what_was_read():
    with open(OTHER, newline="", encoding="utf-8") as f:
        got = {(r["model"], int(r["input_h"]), int(r["input_w"]), r["source"].split()[0], r["metric"]): r
               for r in csv.DictReader(f)}
    expected = [line.split() for line in READ.strip().splitlines()]
    assert len(got) == 2 * len(expected)
    for model, h, w, who, ap, ar, commit, path, line in expected:
        for metric, value in (("AP", ap), ("AR", ar)):
            r = got[(model, int(h), int(w), who, metric)]
            assert (r["value"], r["commit"][:7], r["path"], r["line"]) == (value, commit, path, line)
            assert len(r["commit"]) == 40 and (r["dataset"], r["split"], r["boxes"]) == ("coco", "val2017", "det")


def test_hrnet_w32_note_names_the_three_figures_and_their_sources(clone, tmp_path):
    t = make_table("coco", clone, tmp_path, live_profile=live, echo=False)
    assert t.iloc[0][["Backbone", "Input", "AP"]].tolist() == ["HRNet-W32", "256x192", 0.734]  # paper's, kept
    (note,) = [d for d in t.attrs["disagreements"] if d.startswith("HRNet-W32 256×192 AP:")]
    assert note == (f"HRNet-W32 256×192 AP: reported [1] 0.734; HRNet authors 0.744 ({HRNET_AUTHORS}); "
                    f"mmpose 1.x model zoo 0.749 ({MMPOSE_HRNET})")
    # Rows where every source prints the reported figure get no line (HRNeXt's README = the paper).
    assert not [d for d in t.attrs["disagreements"] if d.startswith(("HRNeXt", "HRFormer-S 384×288 AR"))]
    md = (tmp_path / "coco.md").read_text()
    assert "[1] Zhang et al., HRNeXt" in md and f"- {note}\n" in md
    assert md.index("| HRNeXt-B |") < md.index("Published elsewhere with other figures")
    tex = (tmp_path / "coco.tex").read_text()
    assert r"mmpose 1.x model zoo 0.749 (open-mmlab/mmpose@759b39c:configs/body\_2d\_keypoint" in tex


def test_ochuman_table_has_no_coco_disagreements(clone, tmp_path):
    t = make_table("ochuman", clone, tmp_path, live_profile=live, echo=False)
    assert t.attrs["disagreements"] == []
    assert "Published elsewhere" not in (tmp_path / "ochuman.md").read_text()


def test_measured_recipe_source_is_a_footnote(clone, tmp_path):
    src = "leoxiaobin/deep-high-resolution-net.pytorch@6f69e46:experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml"
    write_record(record(source=src), root=clone / "runs")
    write_record(record(model="hrnet-w48", experiment="hrnet-w48-local", params=63_595_857), root=clone / "runs")
    t = make_table("coco", clone, tmp_path, live_profile=live, echo=False)
    assert t.attrs["sources"][1] == f"measured: hrnet-w32-paper (recipe paper from {src})"
    sources = dict(zip(t["Backbone"] + " " + t["Source"].str.split(" ").str[0], t["Source"]))
    assert sources["HRNet-W32 measured:"] == "measured: hrnet-w32-paper (seed 0, 2026-11-20) [2]"
    assert sources["HRNet-W48 measured:"] == "measured: hrnet-w48-local (seed 0, 2026-11-20)"  # no source: none
    md = (tmp_path / "coco.md").read_text()
    assert f"[2] measured: hrnet-w32-paper (recipe paper from {src})" in md
    assert "[3]" not in md


def test_pooled_seeds_keep_their_recipe_source(clone, tmp_path):
    src = ("open-mmlab/mmpose@759b39c:configs/body_2d_keypoint/topdown_heatmap/coco/"
           "td-hm_hrnet-w32_8xb64-210e_coco-256x192.py")
    for seed in (0, 1):
        write_record(record(experiment="hrnet-w32-mmpose", recipe="mmpose", source=src, seed=seed),
                     root=clone / "runs")
    t = make_table("coco", clone, tmp_path, live_profile=live, echo=False)
    assert t.attrs["sources"][1:] == [f"measured: hrnet-w32-mmpose (recipe mmpose from {src})"]
    assert t.iloc[1]["Source"] == "measured: hrnet-w32-mmpose (seeds 0, 1; mean ± std, n=2, 2026-11-20) [2]"


def _cells(line: str) -> int:
    """Cells of one Markdown table row: the unescaped pipes, less one."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_pipes_and_newlines_in_record_fields_keep_the_markdown_rows_intact(clone, tmp_path):
    """Issue 15, end to end: free text from a record goes through make_table and the writer's escaping."""
    write_record(record(experiment="w32 | lr\n1e-3", source="a|b@c:d\ne.py"), root=clone / "runs")
    t = make_table("coco", clone, tmp_path, live_profile=live, echo=False)
    md = (tmp_path / "coco.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + len(t) == 13  # header, rule, 10 reported + 1 measured rows: no row split in two
    assert {_cells(ln) for ln in table} == {len(t.columns)}
    (row,) = [ln for ln in table if "measured" in ln]
    assert row.endswith(r"| measured: w32 \| lr<br>1e-3 (seed 0, 2026-11-20) [2] |")
    tex = (tmp_path / "coco.tex").read_text()
    (tex_row,) = [ln for ln in tex.splitlines() if "measured" in ln and ln.endswith(r"\\")]
    assert tex_row.count("&") == len(t.columns) - 1


def test_malformed_other_sources_file_is_named(clone):
    bad = clone / "reported" / "other_sources" / "bad.csv"
    rows = OTHER.read_text().splitlines()
    cases = {
        "commit": (rows[1].replace("6f69e4676ad8d43d0d61b64b1b9726f0c369e7b1", "6f69e46"), "column 'commit'"),
        "metric": (rows[1].replace(",AP,", ",mAP,"), "column 'metric'"),
        "value": (rows[1].replace(",0.744,", ",74.4,"), "column 'value'"),
        "repeat": (rows[1] + "\n" + rows[1], "line 3: repeats line 2"),
        "cells": (rows[1] + ",x", "line 2: 14 cells"),
    }
    for name, (body, reason) in cases.items():
        bad.write_text(rows[0] + "\n" + body + "\n")
        df = load_results(clone)
        (b,) = df.attrs["bad_files"]
        assert b["file"] == str(bad) and reason in b["reason"], name
        assert len(df.attrs["other_sources"]) == len(rows) - 1  # the good file still loads
        with pytest.raises(ResultsError, match="bad.csv"):
            load_results(clone, strict=True)
    bad.write_text("model,dataset\nhrnet-w32,coco\n")
    (b,) = load_results(clone).attrs["bad_files"]
    assert "header must be" in b["reason"] and "'metric'" in b["reason"]
