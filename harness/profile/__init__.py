"""Costs in one place: what a model costs (counting), how fast it runs (timing), side by side with the
reference implementations, and the data/evaluation bench.

* :mod:`.counting`: ``count_params``, ``model_params``, ``count_gflops`` (fvcore), ``paper_gflops`` (the
  family's paper convention), ``profile_static`` (both, cached, for a registered model with overrides),
  the conventions and their fit to the paper's figures.
* :mod:`.timing`: ``make_step`` (the ``optimizer`` and ``refkit`` step protocols, optional autocast),
  ``time_step`` (warm-up, synchronised timed steps), ``peak_memory``, ``profile_runtime``, ``machine_info``.
* :mod:`.records`: ``write_profile_record`` -> ``results/profiles/``.
* :mod:`.sidebyside` (+ :mod:`.steptimer`, our side's process): ours against the reference kit, alternating
  processes, median ratio with spread, torch versions checked.
* :mod:`.databench`: data pipeline (ours vs mmpose) and evaluation timings.
* :mod:`.gpucheck`: ``python -m harness gpu-check`` (imported on demand: it pulls in the trainer).
"""
from __future__ import annotations

from .counting import (COMPONENTS, CONVENTIONS, PAPER_CONVENTION, Convention, PaperFigure, ProfileStatic,
                       count_gflops, count_params, default_input_hw, fit_conventions, fvcore_flops, hook_components,
                       hook_flops, model_params, paper_figure, paper_figures, paper_gflops, parse_hw, profile_static,
                       SDPA_OPS, sdpa_flop_jit)
from .records import PROFILES_DIR, record_path, write_profile_record
from .timing import (MODES, PROTOCOLS, CudaPeak, PeakRSS, machine_info, make_step, peak_memory, profile_runtime,
                     sync, time_step)

__all__ = ["COMPONENTS", "CONVENTIONS", "Convention", "CudaPeak", "MODES", "PAPER_CONVENTION", "PROFILES_DIR",
           "PROTOCOLS", "PaperFigure", "PeakRSS", "ProfileStatic", "count_gflops", "count_params", "default_input_hw",
           "fit_conventions", "fvcore_flops", "hook_components", "hook_flops", "machine_info", "make_step",
           "model_params", "paper_figure", "paper_figures", "paper_gflops", "parse_hw", "peak_memory",
           "profile_runtime", "profile_static", "record_path", "SDPA_OPS", "sdpa_flop_jit", "sync", "time_step",
           "write_profile_record"]
