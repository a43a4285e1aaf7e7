"""Training gradients equal the reference implementations' (float64, every parameter of the six paper models).

Fixtures: ``tests/fixtures/reference/make_gradient_fixtures.py`` (run once in the reference kit); each
parameter's gradient is compared through its sum of squares and its dot product with a seeded probe.
"""
import json
import math
import statistics

import pytest
import torch

from harness import create_pose_model, load_weights
from support.reference_rule import FIXTURES, PAPER_MODELS, fingerprint, grad_probe_batch, reference_state_dict

# Relative error allowed per parameter, the same for every family: on the well-conditioned probe batch
# (support.reference_rule.grad_probe_batch) all six agree with the reference to <= ~4e-12 (median ~2e-13).
MAX_TOL = 1e-9
MEDIAN_TOL = 1e-11
ZERO = 1e-12  # gradients this small relative to the model's largest are exact zeros up to rounding


def _fixture(name):
    return json.loads((FIXTURES / f"{name}.grads.json").read_text())


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_training_gradients_equal_the_reference(name):
    want = _fixture(name)
    model = create_pose_model(name, drop_path_rate=0.0)
    load_weights(model, reference_state_dict(name))
    model = model.double().train()
    x, probe = grad_probe_batch(torch.float64)
    out = model(x)
    (out * probe).sum().backward()
    out_fp, out_want = fingerprint("output", out), want["output"]
    assert abs(out_fp[1] - out_want[1]) <= 1e-6 * math.sqrt(out_want[0])
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert sorted(grads) == sorted(want["grads"])
    biggest = max(math.sqrt(v[0]) for v in want["grads"].values())
    errors = []
    for k, g in grads.items():
        got, ref = fingerprint(k, g), want["grads"][k]
        scale = math.sqrt(ref[0])
        if scale < ZERO * biggest:  # a structural zero (e.g. a conv bias before a batch-statistics BN)
            assert math.sqrt(got[0]) < ZERO * biggest, k
            continue
        # the norm, and the dot product with an N(0, 1) probe (about |g| in size), at |g|'s scale
        err = max(abs(math.sqrt(got[0]) - scale), abs(got[1] - ref[1])) / scale
        assert err < MAX_TOL, f"{k}: relative gradient error {err:.2e}"
        errors.append(err)
    assert statistics.median(errors) < MEDIAN_TOL
