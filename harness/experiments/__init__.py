"""Experiments built on the engine: what they are (definitions) and how they run (the runner).

* :mod:`harness.experiments.demo` -- ``make demo``: the three demo families under one recipe.
* :mod:`harness.experiments.ablation` -- named grids of HRNeXt switches (``make ablation``).
* :mod:`harness.experiments.runner` -- the machinery both use: side-by-side jobs, the one cost call,
  latency, CPU time and the statistics of repeated runs.

Tables and plots of both are drawn by :mod:`harness.report.experiments`; finished work is recognised by
:func:`harness.io.read_marker`.
"""
