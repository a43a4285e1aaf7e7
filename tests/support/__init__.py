"""Helpers shared by the test suite (not tests themselves).

``tests/`` is on ``sys.path`` (``pythonpath`` in pyproject's pytest options), so every test, in any
subfolder and when run alone, imports them as ``from support import coco_mini`` or
``from support.paths import SHARED``. Because ``tests/`` is on ``sys.path``, no folder under it may
be named like an importable package (``tests/backbones/`` would shadow ``backbones``: the backbone tests
live in ``tests/zoo/``), and test file names are unique across folders (no ``__init__.py`` in them).
"""
