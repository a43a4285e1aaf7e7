"""Helpers shared by the test suite (not tests themselves).

``tests/`` is on ``sys.path`` (``pythonpath`` in pyproject's pytest options), so every test, in any
subfolder and when run alone, imports them as ``from support import coco_mini`` or
``from support.paths import SHARED``.
"""
