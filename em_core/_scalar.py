"""Turning metric values into Python numbers without importing any framework.

Tensors are recognised by duck typing (``numel``/``size``/``shape`` and ``item``), so
``import em_core`` never pulls in NumPy, PyTorch, TensorFlow, MXNet or JAX.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Packed directly by struct (no per-call Python conversion); see _metricfile.
_DIRECT_FLOAT_NAMES = frozenset({"float16", "float32", "float64", "longdouble", "half", "single",
                                 "double"})
_DIRECT_INT_NAMES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                               "uint64", "intc", "intp", "longlong", "short", "byte", "ubyte",
                               "ushort", "uintc", "uintp", "ulonglong", "long", "ulong"})


def direct_kind(cls: type) -> str | None:
    """The struct code ('d' or 'q') a value of ``cls`` can be packed with as it is, or None.

    None means the value needs :func:`to_number` on every call (tensors, arrays, Decimal...).
    """
    if cls is float or cls is int or cls is bool:
        return "d" if cls is float else "q"
    if cls.__module__ == "numpy":
        if cls.__name__ in _DIRECT_FLOAT_NAMES:
            return "d"
        if cls.__name__ in _DIRECT_INT_NAMES:
            return "q"
    return None


def show(value: Any, limit: int = 100) -> str:
    """``repr(value)`` cut to ``limit`` characters, or a stand-in when repr itself fails
    (a tensor on a failed device cannot always print itself)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - only used in error messages
        return f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[:limit] + "..."


def _shape_of(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def to_number(value: Any, name: str) -> int | float:
    """Coerce one metric value to ``int`` or ``float``.

    Accepts Python numbers (``bool`` becomes 0/1), NumPy scalars and one-element arrays, and
    one-element tensors of PyTorch, TensorFlow, MXNet and JAX (read with ``item()`` /
    ``numpy()`` / ``asscalar()``; a CUDA tensor is copied to the host).

    Raises:
        TypeError: the value is not a number (a string, None, a dict...).
        ValueError: a tensor or array with more than one element (its shape is named), or
            a value whose own ``shape``/``item()``/... raised (a CUDA error, say): the
            original exception is chained.
    """
    try:
        return _to_number(value, name)
    except (TypeError, ValueError):
        raise
    except Exception as e:  # the value's own code failed (a CUDA error): a bad value
        raise ValueError(f"metric {name!r}: reading the {type(value).__name__} value failed "
                         f"({type(e).__name__}: {show(e, 200)})") from e


def _one_element(value: Any, shape: tuple[int, ...], name: str) -> Any:
    """The one element of an array/tensor of ``shape`` (None if it cannot be read out).

    Raises:
        ValueError: it has more (or fewer) than one element.
    """
    size = math.prod(shape)
    if size != 1:
        raise ValueError(
            f"metric {name!r}: a {type(value).__name__} of shape {shape} ({size} elements) "
            "was given; expected a scalar or a one-element tensor (reduce it first, e.g. "
            ".mean() or .item())")
    for method in ("item", "asscalar"):
        fn = getattr(value, method, None)
        if callable(fn):
            try:
                element = fn()
                _to_number(element, name)  # an element that is no number: try the next way
                return element
            except (TypeError, ValueError, AttributeError):
                continue
    numpy_fn = getattr(value, "numpy", None)  # TensorFlow eager tensors
    if callable(numpy_fn):
        return numpy_fn().reshape(()).item()
    return None


def _to_number(value: Any, name: str) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else float(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"metric {name!r}: value {show(value)} of type {type(value).__name__} "
                        "is not a number; expected int, float, or a one-element array/tensor")
    shape = _shape_of(value)
    if shape is not None:
        element = _one_element(value, shape, name)
        if element is not None:
            return _to_number(element, name)
    if isinstance(value, numbers.Integral):
        return _to_number(int(value), name)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"metric {name!r}: value {show(value)} of type {type(value).__name__} is "
                    "not a number; expected int, float, or a one-element array/tensor")
