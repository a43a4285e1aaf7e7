"""Everything ``make table-*`` / ``make figures`` write, one call each: the CLI and the notebook use these.

* :func:`build_tables` -- for one dataset the comparison table (:func:`harness.report.tables.make_table`),
  the AP-by-occlusion table and the bootstrap-interval table (:mod:`harness.report.breakdown`), each as
  ``.md/.tex/.csv``.
* :func:`build_figures` -- the accuracy-vs-cost figures (:func:`harness.report.figures.make_figures`)
  and, per dataset, AP per occlusion level (:func:`harness.report.breakdown.make_breakdown_figure`).
"""
from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from .breakdown import make_breakdown_figure, make_breakdown_table, make_interval_table
from .costs import LiveProfile
from .figures import FigureSet, make_figures
from .tables import SPECS, as_frame, make_table

__all__ = ["build_tables", "build_figures"]


def build_tables(dataset: str, results_root: str | os.PathLike | pd.DataFrame = "results",
                 out_dir: str | os.PathLike = "results/tables", *, live: bool = True,
                 live_profile: LiveProfile | None = None, baseline: str | None = None, resamples: int = 1000,
                 echo: bool = True) -> dict[str, pd.DataFrame]:
    """Write ``<dataset>.*``, ``<dataset>_breakdown.*`` and ``<dataset>_intervals.*`` (md, tex, csv) to
    ``out_dir``; return ``{"table", "breakdown", "intervals"}`` frames. ``live``/``live_profile``: as in
    :func:`~harness.report.tables.make_table`; ``baseline``/``resamples``: as in
    :func:`~harness.report.breakdown.make_interval_table`."""
    df = as_frame(results_root)
    return {"table": make_table(dataset, df, out_dir, live_profile, live=live, echo=echo),
            "breakdown": make_breakdown_table(dataset, df, out_dir, echo=echo),
            "intervals": make_interval_table(dataset, df, out_dir, baseline=baseline, resamples=resamples, echo=echo)}


def build_figures(results_root: str | os.PathLike | pd.DataFrame = "results",
                  out_dir: str | os.PathLike = "results/figures", datasets: Sequence[str] = tuple(SPECS)) -> FigureSet:
    """Write the accuracy-vs-cost figures and ``<dataset>_ap_by_occlusion.{png,pdf}`` for each of
    ``datasets``; return what :func:`~harness.report.figures.make_figures` returns, with all files."""
    df = as_frame(results_root)
    result = make_figures(df, out_dir)
    for ds in datasets:
        result.files += make_breakdown_figure(ds, df, out_dir)
    return result
