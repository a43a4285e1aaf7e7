"""``harness.experiments.runner``: the expected-duration pieces (makespan, training-step probe)."""
from __future__ import annotations

import pytest
import torch

from harness import create_pose_model
from harness.experiments.runner import makespan, probe_train_step


def test_makespan_schedules_longest_first_onto_the_least_loaded_worker():
    assert makespan([3, 2, 2, 1], 2) == 4  # (3 + 1, 2 + 2)
    assert makespan([1, 5, 1], 2) == 5
    assert makespan([1, 5, 1], 1) == 7
    assert makespan([2, 2, 2], 3) == 2
    assert makespan([], 2) == 0.0
    with pytest.raises(ValueError, match="workers=0"):
        makespan([1.0], 0)


def test_probe_train_step_times_a_step_and_leaves_the_model_as_it_was():
    model = create_pose_model("hrnet-demo")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    s = probe_train_step(model, 2, (64, 48), iters=1)
    assert 0 < s < 60
    assert torch.get_num_threads() == threads
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics restored
    assert all(p.grad is None for p in model.parameters())
