# hrbench: every target creates/updates the project venv (.venv) by itself.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned by default (a CUDA build that also runs on the CPU); override e.g. TORCH_SPEC="torch==2.5.1 torchvision==0.20.1".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: venv test test-fast demo bench gpu-check profile table-coco table-ochuman table-crowdpose figures ablation clean-venv help

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

test-fast: venv  ## the suite without the tests marked slow (local loops; CI runs `make test`)
	$(PY) -m pytest -q tests -m "not slow" $(PYTEST_ARGS)

demo: venv  ## the main job on the built-in synthetic dataset (CPU, minutes)
	$(PY) -m harness demo $(if $(FORCE),--force,)

table-coco table-ochuman table-crowdpose: venv  ## comparison tables (reported + measured rows, live params/GFLOPs)
	$(PY) -m harness table $(@:table-%=%)

figures: venv  ## accuracy-vs-cost plots and the qualitative comparison into results/figures
	$(PY) -m harness figures
	$(PY) -m harness visualize --out results/figures/qualitative.png

ablation: venv  ## HRNeXt context-module ablation on the synthetic crowds (CPU, < 30 min) -> results/ablations/default
	$(PY) -m harness ablate default --jobs 0 $(if $(FORCE),--force,)

# The reference kit (a scratch venv outside the repo, never a dependency): reused when it runs the project's
# torch, else rebuilt by its setup.sh with TORCH_SPEC; HRNEXT_MIRROR (a git mirror of ZiyiZhang27/HRNeXt) adds HRNeXt.
REFKIT ?=
REFKIT_DIR ?=
bench: venv  ## ours vs the reference implementations (same torch, alternating, >= 3 rounds), data, eval -> results/bench (QUICK=1: demo models, no reference)
	$(PY) -m harness bench --torch-spec "$(TORCH_SPEC)" $(if $(QUICK),--quick,) $(if $(REFKIT),--refkit $(REFKIT),) \
		$(if $(REFKIT_DIR),--refkit-dir $(REFKIT_DIR),) $(if $(HRNEXT_MIRROR),--hrnext-mirror $(HRNEXT_MIRROR),) \
		$(if $(ALLOW_MISMATCH),--allow-mismatch,)

gpu-check: venv  ## one GPU, < 8 min: images/s + memory (fp32, bf16+channels_last, compile), data loader, torchrun kill/resume -> results/bench/gpu-<device>.md (CPU=1: the tiny CPU path)
	$(PY) -m harness gpu-check $(if $(CPU),--cpu,)

profile: venv  ## params, GFLOPs (fvcore + paper convention), latency, memory: make profile MODEL=hrnext-s
	$(PY) -m harness profile $(MODEL) $(PROFILE_ARGS)

clean-venv:
	rm -rf $(VENV)
