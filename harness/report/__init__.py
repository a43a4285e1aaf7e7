"""Everything the harness writes for people to read: tables, figures and pictures of poses.

* :mod:`harness.report.tabular` -- the one table writer (Markdown, LaTeX, CSV; escaping).
* :mod:`harness.report.labels` -- the one label placer for scatter plots.
* :mod:`harness.report.plots` -- the one accuracy-vs-cost plotter (series, Agg figures, PNG/PDF).
* :mod:`harness.report.poses` -- the one skeleton drawer.
* :mod:`harness.report.tables` / :mod:`harness.report.figures` -- the comparison tables and figures built
  from the results store (``make table-*``, ``make figures``); :mod:`harness.report.costs` -- their live
  parameter/FLOP counts.
* :mod:`harness.report.breakdown` -- AP by occlusion level and bootstrap intervals as tables and a figure.
* :mod:`harness.report.seeds` -- the one seed pooling (mean ± std over n seeds) every table and plot uses.
* :mod:`harness.report.build` -- everything ``make table-*`` / ``make figures`` write, one call each (CLI,
  notebook).
* :mod:`harness.report.experiments` -- the demo's and the ablation grids' tables and plots.

Import the submodule you need (this package imports nothing itself, so drawing a pose does not load
pandas or the results store).
"""
