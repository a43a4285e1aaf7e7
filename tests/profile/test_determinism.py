"""Two fresh processes training a demo model on one torch thread end with bit-identical weights."""
from __future__ import annotations

from harness.profile.determinism import check


def test_demo_training_is_bit_reproducible_on_one_thread(tmp_path):
    verdicts = check("hrnet", iters=2, out=tmp_path, only=["base-again"])
    assert verdicts == {"base": "reference", "base-again": "bit-identical"}
