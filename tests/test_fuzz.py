"""Property-based fuzzing (hypothesis) of the three parsers of user input (issue 15): the raw-predictions
parser, the annotation validator and the ``--set`` parser.

Property: any input either parses to a correct result -- every value exactly what was given, of the
declared type, nothing converted -- or raises the project's own error type (``PredictionError``,
``AnnotationError``, ``ConfigError``). Never another exception, never a silent coercion. Bounded
(``max_examples``, no deadline) so the file runs in seconds.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import typing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import Experiment, apply_overrides, get_experiment, valid_keys
from harness.data.coco import validate_annotations
from harness.data.metainfo import meta_from_dict
from harness.errors import AnnotationError, ConfigError, PredictionError
from harness.eval.postprocess import RawPredictions
from harness.validate import FLOAT32_MAX

# HRBENCH_FUZZ_EXAMPLES=5000 for a longer local hunt.
FUZZ = settings(max_examples=int(os.environ.get("HRBENCH_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# Any JSON value (json.load can also produce nan/inf from NaN/Infinity literals).
json_scalar = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                                             max_size=3),
                          max_leaves=6)


def _plain(v) -> bool:
    return type(v) in (int, float)


def _paths(obj, prefix=()):
    """Every (path) into a nested dict/list structure, the root excluded."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


# Replacement values: plausible numbers (so that many inputs stay valid and the success branch is
# checked too) or any JSON value.
replacement = (st.integers(min_value=-5, max_value=2000) | st.floats(min_value=-5, max_value=2000)
               | st.floats(min_value=0, max_value=1) | json_value)


@st.composite
def mutated(draw, base):
    """``base`` with up to two values replaced by other JSON, or deleted."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 2))):
        paths = list(_paths(obj))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(replacement)
    return obj


# ------------------------------------------------------------------------------------------- predictions
K = 3
_PRED = {"image_id": 7, "category_id": 1, "bbox": [1.0, 2.0, 30.0, 40.5], "bbox_score": 0.9, "area": 1200.0,
         "keypoints": [[10.0, 12.5], [11, 13], [20.25, 30.0]], "keypoint_scores": [0.9, 0.1, 1]}


@FUZZ
@given(mutated([_PRED, dict(_PRED, image_id=8)]))
def test_prediction_parser(preds):
    try:
        raw = RawPredictions.from_list(preds, K, source="raw.json")
    except PredictionError as e:
        assert str(e).startswith("raw.json"), str(e)
        return
    # success: exactly what was given, of the right type
    assert len(raw) == len(preds)
    for i, p in enumerate(preds):
        assert type(p["image_id"]) is int and raw.image_ids[i] == p["image_id"]
        assert type(p.get("category_id", 1)) is int and raw.category_ids[i] == p.get("category_id", 1)
        for name, arr in (("bbox_score", raw.bbox_scores), ("area", raw.areas)):
            assert _plain(p[name]) and math.isfinite(p[name]) and arr[i] == p[name]
        assert p["area"] > 0 and 0 <= p["bbox_score"] <= 1
        flat = [v for xy in p["keypoints"] for v in xy]
        assert all(_plain(v) and abs(v) <= FLOAT32_MAX for v in flat + p["keypoint_scores"])
        assert np.array_equal(raw.keypoints[i].ravel(), np.float32(flat))
        assert np.array_equal(raw.keypoint_scores[i], np.float32(p["keypoint_scores"]))
        if raw.bboxes is not None:
            assert all(_plain(v) for v in p["bbox"]) and raw.bboxes[i].tolist() == [float(v) for v in p["bbox"]]


# ------------------------------------------------------------------------------------------- annotations
META = meta_from_dict({"name": "three", "keypoint_names": ["a", "b", "c"], "sigmas": [0.05, 0.05, 0.05]})
_ANN = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
               {"id": 2, "file_name": "sub/b.jpg", "width": 64.0, "height": 48}],
    "annotations": [{"id": 10, "image_id": 1, "bbox": [1, 2, 30, 40], "area": 1200.0, "iscrowd": 0,
                     "keypoints": [1, 2, 2, 3.5, 4, 1, 0, 0, 0]},
                    {"id": 11, "image_id": 2, "bbox": [0.5, 2, 3, 4], "keypoints": [1, 2, 2, 3, 4, 2, 5, 6, 2]}],
    "categories": [{"id": 1, "name": "person", "keypoints": ["a", "b", "c"]}],
}


@FUZZ
@given(mutated(_ANN))
def test_annotation_validator(data):
    try:
        v = validate_annotations(data, META, "ann.json")
    except AnnotationError as e:
        assert "ann.json" in str(e), str(e)
        return
    ids = [a["id"] for a in data["annotations"]]
    assert all(type(i) is int for i in ids) and len(set(ids)) == len(ids)
    assert set(v.images) == {img["id"] for img in data["images"]}
    for img in data["images"]:
        assert type(img["id"]) is int and isinstance(img["file_name"], str)
        assert not img["file_name"].startswith("/") and ".." not in img["file_name"].split("/")
    for i, a in enumerate(data["annotations"]):
        assert type(a["image_id"]) is int and a["image_id"] in v.images
        assert all(_plain(x) and abs(x) <= FLOAT32_MAX for x in a["bbox"] + a["keypoints"])
        assert v.bboxes[i].tolist() == [float(x) for x in a["bbox"]]
        assert v.keypoints[i].ravel().tolist() == [float(x) for x in a["keypoints"]]


# ------------------------------------------------------------------------------------------- --set
EXP = get_experiment("demo-hrnext")
KEYS = valid_keys(EXP)
# Every dataclass section of an Experiment (model, data, ..., source): derived, so a new section is fuzzed too.
_HINTS = {f.name: typing.get_type_hints(type(getattr(EXP, f.name))) for f in dataclasses.fields(EXP)
          if dataclasses.is_dataclass(getattr(EXP, f.name))}
_TEXTS = st.sampled_from(["10", "0", "-3", "0x10", "1e3", "2.5", "nan", "inf", "true", "False", "yes", "none",
                          "null", "", "256x192", "128,96", "[1, 2]", "[0.9, 0.99]", "{}", '{"a": 1}', "abc",
                          " 7 ", "1_000", "cuda", "det", "gt", "adam", "msra", "light"]) | st.text(max_size=10)


def _declared(key: str):
    section, _, name = key.partition(".")
    return _HINTS[section][name] if name else typing.get_type_hints(Experiment)[section]


@FUZZ
@given(st.sampled_from(KEYS) | st.text(max_size=12), _TEXTS)
def test_set_parser(key, text):
    try:
        exp = apply_overrides(EXP, [f"{key}={text}"])
    except ConfigError:
        return
    assert key in KEYS
    section, _, name = key.partition(".")
    got = getattr(getattr(exp, section), name) if name else getattr(exp, section)
    tp = _declared(key)
    if typing.get_origin(tp) is typing.Union and got is None:
        assert text.lower() in ("none", "null")
        return
    inner = [a for a in typing.get_args(tp) if a is not type(None)][0] if typing.get_origin(tp) is typing.Union else tp
    if inner is bool:
        assert type(got) is bool and text.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off")
    elif inner is int:
        assert type(got) is int and got == int(text.strip(), 0)
    elif inner is float:
        assert type(got) is float and math.isfinite(got) and got == float(text)
    elif inner is str or typing.get_origin(inner) is typing.Literal:
        assert got == text
    elif inner is tuple:
        assert isinstance(got, tuple)
    # whatever was accepted survives a round trip through the saved config unchanged
    assert Experiment.from_dict(exp.to_dict()) == exp


def test_set_parser_refuses_silent_coercions():
    for bad in ("train.epochs=1.5", "train.epochs=true", "optim.lr=nan", "optim.lr=inf", "train.ema=2",
                "data.input_size=abc", "data.input_size=255x192", "data.val_boxes=1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", r"\.")):
            apply_overrides(EXP, [bad])
    assert dataclasses.replace(EXP) == EXP
