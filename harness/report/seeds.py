"""Seed pooling: runs that differ only in their seed become one row, mean ± std over n seeds.

Every table and plot that shows measured runs pools through here (the comparison tables and figures,
the occlusion breakdown, the interval tables), so "differs only in seed" and "mean ± std" mean the
same everywhere:

* :data:`SEED_FREE_KEY` -- the result-frame columns that identify a run up to its seed.
* :func:`mean_std` -- (mean, sample standard deviation, n) of the values that are present.
* :func:`pool_seeds` -- a results frame with its measured rows pooled.
* :func:`format_mean_std` -- ``0.412`` for one seed, ``0.412 ± 0.010 (n=3)`` for several.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

import pandas as pd

__all__ = ["SEED_FREE_KEY", "mean_std", "pool_seeds", "format_mean_std"]

# Columns of the results frame (harness.results.load_results) that identify a run up to its seed.
SEED_FREE_KEY = ("kind", "model", "dataset", "split", "boxes", "input_h", "input_w", "experiment")


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), n) over the values that are not None/NaN; (nan, nan, 0) for none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def format_mean_std(ms: tuple[float, float, int], digits: int = 3, missing: str = "–") -> str:
    """``mean`` for n = 1, ``mean ± std (n=N)`` for more, ``missing`` for n = 0."""
    m, s, n = ms
    if n == 0:
        return missing
    return f"{m:.{digits}f}" if n == 1 else f"{m:.{digits}f} ± {s:.{digits}f} (n={n})"


def pool_seeds(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """``df`` with each group of measured rows that differ only in seed replaced by one row.

    The pooled row keeps the first run's other fields (the latest date), has ``metrics`` set to the
    mean over the group's seeds, and gains ``n`` (runs pooled), ``seeds`` (sorted list) and
    ``<metric> std`` (sample std; 0 for one run). Other rows (reported, profiles) pass through with
    ``n`` = 1 for measured rows and 0 otherwise. The pooled row takes the place of the group's latest
    run; the index is renumbered.
    """
    out = df.reset_index(drop=True)
    out["n"] = (out["kind"] == "measured").astype(int)
    out["seeds"] = [[int(s)] if k == "measured" and pd.notna(s) else [] for k, s in zip(out["kind"], out["seed"])]
    for m in metrics:
        out[f"{m} std"] = [0.0 if k == "measured" and pd.notna(v) else math.nan for k, v in zip(out["kind"], out[m])]
    measured = out[out["kind"] == "measured"]
    if measured.empty:
        return out
    key = [c for c in SEED_FREE_KEY if c in out.columns]
    groups = measured.groupby(key, dropna=False, sort=False).groups
    drop = []
    for idx in groups.values():
        if len(idx) < 2:
            continue
        idx = list(idx)
        first = idx[0]
        if "date" in out.columns and out.loc[idx, "date"].notna().any():
            first = out.loc[idx, "date"].idxmax()
        for m in metrics:
            mean, std, _ = mean_std(out.loc[idx, m])
            out.at[first, m], out.at[first, f"{m} std"] = mean, std
        out.at[first, "n"] = len(idx)
        out.at[first, "seeds"] = sorted(int(s) for s in out.loc[idx, "seed"] if pd.notna(s))
        drop += [i for i in idx if i != first]
    return out.drop(index=drop)
