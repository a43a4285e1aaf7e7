"""AP by occlusion level as tables and a figure, and bootstrap comparisons as text.

``make_breakdown_table(dataset)`` writes ``<dataset>_breakdown.{md,csv}``: one row per measured model
(runs that differ only in seed are one row, mean +- std over n seeds), one AP column per occlusion bin;
the papers' reported rows are listed without numbers (the papers give one AP per dataset).
``make_breakdown_figure`` plots AP per occlusion level per model (``<dataset>_ap_by_occlusion.png/pdf``),
with the seeds' spread as error bars.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pandas as pd

from harness.data import resolve_meta
from harness.eval.breakdown import ATTRIBUTES
from harness.eval.coco_eval import load_coco_gt
from harness.eval.compare import compare, load_run, load_set
from harness.results import display_name
from harness.results.schema import canonical_family

from .plots import FAMILY_COLORS, OTHER_COLOR, Series, draw_series, new_figure, save_figure
from .seeds import SEED_FREE_KEY, format_mean_std, mean_std
from .tables import as_frame
from .tabular import Column, Table, fmt_num

log = logging.getLogger(__name__)

__all__ = ["format_breakdown", "format_comparison", "breakdown_rows", "make_breakdown_table",
           "make_breakdown_figure", "make_interval_table", "demo_statistics", "demo_breakdown_figure"]


def _f(v, digits: int = 3) -> str:
    return fmt_num(v, f".{digits}f", missing="–")


def _breakdown_tables(breakdown: dict) -> list[Table]:
    """One table per attribute (bin, range, people, AP, AP .5, AP .75, AR)."""
    cols = [Column("bin", "l"), Column("range", "l"), Column("people"), Column("AP"), Column("AP .5"),
            Column("AP .75"), Column("AR")]
    return [Table(cols, [[b["bin"], b["range"], str(b["people"]), *(_f(b.get(k), 4) for k in ("AP", "AP .5", "AP .75", "AR"))]
                         for b in attr["bins"]],
                  intro=f"**AP by {attr['title']}** (people outside a bin ignored)",
                  caption=f"AP by {attr['title']} (people outside a bin ignored)")
            for attr in breakdown["attributes"]]


def format_breakdown(breakdown: dict) -> str:
    """Markdown: one table per attribute (bin, range, people, AP, AP .5, AP .75, AR)."""
    return "\n".join(t.markdown() for t in _breakdown_tables(breakdown))


def format_comparison(res, title: str = "AP") -> str:
    """Markdown: each set's value with its interval; each difference, its interval and sign flips."""
    pct = f"{res.confidence:.0%}"
    sets = Table([Column("set", "l"), Column(res.metric), Column(f"{pct} interval", "c"), Column("±")],
                 [[m.name, f"{m.value:.4f}", f"[{m.lo:.4f}, {m.hi:.4f}]", f"{(m.hi - m.lo) / 2:.4f}"]
                  for m in res.models.values()],
                 intro=f"**{title}**: {res.resamples} paired bootstrap resamples of {res.num_images} images, {pct} "
                       "percentile intervals")
    diffs = Table([Column("difference", "l"), Column("value"), Column(f"{pct} interval", "c"),
                   Column("sign flips"), Column("excludes 0", "c")],
                  [[f"{d.a} − {d.b}", f"{d.diff:+.4f}", f"[{d.lo:+.4f}, {d.hi:+.4f}]", f"{d.sign_flip:.1%}",
                    "yes" if d.excludes_zero else "no"] for d in res.diffs])
    return sets.markdown() + "\n" + diffs.markdown()


def _read_breakdown(path: str) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("breakdown")
    except (OSError, json.JSONDecodeError):
        return None


def breakdown_rows(df: pd.DataFrame, dataset: str) -> tuple[list[dict], list[str]]:
    """Measured rows of ``dataset`` with a breakdown, seeds pooled: ``{"model", "display_name", "family",
    "input", "experiment", "split", "n", "AP": (mean, std), "bins": {column: (mean, std, n)}}``; the bin
    columns in order."""
    rows = df[(df["kind"] == "measured") & (df["dataset"] == dataset)]
    groups: dict[tuple, dict] = {}
    columns: list[str] = []
    for r in rows.itertuples():
        bd = _read_breakdown(r.file)
        if not bd:
            continue
        key = tuple(getattr(r, c) for c in SEED_FREE_KEY)
        g = groups.setdefault(key, {"model": r.model, "display_name": r.display_name, "family": r.family,
                                    "input": f"{int(r.input_h)}x{int(r.input_w)}", "experiment": r.experiment,
                                    "split": r.split, "seeds": set(), "AP": [], "bins": {}})
        g["seeds"].add(int(r.seed))
        g["AP"].append(float(r.AP))
        for attr in bd["attributes"]:
            for b in attr["bins"]:
                col = f"{attr['attribute']}: {b['bin']}"
                if col not in columns:
                    columns.append(col)
                g["bins"].setdefault(col, []).append(b.get("AP"))
    out = []
    for g in groups.values():
        out.append({**{k: g[k] for k in ("model", "display_name", "family", "input", "experiment", "split")},
                    "n": len(g["AP"]), "seeds": sorted(g["seeds"]), "AP": mean_std(g["AP"]),
                    "bins": {c: mean_std(v) for c, v in g["bins"].items()}})
    return out, columns


def make_breakdown_table(dataset: str, results_root: str | os.PathLike | pd.DataFrame = "results",
                         out_dir: str | os.PathLike = "results/tables", *, echo: bool = True) -> pd.DataFrame:
    """Write ``<dataset>_breakdown.md/.csv``; return the table (one row per model, reported rows included)."""

    df = as_frame(results_root)
    rows, columns = breakdown_rows(df, dataset)
    reported = df[(df["kind"] == "reported") & (df["dataset"] == dataset)]
    records = []
    for r in rows:
        rec = {"Backbone": r["display_name"], "Input": r["input"], "Split": r["split"],
               "Source": f"measured: {r['experiment']} (seeds {', '.join(map(str, r['seeds']))})",
               "n": r["n"], "AP": format_mean_std(r["AP"])}
        rec.update({c: format_mean_std(r["bins"].get(c, (math.nan, math.nan, 0))) for c in columns})
        records.append(rec)
    for r in reported.drop_duplicates(["model", "input_h", "input_w"]).itertuples():
        rec = {"Backbone": r.display_name, "Input": f"{int(r.input_h)}x{int(r.input_w)}", "Split": r.split,
               "Source": f"reported ({r.source}): no breakdown", "n": 0, "AP": _f(r.AP)}
        rec.update({c: "–" for c in columns})
        records.append(rec)
    table = pd.DataFrame(records, columns=["Backbone", "Input", "Split", "n", "AP", *columns, "Source"])
    notes = ("AP per occlusion bin: COCOeval's AP with the people outside the bin ignored (harness.eval.breakdown). "
             "Runs that differ only in seed: mean ± std over n seeds. Reported rows: the papers give one AP per "
             "dataset, no breakdown.")
    if not rows:
        notes = f"No measured run on {dataset} has a breakdown yet (`test ... --breakdown occlusion`). " + notes
    rendered = _text_table(table, f"AP by occlusion level: {dataset}", f"{dataset}_breakdown", notes)
    out = Path(out_dir)
    rendered.write(out / f"{dataset}_breakdown")
    log.info("wrote %s/%s_breakdown.{md,tex,csv} (%d measured rows)", out, dataset, len(rows))
    if echo:
        print(rendered.markdown())
    return table


def _text_table(table: pd.DataFrame, title: str, label: str, notes: str) -> Table:
    """A frame of formatted cells as a :class:`Table` (Backbone and Source left-aligned, the rest right);
    its CSV is the frame itself."""
    cols = [Column(str(c), "l" if c in ("Backbone", "Source") else "r") for c in table.columns]
    return Table(cols, [[str(v) for v in row] for row in table.itertuples(index=False)], frame=table, title=title,
                 caption=f"{title}.", label=label, notes=[notes],
                 comment="generated by hrbench (python -m harness table); do not edit by hand")


def make_breakdown_figure(dataset: str, results_root: str | os.PathLike | pd.DataFrame = "results",
                          out_dir: str | os.PathLike = "results/figures", rows: list[dict] | None = None,
                          columns: list[str] | None = None, title: str | None = None) -> list[Path]:
    """AP per occlusion bin per model (lines over the bins of each attribute; error bars: std over seeds),
    one panel per attribute, as ``<dataset>_ap_by_occlusion.png/pdf``; returns the files."""
    if rows is None:
        rows, columns = breakdown_rows(as_frame(results_root), dataset)
    attrs: dict[str, list[str]] = {}
    for c in columns or []:
        a, _, b = c.partition(": ")
        attrs.setdefault(a, []).append(b)
    n = max(1, len(attrs))
    width = max(6.4, 4.6 * n)
    labels = [r["display_name"] + (f" (n={r['n']})" if r["n"] > 1 else "") for r in rows]
    # Legend columns that fit the width (about 0.055 in per character at 9 pt, plus the handle).
    col_w = 0.055 * max((len(t) for t in labels), default=0) + 0.6
    ncol = max(1, min(len(labels), 4, int((width - 0.2) // col_w)))
    extra = 0.25 * (max(1, math.ceil(len(labels) / ncol)) - 1)  # inches for more legend rows
    height = 4.2 + extra
    fig = new_figure(width, height)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, top=1 - 0.84 / height,
                        bottom=(1.26 + extra) / height, wspace=0.25)
    axes = fig.subplots(1, n, squeeze=False)[0]
    if not rows:
        axes[0].text(0.5, 0.5, "no measured breakdown yet\n(python -m harness test EXP --checkpoint FILE --breakdown occlusion)",
                     ha="center", fontsize=9, va="center", transform=axes[0].transAxes)
        axes[0].set_xticks([])
        axes[0].set_yticks([])
    markers = "osD^v"
    renderer = fig.canvas.get_renderer()
    handles = []
    for k, (ax, (attr, bins)) in enumerate(zip(axes, attrs.items())):
        ranges = {b.name: b.range for b in ATTRIBUTES[attr].bins} if attr in ATTRIBUTES else {}
        ax.set_xticks(range(len(bins)))
        ax.set_xticklabels([f"{b}\n{ranges[b]}" if b in ranges and not any(ch.isdigit() for ch in b) else b
                            for b in bins], fontsize=9)
        ax.set_xlabel(ATTRIBUTES[attr].title if attr in ATTRIBUTES else attr, fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("AP", fontsize=10)
        ax.grid(True, color="0.9")
        ax.set_axisbelow(True)
        ax.set_xlim(-0.3, len(bins) - 0.7)
        series = []
        for i, r in enumerate(rows):
            ys = [r["bins"].get(f"{attr}: {b}", (math.nan, math.nan, 0)) for b in bins]
            series.append(Series(range(len(bins)), [y[0] for y in ys], yerr=[y[1] if y[2] > 1 else math.nan for y in ys],
                                 color=FAMILY_COLORS.get(r["family"], OTHER_COLOR), marker=markers[i % len(markers)],
                                 size=6, line="-", line_width=1.4, name=labels[i]))
        draw_series(ax, series, renderer=renderer)
        if k == 0:
            handles = [s.handle() for s in series]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    pooled = any(r["n"] > 1 for r in rows)
    name = {"coco": "COCO", "ochuman": "OCHuman", "crowdpose": "CrowdPose"}.get(dataset, dataset)
    fig.suptitle(title or f"{name}: AP per occlusion level", fontsize=11, y=1 - 0.126 / height)
    fig.text(0.5, 1 - 0.483 / height, "people outside a bin ignored" + ("; error bars: std over n seeds" if pooled else ""),
             ha="center", fontsize=9, color="0.3")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return save_figure(fig, Path(out_dir) / f"{dataset}_ap_by_occlusion", ("png", "pdf"), dpi=200)


def demo_statistics(results: list[dict], *, resamples: int = 1000, seed: int = 0) -> tuple[list[Table], dict]:
    """The demo table's statistics: val AP of each family with its paired-bootstrap interval and each
    family's difference from the first (marked when the interval excludes zero), and the occluded split's
    AP per occlusion level.  ``results``: the demo's per-family dicts (``records`` = [val, occluded]).
    Returns (the tables, to go below the demo table; JSON-able dict); families whose records predate
    stored predictions are left out."""
    tables, out = [], {}
    runs = []
    for r in results:
        try:
            runs.append((display_name(r["model"]), *load_run(r["records"][0])))
        except (FileNotFoundError, ValueError, KeyError, IndexError) as e:
            log.warning("demo statistics: %s left out (%s)", r.get("model"), e)
    if len(runs) >= 1:
        ann = runs[0][1]["predictions"]["ann_file"]
        meta = resolve_meta(runs[0][1]["predictions"]["dataset"], None, ann)
        gt = load_coco_gt(ann)
        sets = [load_set(name, preds, ann, meta, coco_gt=gt) for name, _, preds in runs]
        res = compare(sets, resamples=resamples, seed=seed, baseline=sets[0].name if len(sets) > 1 else None)
        out["val_bootstrap"] = res.to_dict()
        pct = f"{res.confidence:.0%}"
        diffs = {d.a: d for d in res.diffs}
        rows = []
        for m in res.models.values():
            d = diffs.get(m.name)
            tail = ([f"{d.diff:+.3f}{'*' if d.excludes_zero else ''}", f"[{d.lo:+.3f}, {d.hi:+.3f}]", f"{d.sign_flip:.1%}"]
                    if d else ["baseline", "–", "–"])
            rows.append([m.name, f"{m.value:.3f}", f"[{m.lo:.3f}, {m.hi:.3f}]", *tail])
        head = f"Val AP, {pct} intervals"
        detail = (f"({res.resamples} paired bootstrap resamples of the {res.num_images} val images; differences "
                  f"from {sets[0].name}, * = interval excludes 0)")
        tables.append(Table([Column("model", "l"), Column("AP"), Column(f"{pct} interval", "c"),
                             Column(f"Δ vs {sets[0].name}"), Column(f"{pct} interval of Δ", "c"), Column("sign flips")],
                            rows, intro=f"**{head}** {detail}", caption=f"{head} {detail}"))
    occ = []
    for r in results:
        recs = r.get("records") or []
        bd = _read_breakdown(recs[1]) if len(recs) > 1 else None
        if bd:
            occ.append((display_name(r["model"]), bd))
    if occ:
        out["occluded_breakdown"] = {n: bd for n, bd in occ}
        for attr_i, attr in enumerate(occ[0][1]["attributes"]):
            bins = [b["bin"] for b in attr["bins"]]
            rows = []
            for name, bd in occ:
                vals = {b["bin"]: b.get("AP") for b in bd["attributes"][attr_i]["bins"]}
                rows.append([name, *(_f(vals.get(b)) for b in bins)])
            title = f"Occluded split (GT boxes): AP by {attr['title']}"
            tables.append(Table([Column("model", "l"), *(Column(f"{b['bin']} {b['range']} ({b['people']})")
                                                         for b in attr["bins"])], rows,
                                intro=f"**{title}** (people outside a bin ignored; people per bin in brackets)",
                                caption=f"{title} (people outside a bin ignored; people per bin in brackets)"))
    return tables, out


def make_interval_table(dataset: str, results_root: str | os.PathLike | pd.DataFrame = "results",
                        out_dir: str | os.PathLike = "results/tables", *, baseline: str | None = None,
                        resamples: int = 1000, seed: int = 0, echo: bool = True) -> pd.DataFrame:
    """``<dataset>_intervals.md/.csv``: each measured run that kept its predictions, its AP with a 95%
    paired-bootstrap interval (±: half its width), its difference from ``baseline`` (a model name; default
    the first run of the split in table order) with interval and sign flips (* = excludes 0); runs that
    differ only in seed also get a pooled row, mean ± std over n seeds.  Runs are paired per split
    (the same annotation file)."""

    df = as_frame(results_root)
    rows = df[(df["kind"] == "measured") & (df["dataset"] == dataset)].sort_values(["split", "family", "model", "seed"])
    groups: dict[tuple, list] = {}
    skipped = 0
    for r in rows.itertuples():
        try:
            rec, preds = load_run(r.file)
        except (FileNotFoundError, ValueError):
            skipped += 1
            continue
        groups.setdefault((r.split, rec["predictions"]["ann_file"]), []).append((r, rec, preds))
    records = []
    for (split, ann), runs in groups.items():
        meta = resolve_meta(runs[0][1]["predictions"].get("dataset", dataset), None, ann)
        gt = load_coco_gt(ann)
        names = [f"{display_name(r.model)} {int(r.input_h)}x{int(r.input_w)} seed {int(r.seed)} #{i}"
                 for i, (r, _, _) in enumerate(runs)]
        base = 0
        if baseline is not None:
            hits = [i for i, (r, _, _) in enumerate(runs) if baseline in (r.model, r.display_name)]
            base = hits[0] if hits else 0
        sets = [load_set(n, p, ann, meta, coco_gt=gt) for n, (_, _, p) in zip(names, runs)]
        res = compare(sets, resamples=resamples, seed=seed, baseline=names[base] if len(sets) > 1 else None)
        diffs = {d.a: d for d in res.diffs}
        pooled: dict[tuple, list] = {}
        for n, (r, rec, _) in zip(names, runs):
            m, d = res.models[n], diffs.get(n)
            records.append({
                "Backbone": display_name(r.model), "Input": f"{int(r.input_h)}x{int(r.input_w)}", "Split": split,
                "Seed": str(int(r.seed)), "n": 1, "AP": f"{m.value:.3f}", "± (95%)": f"{(m.hi - m.lo) / 2:.3f}",
                f"Δ AP vs {display_name(runs[base][0].model)}": "baseline" if d is None else
                f"{d.diff:+.3f}{'*' if d.excludes_zero else ''}",
                "95% interval of Δ": "–" if d is None else f"[{d.lo:+.3f}, {d.hi:+.3f}]",
                "sign flips": "–" if d is None else f"{d.sign_flip:.1%}", "Source": f"measured: {r.experiment}"})
            pooled.setdefault(tuple(getattr(r, c) for c in SEED_FREE_KEY), []).append((r, m.value))
        for key, vals in pooled.items():
            if len(vals) > 1:
                mean, std, k = mean_std([v for _, v in vals])
                r = vals[0][0]
                records.append({"Backbone": display_name(r.model), "Input": f"{int(r.input_h)}x{int(r.input_w)}",
                                "Split": split, "Seed": ", ".join(str(int(x.seed)) for x, _ in vals), "n": k,
                                "AP": f"{mean:.3f} ± {std:.3f} (n={k})", "± (95%)": "–",
                                "Source": f"measured: {r.experiment}, seeds pooled (mean ± std)"})
    cols = ["Backbone", "Input", "Split", "Seed", "n", "AP", "± (95%)"]
    extra = sorted({k for rec in records for k in rec} - set(cols) - {"Source", "95% interval of Δ", "sign flips"})
    cols += extra + ["95% interval of Δ", "sign flips", "Source"]
    table = pd.DataFrame(records, columns=cols).fillna("–")
    notes = (f"± (95%): half the width of the 95% percentile interval over {resamples} bootstrap resamples of the "
             "split's images (the same resamples for every run of a split: differences are paired); * = the "
             "difference's interval excludes 0; sign flips: the fraction of resamples in which the difference has "
             "the other sign. Reported rows have no intervals (the papers give one number).")
    if skipped:
        notes += f" {skipped} measured run(s) without stored predictions are not listed."
    rendered = _text_table(table, f"AP with bootstrap intervals: {dataset}", f"{dataset}_intervals", notes)
    rendered.write(Path(out_dir) / f"{dataset}_intervals")
    if echo:
        print(rendered.markdown())
    return table


def demo_breakdown_figure(results: list[dict], out_dir: str | os.PathLike) -> list[Path]:
    """``occluded_ap_by_occlusion.png/pdf``: the demo's occluded split, AP per occlusion level per family."""

    rows, columns = [], []
    for r in results:
        recs = r.get("records") or []
        bd = _read_breakdown(recs[1]) if len(recs) > 1 else None
        if not bd:
            continue
        bins = {}
        for attr in bd["attributes"]:
            for b in attr["bins"]:
                col = f"{attr['attribute']}: {b['bin']}"
                if col not in columns:
                    columns.append(col)
                bins[col] = mean_std([b.get("AP")])
        rows.append({"display_name": display_name(r["model"]), "family": canonical_family(r["family"]), "n": 1,
                     "bins": bins})
    return make_breakdown_figure("occluded", None, out_dir, rows=rows, columns=columns,
                                 title="Demo, occluded split (GT boxes): AP per occlusion level")
