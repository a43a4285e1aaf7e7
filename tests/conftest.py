"""Shared test fixtures."""
import pytest
import torch

from support import coco_mini  # tests/ is on sys.path: pyproject's [tool.pytest.ini_options] pythonpath

coco_mini.register()  # the coco-mini-<family> experiments the engine tests train (not in the product)


@pytest.fixture
def one_thread():
    """Run a test's torch work on one thread: small models are faster so, and tests on a shared
    2-core machine stop fighting each other for cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
