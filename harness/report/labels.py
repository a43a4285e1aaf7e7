"""The one label placer for scatter plots: each point's text at the nearest collision-free offset.

Every figure the harness draws (the accuracy-vs-cost panels, the demo's and the ablation's plots) labels
its points through :func:`place_labels`. Each label tries offsets around its point, nearest first (right
and left before above and below: labels are wide and short), and takes the first that overlaps no other
label, no marker and stays inside the axes; failing that, the least-overlapping one. Crowded points are
placed first (they have the fewest free spots). A label placed far from its point gets a thin leader line.

Placement works in display (pixel) space, so the axes' limits, scales and the figure layout must be final
before it is called.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.transforms import Bbox

__all__ = ["place_labels", "overlap_area", "LABEL_FONT"]

LABEL_FONT = 9  # pt; never smaller, so labels stay readable at 100 %
# Offsets (points) tried around each marker, nearest first.
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
RADII = (6, 11, 17, 25, 35, 48, 62)
LEADER_BEYOND = RADII[1]  # labels further than this from their point get a leader line


def overlap_area(a: Bbox, b: Bbox) -> float:
    """Area (px^2) shared by two display-space boxes; 0 when they do not intersect."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if (w > 0 and h > 0) else 0.0


def place_labels(ax, xs, ys, texts: Sequence[str], colors: Sequence, renderer=None, lines: Sequence[Bbox] = (),
                 *, fontsize: float = LABEL_FONT, marker_size: float | Sequence[float] = 8.0) -> tuple[int, int]:
    """Annotate point ``i`` (data coordinates ``xs[i], ys[i]``) with ``texts[i]`` in ``colors[i]``.

    An empty text leaves its point unlabelled but still an obstacle; non-finite points are skipped.
    ``lines``: display-space boxes of drawn lines, avoided too but at a lower price than markers and
    labels. ``marker_size``: marker diameter(s) in points. Returns (pairs of labels, or label and marker,
    that still overlap; labels sticking out of the axes).
    """
    fig = ax.figure
    renderer = renderer or fig.canvas.get_renderer()
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    sizes = np.broadcast_to(np.asarray(marker_size, float), xs.shape)
    ok = np.isfinite(xs) & np.isfinite(ys)
    px_per_pt = fig.dpi / 72.0
    pts = ax.transData.transform(np.c_[np.where(ok, xs, 0), np.where(ok, ys, 0)])  # (N, 2)
    markers = [Bbox.from_extents(x - h, y - h, x + h, y + h)
               for (x, y), h, good in zip(pts, sizes * px_per_pt / 2 + 1, ok) if good]
    inside = ax.get_window_extent(renderer)
    placed: list[Bbox] = []
    dist = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)  # (N, N)
    crowd = ((dist < 40 * px_per_pt) & ok[None, :]).sum(axis=1)
    for i in np.argsort(-crowd, kind="stable"):
        if not texts[i] or not ok[i]:
            continue
        best = None
        for r in RADII:
            for dx, dy in DIRECTIONS:
                ha = "left" if dx > 0 else ("right" if dx < 0 else "center")
                va = "bottom" if dy > 0 else ("top" if dy < 0 else "center")
                norm = math.hypot(dx, dy)
                ann = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(r * dx / norm, r * dy / norm),
                                  textcoords="offset points", ha=ha, va=va, fontsize=fontsize, color=colors[i])
                bb = ann.get_window_extent(renderer).padded(1.5)
                cost = sum(overlap_area(bb, o) for o in placed) + sum(overlap_area(bb, m) for m in markers)
                cost += 0.3 * sum(overlap_area(bb, ln) for ln in lines)
                out = bb.x0 < inside.x0 or bb.x1 > inside.x1 or bb.y0 < inside.y0 or bb.y1 > inside.y1
                cost += 1e6 if out else 0.0
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, ann, bb, r)
                else:
                    ann.remove()
                if cost == 0:
                    break
            if best[0] == 0:
                break
        cost, ann, bb, r = best
        if r > LEADER_BEYOND:  # far from its point: a thin leader line says whose label it is
            ann.remove()
            ax.annotate(texts[i], (xs[i], ys[i]), xytext=ann.xyann, textcoords="offset points",
                        ha=ann.get_ha(), va=ann.get_va(), fontsize=fontsize, color=colors[i],
                        arrowprops=dict(arrowstyle="-", lw=0.6, color="0.55", shrinkA=0, shrinkB=4))
        placed.append(bb)
    overlaps = sum(overlap_area(a, b) > 0 for k, a in enumerate(placed) for b in placed[k + 1:])
    overlaps += sum(overlap_area(a, m) > 0 for a in placed for m in markers)
    outside = sum(b.x0 < inside.x0 or b.x1 > inside.x1 or b.y0 < inside.y0 or b.y1 > inside.y1 for b in placed)
    return int(overlaps), int(outside)
