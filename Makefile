# hrbench: every target creates/updates the project venv (.venv) by itself.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned by default (a CUDA build that also runs on the CPU); override e.g. TORCH_SPEC="torch==2.5.1 torchvision==0.20.1".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: venv test demo bench profile table-coco table-ochuman table-crowdpose figures ablation clean-venv help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

venv: $(VENV)/.installed  ## create/update the project venv

# Re-run only when the project's requirements change.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) $(TORCH_SPEC)
	$(PIP) numpy cython setuptools
	@# xtcocotools' wheel is built against numpy 1; build it from source against the installed numpy.
	$(PY) -c "import xtcocotools.mask" 2>/dev/null || $(PIP) --no-build-isolation --no-binary xtcocotools xtcocotools
	$(PIP) -e '.[dev]'
	@touch $@

test: venv  ## run the test suite
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

demo: venv  ## the main job on the built-in synthetic dataset (CPU, minutes)
	$(PY) -m harness demo $(if $(FORCE),--force,)

table-coco table-ochuman table-crowdpose: venv  ## comparison tables (reported + measured rows, live params/GFLOPs)
	$(PY) -m harness table $(@:table-%=%)

figures: venv  ## accuracy-vs-cost plots and the qualitative comparison into results/figures
	$(PY) -m harness figures
	$(PY) -m harness visualize --out results/figures/qualitative.png

ablation: venv  ## HRNeXt context-module ablation on the synthetic crowds (CPU, < 30 min) -> results/ablations/default
	$(PY) -m harness ablate default --jobs 0 $(if $(FORCE),--force,)

bench: venv  ## side-by-side speed report into results/bench (QUICK=1: demo models; REFKIT=python of the reference venv)
	$(PY) -m harness bench $(if $(QUICK),--quick,) $(if $(REFKIT),--refkit $(REFKIT),)

profile: venv  ## params, GFLOPs (fvcore + paper convention), latency, memory: make profile MODEL=hrnext-s
	$(PY) -m harness profile $(MODEL) $(PROFILE_ARGS)

clean-venv:
	rm -rf $(VENV)
