"""The validator kit: small checks that either return a clean value or raise an error naming the field.

Every check takes ``where`` -- what the value is (``"train.epochs"``, ``"--input-size"``,
``"annotation file a.json: annotations[3].bbox"``) -- and ``error``, the :class:`~harness.errors.HrbenchError`
subclass to raise (:class:`~harness.errors.ConfigError` by default). Nothing is coerced silently:
a boolean is not a number, ``"12"`` is not a number, ``785.7`` is not an id. The one place where
text is converted is :func:`coerce` (``--set`` values and JSON config fields, typed by the
dataclass annotation) and :func:`parse_hw` (``"256x192"``).
"""
from __future__ import annotations

import json
import math
import numbers
import typing
from typing import Any, Iterable, Literal

from harness.errors import ConfigError, HrbenchError, UsageError

__all__ = ["fail", "positive", "choice", "is_number", "is_integer", "is_finite_number", "number", "integer", "check_hw", "parse_hw", "coerce", "scalar",
           "FLOAT32_MAX"]

# Largest finite float32: annotation and prediction numbers end up in float32 arrays.
FLOAT32_MAX = 3.4028234663852886e38

ErrorType = type[HrbenchError]


def fail(where: str, msg: str, error: ErrorType = ConfigError) -> typing.NoReturn:
    """Raise ``error("<where>: <msg>")``."""
    raise error(f"{where}: {msg}")


def is_number(v: Any) -> bool:
    """A real number that is not a bool (numpy scalars count)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_integer(v: Any) -> bool:
    """An integer that is not a bool (numpy integers count)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_finite_number(v: Any) -> bool:
    """A finite real number that is not a bool (numpy scalars count)."""
    return is_number(v) and math.isfinite(float(v))


def number(v: Any, where: str, error: ErrorType = ConfigError, *, float32: bool = False) -> float:
    """``v`` as a float if it is a finite real number (not a bool, not a string); ``float32``: it must
    also fit into float32 (1e300 does not)."""
    if not is_number(v) or not math.isfinite(float(v)) or (float32 and abs(float(v)) > FLOAT32_MAX):
        what = "a finite number" + (" within float32 range" if float32 else "")
        fail(where, f"{v!r} is not {what}", error)
    return float(v)


def integer(v: Any, where: str, error: ErrorType = ConfigError) -> int:
    """``v`` if it is an integer (not a bool, not a float such as 785.7 or 785.0, not a string)."""
    if not is_integer(v):
        fail(where, f"{v!r} is not an integer", error)
    return int(v)


def positive(where: str, value: Any, *, allow_zero: bool = False, kind: tuple = (int,),
             error: ErrorType = ConfigError) -> None:
    """``value`` is an instance of ``kind`` (never a bool), finite, and > 0 (>= 0 with ``allow_zero``)."""
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        fail(where, f"must be a number {bound} of type {'/'.join(k.__name__ for k in kind)}, got {value!r}", error)


def choice(where: str, value: Any, choices: Iterable, error: ErrorType = ConfigError) -> None:
    choices = tuple(choices)
    if isinstance(value, bool) or value not in choices:  # True == 1 must not pass for a choice of 1
        fail(where, f"must be one of {list(choices)}, got {value!r}", error)


def check_hw(where: str, value: Any, *, multiple_of: int = 4, error: ErrorType = ConfigError) -> tuple[int, int]:
    """``value`` is (height, width): two positive ints, both divisible by ``multiple_of``.

    Pose inputs use ``multiple_of=4``: heatmaps are 1/4 of the input (the backbones pad or resize
    their deepest 1/32 branch internally).
    """
    if not (isinstance(value, (tuple, list)) and len(value) == 2
            and all(is_integer(v) and v > 0 for v in value)):
        fail(where, f"must be (height, width) of two positive ints, got {value!r}", error)
    if value[0] % multiple_of or value[1] % multiple_of:
        fail(where, f"both sides must be divisible by {multiple_of}, got {value!r}", error)
    return int(value[0]), int(value[1])


def parse_hw(value: str | Iterable[int], where: str = "input size", *, multiple_of: int = 1,
             error: ErrorType = UsageError) -> tuple[int, int]:
    """``"256x192"``, ``"256,192"``, ``"256*192"`` or ``(256, 192)`` -> ``(256, 192)`` (height, width).

    Anything else (``"abc"``, ``"256"``, ``"0x8"``, ``(1.5, 2)``) raises ``error`` naming ``where``.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.lower().replace("*", "x").replace(",", "x").split("x")]
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            fail(where, f"expected HxW such as 256x192, got {value!r}", error)
        hw: Any = tuple(int(p) for p in parts)
    else:
        try:
            hw = tuple(value)
        except TypeError:
            fail(where, f"expected HxW such as 256x192, got {value!r}", error)
    return check_hw(where, hw, multiple_of=multiple_of, error=error)


def scalar(text: str) -> Any:
    """A command-line scalar: a JSON number/bool/null, else the string itself."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a JSON value or a command-line string to the annotated type ``tp`` (``ConfigError``
    naming ``where`` otherwise).

    Strings are converted only where the type asks for it (``"10"`` -> 10 for an int field,
    ``"true"`` -> True for a bool field, ``"256x192"`` -> (256, 192) for a tuple field); JSON values
    must already have the right type (a bool is not an int, a float with a fraction is not an int).
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where)
    if origin is Literal:
        if isinstance(value, bool) or value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip(), 0)
            except ValueError:
                pass
        raise ConfigError(f"{where}: must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                raise ConfigError(f"{where}: must be a number, got {value!r}") from None
        else:
            raise ConfigError(f"{where}: must be a number, got {value!r}")
        if not math.isfinite(out):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {value!r}")
        return value
    if tp is tuple:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except (json.JSONDecodeError, RecursionError):
                    raise ConfigError(f"{where}: not a JSON list: {value!r}") from None
            else:  # "256,192" or "256x192"
                parts = [p for p in text.replace("x", ",").split(",") if p.strip()] if text else []
                value = [scalar(p.strip()) for p in parts]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: must be a list, got {value!r}")
        return tuple(value)
    if tp is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                raise ConfigError(f"{where}: not a JSON object: {value!r}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: must be an object, got {value!r}")
        return dict(value)
    return value
