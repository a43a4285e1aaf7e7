"""Comparison tables: the paper's reported rows and this harness's measured rows, side by side.

One table per dataset, one row per (model, input size, source). Columns are the HRNeXt paper's
(Backbone, Pretrain, Input, #Params, FLOPs, AP ... AR) plus the live parameter/FLOP counts of this
repo's models and a Source column. Written as Markdown, LaTeX (booktabs) and CSV.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.io import atomic_write_text
from harness.results import load_results
from harness.results.schema import FAMILY_ORDER, METRIC_NAMES

from .costs import LiveProfile, cached_profiles, collect_costs, default_live_profile
from .seeds import pool_seeds
from .tabular import Column, Strong, Table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    column: str  # name in the results frame (mmpose's)
    header: str  # the paper's header
    tex: str  # LaTeX header


_COCO_METRICS = (
    Metric("AP", "AP", "AP"), Metric("AP .5", "AP50", r"AP$^{50}$"), Metric("AP .75", "AP75", r"AP$^{75}$"),
    Metric("AP (M)", "APM", r"AP$^{M}$"), Metric("AP (L)", "APL", r"AP$^{L}$"), Metric("AR", "AR", "AR"),
)
# CrowdPose reports the crowd-index splits instead of object sizes.
_CROWDPOSE_METRICS = (
    Metric("AP", "AP", "AP"), Metric("AP .5", "AP50", r"AP$^{50}$"), Metric("AP .75", "AP75", r"AP$^{75}$"),
    Metric("AP(E)", "APE", r"AP$^{E}$"), Metric("AP(M)", "APM", r"AP$^{M}$"), Metric("AP(H)", "APH", r"AP$^{H}$"),
    Metric("AR", "AR", "AR"),
)


@dataclass(frozen=True)
class TableSpec:
    """One benchmark table: its rows must have been evaluated under its protocol (``split`` and
    ``boxes``); rows of the same dataset under another protocol go under their own heading."""

    dataset: str
    title: str
    metrics: tuple[Metric, ...]
    split: str | None = None  # None: any split (a dataset without a paper protocol)
    boxes: str | None = None  # "det" / "gt"; None: any


SPECS: dict[str, TableSpec] = {
    "coco": TableSpec("coco", "COCO val2017 (person detector boxes)", _COCO_METRICS, split="val", boxes="det"),
    "ochuman": TableSpec("ochuman", "OCHuman val (ground-truth boxes)", _COCO_METRICS, split="val", boxes="gt"),
    "crowdpose": TableSpec("crowdpose", "CrowdPose test", _CROWDPOSE_METRICS, split="test", boxes="det"),
}

_BOX_WORDS = {"det": "person detector boxes", "gt": "ground-truth boxes"}


def _split_name(split) -> str:
    """COCO's ``val2017`` and ``val`` are one split (the layout accepts both)."""
    s = str(split)
    return s[:-4] if s.endswith("2017") else s


def protocol_groups(df: pd.DataFrame, spec: TableSpec) -> tuple[pd.DataFrame, list[tuple[str, pd.DataFrame]]]:
    """Split ``df``'s rows of ``spec.dataset`` (reported + measured) into those evaluated under the
    table's protocol and, for every other (split, boxes), a ``(heading, rows)`` group."""
    rows = df[df["kind"].isin(["reported", "measured"]) & (df["dataset"] == spec.dataset)]
    split = rows["split"].map(_split_name)
    match = pd.Series(True, index=rows.index)
    if spec.split is not None:
        match &= split == spec.split
    if spec.boxes is not None:
        match &= rows["boxes"] == spec.boxes
    others = []
    rest = rows[~match]
    for (sp, bx), grp in rest.groupby([rest["split"].map(_split_name), rest["boxes"]], sort=True):
        heading = f"{spec.title.split(' (')[0].split(' ')[0]} {sp} ({_BOX_WORDS.get(bx, bx)}): not the table's protocol"
        others.append((heading, grp))
    return rows[match], others

ID_COLUMNS = ("Backbone", "Pretrain", "Input", "#Params (M)", "GFLOPs")
LIVE_COLUMNS = ("Params (live, M)", "GFLOPs (live)")


def _spec(dataset: str) -> TableSpec:
    if dataset in SPECS:
        return SPECS[dataset]
    # Any other dataset (e.g. the synthetic one) gets COCO-style columns.
    return TableSpec(dataset, dataset, _COCO_METRICS)


def _select_rows(df: pd.DataFrame, dataset: str, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Reported + measured rows of ``dataset`` under its table's protocol (or the given ``rows``, e.g. one
    of :func:`protocol_groups`' other groups); placeholders on the paper's grid where there are none."""
    if rows is None:
        rows = protocol_groups(df, _spec(dataset))[0]
    rows = rows.copy()
    if rows.empty:
        # Before any run on this dataset, still show what is known: the model/size grid and its costs.
        grid = df[df["kind"] == "reported"].drop_duplicates(["model", "input_h", "input_w"]).copy()
        if grid.empty:
            raise ValueError(f"no results for dataset {dataset!r} and no reported rows to build a grid from")
        log.info("no results for %s yet: listing the paper's models with costs only", dataset)
        grid[list(METRIC_NAMES)] = math.nan
        grid[["params_m", "gflops"]] = math.nan
        grid["kind"] = "pending"
        grid["dataset"] = dataset
        rows = grid
    # The paper's order: families as in FAMILY_ORDER, models as they appear in the reported tables
    # (W32 before W48, S before B), models only measured here after them by name.
    fam_rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    paper_order = df.loc[df["kind"] == "reported", "model"].drop_duplicates().tolist()
    model_rank = {m: i for i, m in enumerate(paper_order + sorted(set(rows["model"]) - set(paper_order)))}
    rows["_fam"] = rows["family"].map(fam_rank).fillna(len(fam_rank))
    rows["_model"] = rows["model"].map(model_rank)
    rows["_kind"] = rows["kind"].map({"reported": 0, "measured": 1, "pending": 2})
    return rows.sort_values(["_fam", "_model", "input_h", "input_w", "_kind", "date"], na_position="first")


def _citations(rows: pd.DataFrame) -> list[str]:
    """The table's source footnotes: each reported row's citation, then each measured row's recipe source
    (the store's ``source`` text, for runs whose record names the code its recipe was read from)."""
    reported = sorted(set(rows.loc[rows["kind"] == "reported", "source"]))
    with_recipe = (rows["kind"] == "measured") & rows["recipe_source"].notna()
    return reported + sorted(set(rows.loc[with_recipe, "source"]) - set(reported))


def _source(row, cite: dict[str, int]) -> str:
    if row.kind == "reported":
        return f"reported [{cite[row.source]}]"
    if row.kind == "pending":
        return "no result yet"
    date = "" if pd.isna(row.date) else f", {row.date:%Y-%m-%d}"
    ref = f" [{cite[row.source]}]" if row.source in cite else ""
    if row.n > 1:
        return (f"measured: {row.experiment} (seeds {', '.join(map(str, row.seeds))}; mean ± std, n={row.n}{date})"
                f"{ref}")
    return f"measured: {row.experiment} (seed {row.seed}{date}){ref}"


def _where(o: dict) -> str:
    """Where an other-source figure was read: ``owner/name@commit7:path line N``."""
    return f"{o['repo']}@{o['commit'][:7]}:{o['path']} line {o['line']}"


def disagreements(rows: pd.DataFrame, other_sources: list[dict], metrics: tuple[Metric, ...],
                  cite: dict[str, int]) -> list[str]:
    """One line per reported row and metric whose figure another source (``df.attrs["other_sources"]``,
    see :func:`harness.results.load_results`) publishes differently: the reported value and citation,
    then each other source's value and where it was read. Values equal to 3 decimals agree."""
    by_row: dict[tuple, list[dict]] = {}
    for o in other_sources:
        key = (o["model"], o["dataset"], _split_name(o["split"]), o["boxes"], o["input_h"], o["input_w"], o["metric"])
        by_row.setdefault(key, []).append(o)
    out = []
    for r in rows[rows["kind"] == "reported"].itertuples():
        for m in metrics:
            key = (r.model, r.dataset, _split_name(r.split), r.boxes, int(r.input_h), int(r.input_w), m.column)
            others = by_row.get(key, [])
            paper = rows.at[r.Index, m.column]
            if pd.isna(paper) or all(round(o["value"], 3) == round(float(paper), 3) for o in others):
                continue
            out.append(f"{r.display_name} {r.input_h}×{r.input_w} {m.header}: reported [{cite[r.source]}] "
                       f"{paper:.3f}; " + "; ".join(f"{o['source']} {o['value']:.3f} ({_where(o)})" for o in others))
    return out


def build_table(df: pd.DataFrame, dataset: str, live_profile: LiveProfile, *,
                rows: pd.DataFrame | None = None, title: str | None = None) -> pd.DataFrame:
    """The table as a frame (numbers kept numeric); see :func:`make_table`. ``rows``/``title``: build
    the table of another protocol group instead (see :func:`protocol_groups`). Measured runs that differ
    only in seed are one row (:func:`harness.report.seeds.pool_seeds`): metrics are the mean over the
    seeds, ``attrs["std"]`` / ``attrs["n"]`` the sample std and the number of seeds per row."""
    spec = _spec(dataset)
    rows = pool_seeds(_select_rows(df, dataset, rows), [m.column for m in spec.metrics])
    sources = _citations(rows)
    cite = {s: i for i, s in enumerate(sources, start=1)}
    keys = [(r.model, int(r.input_h), int(r.input_w)) for r in rows.itertuples()]
    costs = collect_costs(keys, live_profile)
    out = pd.DataFrame({
        "Backbone": rows["display_name"].to_numpy(),
        "Pretrain": rows["pretrain"].map({"imagenet": "Y", "none": "N"}).to_numpy(),
        "Input": [f"{h}x{w}" for h, w in zip(rows["input_h"], rows["input_w"])],
        "#Params (M)": rows["params_m"].to_numpy(),
        "GFLOPs": rows["gflops"].to_numpy(),
        **{m.header: rows[m.column].to_numpy() for m in spec.metrics},
        LIVE_COLUMNS[0]: [costs[k]["params"] / 1e6 for k in keys],
        LIVE_COLUMNS[1]: [costs[k]["gflops"] for k in keys],
        "Source": [_source(r, cite) for r in rows.itertuples()],
    })
    out.attrs["family"] = rows["family"].tolist()
    out.attrs["sources"] = sources
    out.attrs["disagreements"] = disagreements(rows, df.attrs.get("other_sources", []), spec.metrics, cite)
    out.attrs["title"] = title or spec.title
    out.attrs["metrics"] = [m.header for m in spec.metrics]
    out.attrs["tex_headers"] = [m.tex for m in spec.metrics]
    # Runs that differ only in seed are one row: the metric columns hold the mean, these the spread.
    out.attrs["n"] = rows["n"].tolist()
    out.attrs["std"] = {m.header: rows[f"{m.column} std"].tolist() for m in spec.metrics}
    return out


# --------------------------------------------------------------------------------------------- render


def _fmt(col: str, v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if col in ("#Params (M)", "GFLOPs"):
        return f"{v:.1f}"
    if col in LIVE_COLUMNS:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _best(table: pd.DataFrame, col: str) -> float:
    vals = pd.to_numeric(table[col], errors="coerce")
    return vals.max() if vals.notna().any() else math.nan


def _notes(table: pd.DataFrame) -> list[str]:
    notes = [f"[{i}] {s}" for i, s in enumerate(table.attrs.get("sources", []), start=1)]
    differ = table.attrs.get("disagreements", [])
    if differ:
        notes.append("Published elsewhere with other figures (the reported numbers above are kept as "
                     "printed):\n" + "\n".join(f"- {d}" for d in differ))
    bad = table.attrs.get("bad_files", [])
    if bad:
        notes.append(f"Skipped {len(bad)} malformed result file(s): "
                     + "; ".join(f"{b['file']} ({b['reason']})" for b in bad))
    notes.append("Best value per accuracy column in bold. #Params/GFLOPs: as reported or as recorded by the run; "
                 "(live): counted on this repository's models.")
    if any(k > 1 for k in table.attrs.get("n", [])):
        notes.append("Measured runs that differ only in seed are one row: mean ± sample std over the n seeds "
                     "named in Source (the CSV gives n and the std per metric).")
    return notes


def _columns(table: pd.DataFrame) -> list[Column]:
    metrics = table.attrs.get("metrics", [])
    tex = {"#Params (M)": r"\#Params (M)", LIVE_COLUMNS[0]: "Params$_{\\mathrm{live}}$ (M)",
           LIVE_COLUMNS[1]: "GFLOPs$_{\\mathrm{live}}$",
           **dict(zip(metrics, table.attrs.get("tex_headers", metrics)))}
    return [Column(c, "l" if c in ("Backbone", "Source") else ("c" if c in ("Pretrain", "Input") else "r"),
                   tex.get(c)) for c in table.columns]


def render(table: pd.DataFrame, label: str) -> Table:
    """The comparison table as a :class:`~harness.report.tabular.Table`: best accuracy per column in
    bold, input sizes as ``H×W``, sources as notes, a rule between model families (LaTeX)."""
    cols = list(table.columns)
    best = {c: _best(table, c) for c in table.attrs.get("metrics", [])}
    n = table.attrs.get("n") or [1] * len(table)
    std = table.attrs.get("std", {})
    rows = []
    for i, (_, r) in enumerate(table.iterrows()):
        cells = []
        for c in cols:
            s = _fmt(c, r[c]).replace("x", "×") if c == "Input" else _fmt(c, r[c])
            if c in std and n[i] > 1 and not isinstance(r[c], str) and not pd.isna(r[c]):
                s += f" ± {_fmt(c, std[c][i])}"
            cells.append(Strong(s) if c in best and not isinstance(r[c], str) and r[c] == best[c] else s)
        rows.append(cells)
    title = table.attrs.get("title", "")
    frame = table
    if any(k > 1 for k in n):  # the CSV keeps the spread of pooled rows: n and one std column per metric
        frame = table.copy()
        at = frame.columns.get_loc("Source")
        frame.insert(at, "n", n)
        for j, c in enumerate(table.attrs.get("metrics", [])):
            frame.insert(at + 1 + j, f"{c} std", std[c])
    return Table(_columns(table), rows, frame=frame, title=title, caption=f"{title}.", label=label,
                 notes=_notes(table), groups=table.attrs.get("family"),
                 comment=f"generated by hrbench (python -m harness table {label}); do not edit by hand")


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub Markdown: numbers right-aligned, best accuracy per column in bold, sources as notes."""
    return render(table, "").markdown()


def to_latex(table: pd.DataFrame, label: str) -> str:
    """A booktabs ``table`` float; a \\midrule separates model families."""
    return render(table, label).latex()


def as_frame(results: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A results root is read with :func:`load_results`; an already-loaded frame is used as is."""
    return results if isinstance(results, pd.DataFrame) else load_results(results)


def make_table(
    dataset: str,
    results_root: str | os.PathLike | pd.DataFrame = "results",
    out_dir: str | os.PathLike = "results/tables",
    live_profile: LiveProfile | None = None,
    *,
    live: bool = True,
    echo: bool = True,
) -> pd.DataFrame:
    """Merge reported and measured rows of ``dataset`` and write ``<dataset>.md/.tex/.csv`` to ``out_dir``.

    ``live_profile(model, (H, W)) -> {"params": int, "gflops": float}`` fills the "(live)" columns;
    ``None`` uses the harness profiler when available, else the cached ``results/profiles`` records;
    ``live=False`` uses only the cached records (no model is built).
    ``results_root`` may also be a frame from :func:`load_results` (saves re-reading the store).
    Malformed result files are reported by :func:`load_results` (logged, not fatal). The Markdown is
    printed when ``echo``. Returns the table (numeric cells stay numbers; NaN = not available).
    """
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset: expected a dataset name such as {sorted(SPECS)}, got {dataset!r}")
    df = as_frame(results_root)
    if not (df["dataset"] == dataset).any() and dataset not in SPECS:
        known = sorted(set(df["dataset"].dropna()) | set(SPECS))
        raise ValueError(f"dataset: no results for {dataset!r}; known datasets: {known}")
    if live_profile is None:
        live_profile = default_live_profile(df) if live else cached_profiles(df)
    table = build_table(df, dataset, live_profile)
    table.attrs["bad_files"] = df.attrs.get("bad_files", [])
    # Rows of this dataset evaluated under another protocol (split, boxes) never join the table's rows:
    # each such group gets its own heading (and its own CSV).
    others = [build_table(df, dataset, live_profile, rows=grp, title=heading)
              for heading, grp in protocol_groups(df, _spec(dataset))[1]]
    table.attrs["other_protocols"] = others
    out = Path(out_dir)
    rendered = render(table, dataset)
    rendered.write(out / dataset, formats=("csv",), float_format="%.6g")
    # Markdown/LaTeX: the table, then each other protocol's table under its own heading.
    extra = [render(t, f"{dataset}-other{i}") for i, t in enumerate(others, 1)]
    md = "\n".join([rendered.markdown()] + [t.markdown() for t in extra])
    atomic_write_text(out / f"{dataset}.md", md)
    atomic_write_text(out / f"{dataset}.tex", "\n".join([rendered.latex()] + [t.latex() for t in extra]))
    for t, (heading, grp) in zip(extra, protocol_groups(df, _spec(dataset))[1]):
        t.write(out / f"{dataset}.{_split_name(grp['split'].iloc[0])}-{grp['boxes'].iloc[0]}", formats=("csv",),
                float_format="%.6g")
    log.info("wrote %s/%s.{md,tex,csv} (%d rows)", out, dataset, len(table))
    if echo:
        print(md)
    return table
