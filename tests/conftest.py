"""Shared test fixtures."""
import coco_mini  # a helper module next to this file (pytest puts tests/ on sys.path)
import pytest
import torch

coco_mini.register()  # the coco-mini-<family> experiments the engine tests train (not in the product)


@pytest.fixture
def one_thread():
    """Run a test's torch work on one thread: small models are faster so, and tests on a shared
    2-core machine stop fighting each other for cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
