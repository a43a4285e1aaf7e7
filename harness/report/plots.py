"""The one accuracy-vs-cost plotter: series of points on an axes, labelled without collisions, saved atomically.

A figure is made of :class:`Series` (points drawn alike: one colour or one per point, a marker, filled or
hollow, optional error bars, optional joining line) and :class:`Segment` s (e.g. an untrained model joined
to its trained self). :func:`draw_series` draws them on an axes whose limits and scales the caller has
set, then labels the points through :func:`harness.report.labels.place_labels`. :func:`new_figure` and
:func:`save_figure` give every figure the same Agg canvas (matplotlib's object API; no pyplot state, so it
runs the same in a terminal, in CI and in a notebook) and the same atomic PNG/PDF writing.

The comparison figures (:mod:`harness.report.figures`), the demo's and the ablation's plots are built
from these pieces; a new series (another seed, an occlusion level) is one more :class:`Series`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

from harness.io import atomic_path

from .labels import LABEL_FONT, place_labels

__all__ = ["FAMILY_COLORS", "OTHER_COLOR", "Series", "Segment", "PanelLabels", "new_figure", "draw_series",
           "legend_handle", "save_figure", "family_color"]

# Okabe-Ito palette (colour-blind safe), keyed by the papers' spelling of the family.
FAMILY_COLORS = {"HRNet": "#0072B2", "HRFormer": "#D55E00", "HRNeXt": "#009E73"}
OTHER_COLOR = "#666666"


def family_color(family: str) -> str:
    """Colour of a family given in any spelling ('hrnext', 'HRNeXt')."""
    from harness.results.schema import canonical_family

    return FAMILY_COLORS.get(canonical_family(family), OTHER_COLOR)


@dataclass
class Series:
    """Points drawn alike. ``x``, ``y``: (N,) data coordinates (NaN points are skipped).

    ``labels``: (N,) texts placed next to the points ('' or None: unlabelled, still avoided by labels);
    ``color``, ``marker``, ``filled``: one value or one per point; ``size``: marker diameter in points;
    ``yerr``: (N,) symmetric error bars in each point's colour (NaN: none); ``line``: a linestyle joining
    the points in order (``line_width`` wide); ``name``: legend entry (see :meth:`handle`).
    """

    x: Any
    y: Any
    labels: Sequence[str] | None = None
    color: Any = OTHER_COLOR
    marker: Any = "o"
    filled: Any = True
    size: float = 8.0
    yerr: Any = None
    alpha: float = 1.0
    edge_width: float | None = None
    line: str | None = None
    zorder: float = 3
    name: str | None = None
    line_width: float = 1.0

    @staticmethod
    def per_point(value: Any, n: int) -> list:
        """A list (or array) gives one value per point; anything else (a colour string or RGB tuple, a
        marker, a bool) applies to all ``n``."""
        return list(value) if isinstance(value, (list, np.ndarray)) else [value] * n

    def handle(self) -> Line2D:
        """The legend entry of this series: its first point's marker, fill and colour, and its line."""
        n = len(np.asarray(self.x, float).reshape(-1)) or 1
        color, marker = self.per_point(self.color, n)[0], self.per_point(self.marker, n)[0]
        filled = self.per_point(self.filled, n)[0]
        return Line2D([], [], ls=self.line or "", lw=self.line_width, marker=marker, ms=self.size, color=color,
                      mfc=color if filled else "white", mec=color, mew=1.0 if filled else 1.6, alpha=self.alpha,
                      label=self.name or "")


@dataclass
class Segment:
    """A line between two points (data coordinates), drawn under the markers."""

    x0: float
    y0: float
    x1: float
    y1: float
    color: Any = "0.6"
    ls: str = ":"
    lw: float = 1.0


@dataclass
class PanelLabels:
    """What the label placement achieved on one axes (tests and captions read it)."""

    overlaps: int  # pairs of labels (or label and marker) that still overlap
    outside: int  # labels sticking out of the axes


def new_figure(width: float, height: float, dpi: float = 100) -> Figure:
    """A figure on an Agg canvas (inches; no pyplot)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def draw_series(ax, series: Sequence[Series], segments: Sequence[Segment] = (), *,
                obstacles: Sequence[Bbox] = (), renderer=None, fontsize: float = LABEL_FONT) -> PanelLabels:
    """Draw ``segments`` then ``series`` on ``ax`` (limits/scales already set) and place every label."""
    for s in segments:
        ax.plot([s.x0, s.x1], [s.y0, s.y1], color=s.color, ls=s.ls, lw=s.lw, zorder=1)
    xs, ys, texts, colors, sizes = [], [], [], [], []
    for s in series:
        x, y = np.asarray(s.x, float).reshape(-1), np.asarray(s.y, float).reshape(-1)
        n = len(x)
        cols, marks, fills = s.per_point(s.color, n), s.per_point(s.marker, n), s.per_point(s.filled, n)
        if s.line:
            ax.plot(x, y, ls=s.line, color=cols[0], lw=s.line_width, zorder=s.zorder - 0.5)
        if s.yerr is not None:
            err = np.asarray(s.yerr, float).reshape(-1)
            for i in np.flatnonzero(np.isfinite(err) & np.isfinite(x) & np.isfinite(y)):
                ax.errorbar([x[i]], [y[i]], yerr=[err[i]], fmt="none", ecolor=cols[i], elinewidth=1, capsize=3,
                            zorder=s.zorder - 0.5, alpha=s.alpha)
        for i in range(n):
            if not (np.isfinite(x[i]) and np.isfinite(y[i])):
                continue
            c, filled = cols[i], fills[i]
            ew = s.edge_width if s.edge_width is not None else (1.0 if filled else 1.6)
            ax.scatter([x[i]], [y[i]], s=s.size ** 2, marker=marks[i], zorder=s.zorder, alpha=s.alpha,
                       facecolors=c if filled else "white", edgecolors=c, linewidths=ew)
        labels = list(s.labels) if s.labels is not None else [""] * n
        xs += list(x)
        ys += list(y)
        texts += [t or "" for t in labels]
        colors += cols
        sizes += [s.size] * n
    if not xs:
        return PanelLabels(0, 0)
    overlaps, outside = place_labels(ax, np.array(xs), np.array(ys), texts, colors, renderer, obstacles,
                                     fontsize=fontsize, marker_size=np.array(sizes))
    return PanelLabels(overlaps, outside)


def legend_handle(label: str, *, color: Any = "0.35", marker: str = "o", filled: bool = True, ls: str = "",
                  alpha: float = 1.0, ms: float = 8) -> Line2D:
    """A legend entry that looks like a :class:`Series` point (or a line with ``ls``)."""
    return Line2D([], [], ls=ls, marker=marker if not ls else None, ms=ms, color=color,
                  mfc=color if filled else "white", mec=color, mew=1.0 if filled else 1.6, alpha=alpha, label=label)


def save_figure(fig: Figure, path: str | os.PathLike, formats: Sequence[str] = ("png",), dpi: float = 200) -> list[Path]:
    """Write ``path`` with each suffix in ``formats`` (PNG, PDF), atomically. PDFs embed TrueType fonts
    (journals reject Type 3) and carry no creation date, so reruns are byte-identical."""
    path = Path(path)
    out = []
    for ext in formats:
        target = path.with_suffix(f".{ext}")
        with atomic_path(target) as tmp:
            with matplotlib.rc_context({"pdf.fonttype": 42}):
                fig.savefig(tmp, format=ext, dpi=dpi, metadata={"CreationDate": None} if ext == "pdf" else None)
        out.append(target)
    return out
