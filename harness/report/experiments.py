"""Tables and plots of the demo and of ablation grids, drawn with the one table writer and plotter.

* :func:`demo_table` / :func:`demo_plot` -- one row / one point set per demo family (``make demo``).
* :func:`ablation_table` / :func:`ablation_plot` -- one row / one point per variation of a grid.

Each takes the experiment's plain result dicts (or aggregated frame) and returns a
:class:`~harness.report.tabular.Table` or writes a PNG; new columns or series are added here.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness.results.schema import canonical_family, display_name

from .plots import FAMILY_COLORS, OTHER_COLOR, Segment, Series, draw_series, legend_handle, new_figure, save_figure
from .tabular import Column, Table, fmt_num

__all__ = ["DEMO_COLUMNS", "demo_frame", "demo_table", "demo_plot", "ABLATION_COLUMNS", "ablation_table",
           "ablation_plot", "format_value"]

# ------------------------------------------------------------------------------------------------ demo

#: The demo table's columns (CSV headers; metrics in [0, 1]).
DEMO_COLUMNS = ("model", "AP", "AP .5", "AP .75", "AP occluded", "untrained AP", "params (M)", "GFLOPs",
                "latency (ms)")
_DEMO_FMT = {"params (M)": ".2f", "GFLOPs": ".2f", "latency (ms)": ".1f"}


def demo_frame(results: Sequence[dict]) -> pd.DataFrame:
    """One row per family result (``val``, ``occluded``, ``untrained_val`` metrics, ``params``, ``gflops``,
    ``latency_ms``) -> frame with :data:`DEMO_COLUMNS`."""
    rows = [{
        "model": display_name(r["model"]),
        "AP": r["val"].get("AP"), "AP .5": r["val"].get("AP .5"), "AP .75": r["val"].get("AP .75"),
        "AP occluded": r["occluded"].get("AP"), "untrained AP": r["untrained_val"].get("AP"),
        "params (M)": r["params"] / 1e6, "GFLOPs": r["gflops"], "latency (ms)": r["latency_ms"],
    } for r in results]
    return pd.DataFrame(rows, columns=list(DEMO_COLUMNS))


def demo_table(df: pd.DataFrame, note: str) -> Table:
    """The demo table (Markdown starts with the header row; ``note`` is the paragraph under it)."""
    cols = [Column(c, "l" if c == "model" else "r") for c in DEMO_COLUMNS]
    rows = [[str(r["model"])] + [fmt_num(r[c], _DEMO_FMT.get(c, ".3f")) for c in DEMO_COLUMNS[1:]]
            for _, r in df.iterrows()]
    return Table(cols, rows, frame=df, caption="Demo: HRNet vs HRFormer vs HRNeXt on synthetic crowds",
                 label="demo", notes=[note])


def demo_plot(results: Sequence[dict], out_png: str | Path) -> Path:
    """Two panels, AP on val against GFLOPs and against CPU latency; families coloured. Trained models are
    filled circles, the same models untrained hollow circles joined to them, occluded-split AP squares."""
    fig = new_figure(10, 4.4)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.25, wspace=0.22)
    axes = fig.subplots(1, 2)
    panels = (("gflops", "GFLOPs at the demo input size", "GFLOPs"),
              ("latency_ms", "CPU latency, batch 1 (ms)", "latency"))
    ap = np.array([r["val"].get("AP", 0.0) for r in results], float)
    ap0 = np.array([r["untrained_val"].get("AP", 0.0) for r in results], float)
    occ = np.array([r["occluded"].get("AP", 0.0) for r in results], float)
    colors = [FAMILY_COLORS.get(canonical_family(r["family"]), OTHER_COLOR) for r in results]
    top = max([*ap, *ap0, *occ, 0.05])
    for ax, (key, label, short) in zip(axes, panels):
        ax.set_xlabel(label, fontsize=10)
        ax.set_ylabel("AP", fontsize=10)
        ax.set_title(f"AP vs {short}", fontsize=11)
        ax.grid(True, color="0.9")
        ax.set_axisbelow(True)
        xs = np.array([np.nan if r.get(key) is None else r[key] for r in results], float)
        ax.set_ylim(-0.03, min(1.0, top * 1.15 + 0.03))
        if not np.isfinite(xs).any():
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            continue
        lo, hi = np.nanmin(xs), np.nanmax(xs)
        pad = max((hi - lo) * 0.25, hi * 0.1, 1e-3)
        ax.set_xlim(max(lo - pad, 0), hi + pad * 2.5)
        draw_series(ax, [
            Series(xs, ap0, color=colors, filled=False, size=7, edge_width=1.5),
            Series(xs, occ, color=colors, marker="s", size=7, alpha=0.55),
            Series(xs, ap, [display_name(r["model"]) for r in results], color=colors, size=8.4, zorder=4),
        ], [Segment(x, y0, x, y1, color=c) for x, y0, y1, c in zip(xs, ap0, ap, colors) if math.isfinite(x)])
    fams = list(dict.fromkeys(canonical_family(r["family"]) for r in results))
    handles = [legend_handle(f, color=FAMILY_COLORS.get(f, OTHER_COLOR)) for f in fams]
    handles += [legend_handle("trained, val (det boxes)"), legend_handle("untrained, val", filled=False),
                legend_handle("trained, occluded (GT boxes)", marker="s", alpha=0.55)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.01), handletextpad=0.3, columnspacing=1.0)
    fig.suptitle("Demo: HRNet vs HRFormer vs HRNeXt on synthetic crowds (identical recipe)", fontsize=12)
    return save_figure(fig, out_png, ("png",), dpi=150)[0]


# -------------------------------------------------------------------------------------------- ablation

#: (header, LaTeX header) of the ablation table's columns.
ABLATION_COLUMNS = (
    ("Variation", "Variation"), ("Switches", "Switches"), ("AP", "AP"), ("ΔAP", r"$\Delta$AP"),
    ("Params (M)", "Params (M)"), ("ΔParams (M)", r"$\Delta$Params"), ("GFLOPs", "GFLOPs"),
    ("ΔGFLOPs", r"$\Delta$GFLOPs"), ("Train loss (1e-3)", r"Loss ($10^{-3}$)"),
    ("Val loss (1e-3)", r"Val loss ($10^{-3}$)"), ("Train img/CPU-s", "Img/CPU-s"), ("Train img/s", "Train img/s"),
    ("Δthroughput", r"$\Delta$throughput"),
)


def format_value(v: Any) -> str:
    """A switch value as the tables show it (lists as ``[a,b]``, None as ``None``)."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(format_value(x) for x in v) + "]"
    return "None" if v is None else str(v)


def _pm(mean: float, std: float, *, signed: bool = False) -> str:
    s = fmt_num(100 * mean, ".1f", signed=signed)
    return s + (f" ± {fmt_num(100 * std, '.1f')}" if math.isfinite(std) else "")


def _ablation_rows(t: pd.DataFrame, baseline: str) -> list[list[str]]:
    rows = []
    for r in t.itertuples():
        dap = "0 (ref.)" if r.variation == baseline else _pm(r.dAP, r.dAP_std, signed=True)
        rows.append([r.variation, r.switches, _pm(r.AP, r.AP_std), dap, fmt_num(r.params_M, ".3f"),
                     fmt_num(r.dparams_M, ".3f", signed=True), fmt_num(r.GFLOPs, ".4f"),
                     fmt_num(r.dGFLOPs, ".4f", signed=True), fmt_num(1e3 * r.final_train_loss, ".2f"),
                     fmt_num(1e3 * r.val_loss, ".2f"), fmt_num(r.train_img_per_cpu_s, ".1f"),
                     fmt_num(r.train_img_per_s, ".1f"),
                     fmt_num(r.dthroughput_pct, ".0f", signed=True) + "%" if math.isfinite(r.dthroughput_pct) else "-"])
    return rows


def ablation_table(name: str, description: str, t: pd.DataFrame, notes: Sequence[str], *,
                   baseline: str = "baseline") -> Table:
    """One row per variation of the aggregated frame ``t`` (AP in percent, ± the spread over seeds)."""
    cols = [Column(h, "l" if i < 2 else "r", tex) for i, (h, tex) in enumerate(ABLATION_COLUMNS)]
    return Table(cols, _ablation_rows(t, baseline), frame=t, title=f"Ablation `{name}`", heading_level=1,
                 intro=description, caption=f"Ablation {name}: {description}", label=f"ablation-{name}",
                 notes=list(notes))


def ablation_plot(name: str, t: pd.DataFrame, path: str | Path, *, baseline: str = "baseline") -> Path:
    """ΔAP (points) vs ΔGFLOPs, one labelled point per variation, the baseline at the origin; error bars are
    the paired spread when there are several seeds. A second panel shows the held-out heatmap loss change
    when it was measured (lower is better; it separates rows whose AP is still 0)."""
    panels = [("dAP", 100.0, "dAP_std", "Δ AP vs baseline (points)")]
    if "dval_loss" in t and np.isfinite(t["dval_loss"].to_numpy(float)).any():
        panels.append(("dval_loss", 1e3, None, "Δ val heatmap loss (1e-3, lower is better)"))
    fig = new_figure(6.4 * len(panels), 4.6, dpi=130)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    var = t[t["variation"] != baseline]
    x = var["dGFLOPs"].to_numpy(float)
    todo = []
    for ax, (col, scale, err_col, ylabel) in zip(axes, panels):
        ax.axhline(0, color="0.6", lw=0.8, zorder=0)
        ax.axvline(0, color="0.6", lw=0.8, zorder=0)
        y = scale * var[col].to_numpy(float)
        yerr = scale * var[err_col].to_numpy(float) if err_col else np.full_like(y, np.nan)
        has_err = bool(np.isfinite(yerr).any())
        finite = np.isfinite(y)
        span_x = max(np.abs(np.append(x, 0)).max(), 1e-3)
        span_y = max(np.abs(np.append(y[finite], 0)).max() + (np.nanmax(yerr) if has_err else 0), 0.1)
        ax.set_xlim(-1.3 * span_x, 1.6 * span_x)  # room for the labels right of the points
        ax.set_ylim(-1.3 * span_y, 1.3 * span_y)
        ax.set_xlabel("Δ GFLOPs vs baseline (fvcore, batch 1)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(handles=[legend_handle("variation" + (" (±1 std, paired)" if has_err else ""), color="C0", ms=6),
                           legend_handle("baseline", color="C3", marker="*", ms=14)], fontsize=8, loc="best")
        todo.append((ax, [Series(x, y, list(var["variation"]), color="C0", size=6, yerr=yerr if has_err else None),
                          Series([0.0], [0.0], [baseline], color="C3", marker="*", size=14)]))
    fig.suptitle(f"Ablation '{name}': accuracy change vs cost change", fontsize=10)
    fig.tight_layout()
    for ax, series in todo:  # after the layout: placement works in screen distances
        draw_series(ax, series)
    return save_figure(fig, path, ("png",), dpi=130)[0]
