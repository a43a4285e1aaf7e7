"""The suite's fixed locations, computed once here so that a test's folder depth never matters."""
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]  # tests/
REPO = TESTS.parent  # the repository root
SHARED = REPO.parent / "shared"  # the read-only reference data next to the checkout
SHARED_DATA = SHARED / "data"  # real COCO-format samples (coco-mini, coco-samples, ochuman-samples, ...)
COCO_MINI = SHARED_DATA / "coco-mini"
FIXTURES = TESTS / "fixtures"  # committed fixtures: jpeg, mmpose_ref, recipe_facts, records, reference
MMPOSE_REF = FIXTURES / "mmpose_ref"  # numbers produced by mmpose 1.3.2 (make_*.py next to them)
RECIPE_FACTS = FIXTURES / "recipe_facts"  # values read from the recipes' source configs
RESULTS = REPO / "results"
