"""The six paper models reproduce the reference implementations' heatmaps through load_weights."""
import numpy as np
import pytest
import torch

from harness import create_pose_model, load_weights
from support.reference_rule import PAPER_MODELS, expected_heatmaps, manifest, reference_input, reference_state_dict

EXPECTED_LAYOUT = {"hrnet": "hrbench", "hrformer": "hrbench", "hrnext": "hrnext-authors"}


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_reproduces_reference_heatmaps(name):
    m = manifest(name)
    model = create_pose_model(name).eval()
    assert sum(p.numel() for p in model.parameters()) == m["params"]
    # every reference key maps onto exactly one of ours, with the same shape
    report = load_weights(model, reference_state_dict(name))
    assert report.layout == EXPECTED_LAYOUT[name.split("-")[0]]
    assert report.ok and report.loaded == sum(v["dtype"].startswith("torch.float") for v in m["keys"].values())
    assert len(model.state_dict()) == len(m["keys"])
    with torch.no_grad():
        out = model(reference_input(*m["input_hw"])).numpy()
    expected = expected_heatmaps(name)
    assert out.shape == expected.shape == tuple(m["output_shape"])
    rel = np.abs(out - expected).max() / np.abs(expected).max()
    assert rel < 1e-3, f"{name}: max relative error {rel:.2e}"


@pytest.mark.parametrize("name", ["hrformer-s", "hrnext-s"])
def test_reference_float64_is_exact(name):
    """In float64 the maths agree to ~1e-7, well below float32 rounding (see NOTES: hrnext-b amplifies it)."""
    m = manifest(name)
    model = create_pose_model(name).eval().double()
    load_weights(model, reference_state_dict(name))
    with torch.no_grad():
        out = model(reference_input(*m["input_hw"]).double()).numpy()
    expected = expected_heatmaps(name)
    assert np.abs(out - expected).max() / np.abs(expected).max() < 1e-6
