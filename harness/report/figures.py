"""Accuracy-vs-cost figures: AP against GFLOPs and against parameters, COCO and OCHuman.

Families are coloured (Okabe-Ito palette, colour-blind safe), input sizes have their own marker,
reported points are filled and measured points hollow, and the Pareto front (the upper-left
envelope: no other point is both cheaper and more accurate) is drawn as a dashed step line.
Points, labels and files go through :mod:`harness.report.plots` (the one plotter: Agg canvas, no
pyplot state) and :mod:`harness.report.labels` (the one label placer).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
from matplotlib.transforms import Bbox

from harness.results.schema import FAMILY_ORDER

from .plots import FAMILY_COLORS, OTHER_COLOR, Series, draw_series, new_figure, save_figure
from .seeds import pool_seeds
from .tables import as_frame

log = logging.getLogger(__name__)

SIZE_MARKERS = {(256, 192): "o", (384, 288): "s"}
EXTRA_MARKERS = ("^", "D", "v", "P", "X")
DATASET_TITLES = {"coco": "COCO val2017", "ochuman": "OCHuman val"}
AXES = {"gflops": "GFLOPs", "params_m": "parameters"}
AXIS_LABELS = {"gflops": "GFLOPs (log scale)", "params_m": "Parameters, millions (log scale)"}
PANELS = (("coco", "gflops"), ("coco", "params_m"), ("ochuman", "gflops"), ("ochuman", "params_m"))

FONT = 10  # pt at 100 %; labels use LABEL_FONT (9 pt)
MARKER_SIZE = 8  # pt


@dataclass
class PanelInfo:
    """What one axes shows: enough for tests and for a caption."""

    dataset: str
    x: str
    n_reported: int
    n_measured: int
    front: list[str]  # labels of the Pareto-front points, cheapest first
    label_overlaps: int  # pairs of labels (or label vs marker) that still overlap after placement
    labels_outside: int  # labels that stick out of the axes


@dataclass
class FigureSet:
    files: list[Path] = field(default_factory=list)
    panels: list[PanelInfo] = field(default_factory=list)
    bad_files: list[dict] = field(default_factory=list)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the upper-left envelope of the points (x: cost, lower is better; y: accuracy).

    A point is on the front when every cheaper-or-equal point is strictly less accurate.
    Returned sorted by cost. x, y: (N,).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort((-y, x))  # by cost, the more accurate first among equal costs
    ys = y[order]
    best_before = np.maximum.accumulate(np.r_[-np.inf, ys[:-1]])
    return order[ys > best_before]


def _marker(hw: tuple[int, int], extra: dict[tuple[int, int], str]) -> str:
    if hw in SIZE_MARKERS:
        return SIZE_MARKERS[hw]
    if hw not in extra:
        extra[hw] = EXTRA_MARKERS[len(extra) % len(EXTRA_MARKERS)]
    return extra[hw]


def plot_points(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Reported + measured rows of ``dataset`` with AP and both costs (measured runs without a
    recorded GFLOP count take it from the latest cached profile of the same model and size). Measured
    runs that differ only in seed are one point (:func:`harness.report.seeds.pool_seeds`): AP is their
    mean, ``AP std`` the sample std, ``n`` the number of seeds."""
    pts = df[df["kind"].isin(["reported", "measured"]) & (df["dataset"] == dataset)].copy()
    prof = df[df["kind"] == "profile"].sort_values("date", na_position="first")
    prof = prof.drop_duplicates(["model", "input_h", "input_w"], keep="last")
    cached = pts.merge(prof[["model", "input_h", "input_w", "gflops"]], how="left",
                       on=["model", "input_h", "input_w"], suffixes=("", "_prof"))
    pts["gflops"] = pts["gflops"].fillna(pd.Series(cached["gflops_prof"].to_numpy(), index=pts.index))
    missing = pts["AP"].isna() | pts["gflops"].isna() | pts["params_m"].isna()
    if missing.any():
        log.warning("%s: %d point(s) without AP or cost left out: %s", dataset, int(missing.sum()),
                    ", ".join(f"{r.display_name} {r.input_h}x{r.input_w} ({r.kind})" for r in pts[missing].itertuples()))
    return pool_seeds(pts[~missing], ["AP"])


def _nice_ticks(lo: float, hi: float) -> list[float]:
    cands = [m * 10.0**e for e in range(-1, 4) for m in (1, 2, 3, 5)]
    return [t for t in cands if lo <= t <= hi]


def draw_panel(ax, pts: pd.DataFrame, dataset: str, x: str, renderer) -> PanelInfo:
    """Scatter, Pareto front and labels for one (dataset, cost axis) pair."""
    title = f"{DATASET_TITLES.get(dataset, dataset)}: AP vs {AXES[x]}"
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xlabel(AXIS_LABELS[x], fontsize=FONT)
    ax.set_ylabel("AP", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.grid(True, which="major", color="0.9", lw=0.8)
    ax.set_axisbelow(True)
    if pts.empty:
        ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes, fontsize=FONT)
        ax.set_xticks([])
        ax.set_yticks([])
        return PanelInfo(dataset, x, 0, 0, [], 0, 0)
    xs, ys = pts[x].to_numpy(float), pts["AP"].to_numpy(float)
    # Room around the points for labels; fixed before placement so transforms do not move later.
    lo, hi = xs.min() / 1.45, xs.max() * 1.45
    # Stretch to a round tick just beyond the data when it is close, so both ends are labelled.
    below = [t for t in _nice_ticks(lo / 1.15, lo)]
    above = [t for t in _nice_ticks(hi, hi * 1.15)]
    lo, hi = (below[-1] * 0.97 if below else lo), (above[0] * 1.03 if above else hi)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = _nice_ticks(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    span = max(ys.max() - ys.min(), 0.02)
    ax.set_ylim(ys.min() - 0.18 * span, ys.max() + 0.18 * span)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2f}"))

    front = pareto_front(xs, ys)
    fx, fy = xs[front], ys[front]
    ax.step(np.r_[fx, hi], np.r_[fy, fy[-1]], where="post", ls="--", lw=1.1, color="0.45", zorder=1)
    # The step path's corners in display space; each horizontal/vertical run becomes a thin obstacle.
    corners = ax.transData.transform(np.c_[np.repeat(np.r_[fx, hi], 2)[1:-1], np.repeat(fy, 2)])
    front_boxes = [Bbox.from_extents(min(a[0], b[0]) - 1.5, min(a[1], b[1]) - 1.5, max(a[0], b[0]) + 1.5,
                                     max(a[1], b[1]) + 1.5) for a, b in zip(corners[:-1], corners[1:])]

    extra_markers: dict[tuple[int, int], str] = {}
    reported_keys = set(zip(pts.loc[pts["kind"] == "reported", "model"], pts.loc[pts["kind"] == "reported", "input_h"]))
    # A measured point next to the paper's twin needs no second name; its hollow marker says it.
    texts = ["" if r.kind == "measured" and (r.model, r.input_h) in reported_keys else r.display_name
             for r in pts.itertuples()]
    # Pooled seeds: a measured point is the mean AP, its error bar the std over the n seeds.
    yerr = np.where(pts["n"].to_numpy() > 1, pts["AP std"].to_numpy(float), np.nan)
    texts = [t + (f" (n={n})" if t and n > 1 else "") for t, n in zip(texts, pts["n"])]
    points = Series(xs, ys, texts, color=[FAMILY_COLORS.get(f, OTHER_COLOR) for f in pts["family"]],
                    marker=[_marker((int(h), int(w)), extra_markers) for h, w in zip(pts["input_h"], pts["input_w"])],
                    filled=list(pts["kind"] == "reported"), size=MARKER_SIZE, yerr=yerr)
    placed = draw_series(ax, [points], obstacles=front_boxes, renderer=renderer)
    overlaps, outside = placed.overlaps, placed.outside
    names = pts["display_name"].to_numpy()
    sizes = [f"{h}x{w}" for h, w in zip(pts["input_h"], pts["input_w"])]
    return PanelInfo(dataset, x, int((pts["kind"] == "reported").sum()), int((pts["kind"] == "measured").sum()),
                     [f"{names[i]} {sizes[i]}" for i in front], overlaps, outside)


def _legend_rows(pts_all: pd.DataFrame) -> tuple[list[Line2D], list[Line2D]]:
    """Two legend rows: what the colours and the line mean; what the marker shapes and fills mean."""
    fams = [f for f in FAMILY_ORDER if f in set(pts_all["family"])] + sorted(set(pts_all["family"]) - set(FAMILY_ORDER))
    row1 = [Line2D([], [], ls="", marker="o", ms=8, color=FAMILY_COLORS.get(f, OTHER_COLOR), label=f) for f in fams]
    row1.append(Line2D([], [], ls="--", lw=1.1, color="0.45", label="Pareto front"))
    sizes = sorted({(int(a), int(b)) for a, b in zip(pts_all["input_h"], pts_all["input_w"])})
    extra: dict[tuple[int, int], str] = {}
    row2 = [Line2D([], [], ls="", marker=_marker(s, extra), ms=8, mfc="0.35", mec="0.35", label=f"{s[0]}×{s[1]}")
            for s in sizes]
    kinds = set(pts_all["kind"])
    if "reported" in kinds:
        row2.append(Line2D([], [], ls="", marker="o", ms=8, mfc="0.35", mec="0.35", label="reported"))
    if "measured" in kinds:
        pooled = "n" in pts_all and bool((pts_all["n"] > 1).any())
        row2.append(Line2D([], [], ls="", marker="o", ms=8, mfc="white", mec="0.35", mew=1.6,
                           label="measured (± std, seeds)" if pooled else "measured (this repo)"))
    return row1, row2


def _add_legend(fig: Figure, pts_all: pd.DataFrame, one_row: bool) -> None:
    if pts_all.empty:
        return
    row1, row2 = _legend_rows(pts_all)
    if one_row:
        handles, ncol = row1 + row2, len(row1) + len(row2)
    else:
        # Matplotlib fills legend columns top to bottom: interleave so each row keeps its meaning.
        n = max(len(row1), len(row2))
        blank = Line2D([], [], ls="", label=" ")
        row1, row2 = row1 + [blank] * (n - len(row1)), row2 + [blank] * (n - len(row2))
        handles, ncol = [h for pair in zip(row1, row2) for h in pair], n
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=FONT, frameon=False,
               bbox_to_anchor=(0.5, 0.005), handletextpad=0.3, columnspacing=1.1)


def _save(fig: Figure, stem: Path) -> list[Path]:
    """PNG (200 dpi) and PDF."""
    return save_figure(fig, stem, ("png", "pdf"), dpi=200)


def _figure(nrows: int, ncols: int, panel_w: float, panel_h: float, legend_rows: int):
    legend_h = 0.3 * legend_rows + 0.15
    fig = new_figure(panel_w * ncols, panel_h * nrows + legend_h)
    height = panel_h * nrows + legend_h
    # Fixed margins (no tight/constrained layout) so label placement sees the final transforms.
    fig.subplots_adjust(left=0.75 / (panel_w * ncols), right=1 - 0.2 / (panel_w * ncols),
                        top=1 - 0.4 / height, bottom=(legend_h + 0.5) / height, wspace=0.25, hspace=0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes, legend_h / height


def make_figures(results_root: str | os.PathLike | pd.DataFrame = "results",
                 out_dir: str | os.PathLike = "results/figures") -> FigureSet:
    """Write ``accuracy_vs_cost.{png,pdf}`` (2x2 panel) and one single figure per panel,
    ``<dataset>_ap_vs_<gflops|params>.{png,pdf}``, to ``out_dir``; return what was drawn.

    ``results_root`` may also be a frame from :func:`load_results`. Malformed result files are
    reported by :func:`load_results` (logged; listed in the result).
    """
    df = as_frame(results_root)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pts = {ds: plot_points(df, ds) for ds in dict.fromkeys(ds for ds, _ in PANELS)}
    pts_all = pd.concat(list(pts.values()))
    result = FigureSet(bad_files=df.attrs.get("bad_files", []))

    fig, axes, leg_frac = _figure(2, 2, 5.6, 4.3, legend_rows=1)
    renderer = fig.canvas.get_renderer()
    for ax, (ds, x) in zip(axes.flat, PANELS):
        result.panels.append(draw_panel(ax, pts[ds], ds, x, renderer))
    _add_legend(fig, pts_all, one_row=True)
    result.files += _save(fig, out / "accuracy_vs_cost")

    for ds, x in PANELS:
        fig, axes, _ = _figure(1, 1, 6.4, 4.6, legend_rows=2)
        draw_panel(axes[0, 0], pts[ds], ds, x, fig.canvas.get_renderer())
        _add_legend(fig, pts_all, one_row=False)
        name = "gflops" if x == "gflops" else "params"
        result.files += _save(fig, out / f"{ds}_ap_vs_{name}")
    for p in result.panels:
        if p.label_overlaps or p.labels_outside:
            log.warning("%s AP vs %s: %d label overlap(s), %d label(s) outside the axes",
                        p.dataset, p.x, p.label_overlaps, p.labels_outside)
    log.info("wrote %d figure files to %s", len(result.files), out)
    return result
