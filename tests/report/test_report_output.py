"""The one table writer, label placer and plotter of harness.report, and the shared done marker."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from harness.io import read_marker, write_marker
from harness.report import experiments as rexp
from harness.report.labels import place_labels
from harness.report.plots import Segment, Series, draw_series, new_figure, save_figure
from harness.report.tabular import Column, Strong, Table, fmt_num, md_escape, tex_escape, tex_text


def _table(**kw) -> Table:
    cols = [Column("Name", "l"), Column("ΔAP", "r", r"$\Delta$AP"), Column("Note", "l")]
    rows = [["a|b", "+1.2 ± 0.3", "two\nlines"], [Strong("best_1"), "-", "50% & #1"]]
    return Table(cols, rows, title="T", label="t", notes=["n1", "n2"], **kw)


def test_markdown_escapes_pipes_and_newlines_and_keeps_rows_intact():
    md = _table().markdown()
    lines = md.splitlines()
    assert lines[:2] == ["### T", ""]
    assert lines[2] == "| Name | ΔAP | Note |" and lines[3] == "|:--|--:|:--|"
    assert lines[4] == r"| a\|b | +1.2 ± 0.3 | two<br>lines |"
    assert lines[5] == "| **best_1** | - | 50% & #1 |"
    # Every body row still has exactly one cell per column once escaped pipes are discounted.
    for row in lines[4:6]:
        assert row.replace(r"\|", "").count("|") == 4
    assert md.endswith("\n\nn1\n\nn2\n")
    assert md_escape("x\r\ny|z") == r"x<br>y\|z"


def test_latex_escapes_specials_and_writes_math_signs():
    tex = _table(groups=["g1", "g2"], comment="generated").latex()
    assert tex.startswith("% generated\n\\begin{table}[t]")
    assert r"\caption{T}" in tex and r"\label{tab:t}" in tex and r"\begin{tabular}{lrl}" in tex
    assert r"Name & $\Delta$AP & Note \\" in tex  # raw LaTeX header used as given
    assert r"a|b & +1.2 $\pm$ 0.3 & two lines \\" in tex
    assert r"\textbf{best\_1} & - & 50\% \& \#1 \\" in tex
    assert tex.count(r"\midrule") == 2  # after the header, and where the group changes
    assert r"\par\footnotesize n1" in tex and tex.rstrip().endswith(r"\end{table}")
    assert tex_escape("a_b{c}~^\\$") == r"a\_b\{c\}\textasciitilde{}\textasciicircum{}\textbackslash{}\$"
    assert tex_escape("256×192 – x") == r"256$\times$192 -- x"
    # Free text: Markdown code spans become \texttt (an unpaired backtick is left as text).
    assert tex_text("base `demo_x` on `val`") == r"base \texttt{demo\_x} on \texttt{val}"
    assert tex_text("it`s") == "it`s"


def test_csv_writes_the_numbers_and_write_is_atomic(tmp_path):
    frame = pd.DataFrame({"Name": ["a", "b"], "AP": [0.5, float("nan")]})
    t = Table([Column("Name", "l"), Column("AP")], [["a", "0.500"], ["b", fmt_num(float("nan"))]], frame=frame)
    files = t.write(tmp_path / "x", float_format="%.2f")
    assert sorted(files) == ["csv", "md", "tex"]
    assert (tmp_path / "x.csv").read_text() == "Name,AP\na,0.50\nb,\n"
    assert "| b | - |" in (tmp_path / "x.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        Table([Column("a"), Column("b")], [["x"]])
    with pytest.raises(ValueError, match="unknown format"):
        t.write(tmp_path / "y", formats=("html",))
    assert fmt_num(0.1234, ".1f", signed=True) == "+0.1" and fmt_num(None) == "-" and fmt_num(float("inf")) == "-"


def _text_boxes(ax, names):
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    texts = [t for t in ax.texts if t.get_text() in names]
    return texts, [Text.get_window_extent(t, renderer) for t in texts]


def test_labels_of_clustered_points_do_not_overlap_and_point_at_their_points():
    fig = new_figure(5, 4)
    ax = fig.subplots()
    # Five variations with the same cost and nearly the same accuracy, one further right.
    xs, ys = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.05]), np.array([0.0, 0.02, -0.03, 0.01, -0.01, 0.0])
    ax.plot(xs, ys, "o")
    ax.set_xlim(-0.1, 0.1)
    ax.set_ylim(-1, 1)
    names = ["baseline", "static-dlp", "add-gate", "static-ffn", "no-gate", "block-hrnet"]
    overlaps, outside = place_labels(ax, xs, ys, names, ["C3"] + ["k"] * 5)
    assert (overlaps, outside) == (0, 0)
    texts, boxes = _text_boxes(ax, names)
    assert sorted(t.get_text() for t in texts) == sorted(names)
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    inside = ax.get_window_extent(fig.canvas.get_renderer())
    for t, b in zip(texts, boxes):
        assert inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1
        k = names.index(t.get_text())
        assert t.xy == (xs[k], ys[k])  # each label is anchored (and, when moved, led) to its own point


def test_place_labels_skips_empty_texts_and_non_finite_points():
    fig = new_figure(4, 3)
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    assert place_labels(ax, [1, 5, np.nan], [1, 5, 3], ["a", "", "c"], ["k"] * 3) == (0, 0)
    assert [t.get_text() for t in ax.texts] == ["a"]


def test_plotter_draws_series_segments_and_error_bars(tmp_path):
    fig = new_figure(5, 4)
    ax = fig.subplots()
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 1)
    res = draw_series(ax, [
        Series([1, 2, 3], [0.2, 0.4, 0.6], ["a", "b", "c"], color=["r", "g", "b"], yerr=[0.05, np.nan, 0.1]),
        Series([1, 2], [0.1, 0.3], color="0.5", filled=False, marker="s", line="--"),
    ], [Segment(1, 0.1, 1, 0.2)])
    assert (res.overlaps, res.outside) == (0, 0)
    assert len(ax.collections) >= 5 + 1  # five markers, one error-bar collection
    assert sorted(t.get_text() for t in ax.texts) == ["a", "b", "c"]
    files = save_figure(fig, tmp_path / "p", ("png", "pdf"), dpi=50)
    assert [f.name for f in files] == ["p.png", "p.pdf"]
    assert files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files[1].read_bytes()[:5] == b"%PDF-"


def _demo_result(family: str, x: float) -> dict:
    return {"family": family, "model": f"{family}-demo", "val": {"AP": 0.3 + x, "AP .5": 0.6, "AP .75": 0.2},
            "occluded": {"AP": 0.1 + x}, "untrained_val": {"AP": 0.0}, "params": 1.4e6, "gflops": 0.1 + x,
            "latency_ms": 10.0 + 10 * x}


def test_demo_table_and_plot(tmp_path):
    results = [_demo_result(f, x) for f, x in (("hrnet", 0.0), ("hrformer", 0.01), ("hrnext", 0.15))]
    df = rexp.demo_frame(results)
    assert list(df.columns) == list(rexp.DEMO_COLUMNS) and list(df["model"]) == ["HRNet-DEMO", "HRFormer-DEMO", "HRNeXt-DEMO"]
    md = rexp.demo_table(df, "a note").markdown()
    assert md.startswith("| model | AP |") and "| HRNeXt-DEMO | 0.450 | 0.600 | 0.200 | 0.250 | 0.000 | 1.40 | 0.25 | 11.5 |" in md
    png = rexp.demo_plot(results, tmp_path / "demo.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_done_marker_is_reused_only_for_its_key(tmp_path, caplog):
    p = tmp_path / "m.json"
    assert read_marker(p, "k") is None
    write_marker(p, {"hash": "abc", "v": 1}, {"AP": 0.5})
    assert read_marker(p, {"v": 1, "hash": "abc"}) == {"AP": 0.5, "key": {"hash": "abc", "v": 1}}
    assert read_marker(p, {"v": 2, "hash": "abc"}) is None
    p.write_text("{not json")
    with caplog.at_level("WARNING", logger="harness.io"):
        assert read_marker(p, "k") is None
    assert "unreadable done marker" in caplog.text
    p.write_text(json.dumps(["a list"]))
    assert read_marker(p, "k") is None
