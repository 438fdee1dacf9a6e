"""One JSON-safe copy of configuration values, for hyperparameters and every integration.

:func:`json_safe` returns a new value built only of ``dict`` (string keys), ``list``,
``str``, ``int``, ``float``, ``bool`` and ``None``; what it was given is never changed and
never called, except for the read-only conversions named below. The rules, in order:

* ``None``, ``bool``, ``int``, ``str``, ``float``: themselves, as the plain built-in type
  (a ``str``/``int``/``float`` subclass such as ``numpy.float64`` or ``numpy.str_`` becomes
  the built-in). NaN and the infinities stay floats: ``run.json`` is written with
  ``allow_nan`` and reads back as the same float (em's server turns them into the strings
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` on its side). An int of more than ~4,300
  digits is refused (``ValueError``): JSON readers reject it.
* ``enum.Enum`` members: their ``value`` (so ``IntEnum`` and ``StrEnum`` are their value).
* ``os.PathLike`` (``pathlib.Path``): ``os.fspath`` (a ``bytes`` path is decoded with
  ``surrogateescape``).
* mappings (also ``argparse.Namespace``, dataclass instances, OmegaConf configs, with
  interpolations resolved, and named tuples): a ``dict``. Keys must be strings: any other
  key is refused (``TypeError`` naming it), since ``1`` and ``"1"`` would become one JSON
  key.
* lists and tuples: a list; sets and frozensets: a list sorted by ``repr`` (stable).
* NumPy, PyTorch, TensorFlow/Keras, JAX and MXNet arrays, tensors, variables and scalars
  (recognised by their module, never imported here): one element becomes a Python number
  (``item()``), several a nested list (``tolist()``); TF/Keras/MXNet ones are read through
  ``numpy()``/``asnumpy()`` first.
* functions, methods and classes: their ``__name__`` (``'warmup'``, ``'squared_error'``,
  ``'<lambda>'``), as Keras records functions in its configs.
* ``bytes``: decoded as UTF-8 with ``backslashreplace``.
* anything else: ``str(value)`` when its class defines ``__str__`` or ``__repr__``
  (``torch.device`` -> ``'cpu'``), else its class name (the default repr only shows a
  memory address, which differs every run). ``on_unknown(path, value)`` is called first
  when given (``run.hparams`` warns once per type there).

A structure that contains itself is refused (``ValueError`` naming where).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math
import os
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["json_safe", "keras_serialized"]

_MAX_INT_BITS = 14_000  # ~4,300 decimal digits: Python's own int/str conversion limit
_ARRAY_MODULES = frozenset({"numpy", "torch", "jax", "jaxlib", "tensorflow", "keras",
                            "tf_keras", "mxnet"})
_NAMED = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)
_SERIALIZED_KEYS = frozenset({"class_name", "config"})
_NOTHING = object()  # "not of this kind" (None is a value)


def json_safe(value: Any, path: str = "value", *,
              on_unknown: Callable[[str, Any], None] | None = None) -> Any:
    """A JSON-compatible copy of ``value`` (see the module docstring for the rules).

    Args:
        value: Any configuration value.
        path: Where the value sits, for error messages (``'hparams.optim.lr'``).
        on_unknown: Called with ``(path, value)`` for a value with no JSON form, before it
            is stored as its ``str`` or class name.

    Returns:
        A new value made of dict, list, str, int, float, bool and None.

    Raises:
        TypeError: a mapping key that is not a string.
        ValueError: an int too long for JSON readers, or a structure containing itself.

    Example:
        >>> import enum, pathlib
        >>> class Mode(enum.Enum):
        ...     FAST = "fast"
        >>> json_safe({"mode": Mode.FAST, "dir": pathlib.Path("/tmp"), "ids": {2, 1}})
        {'mode': 'fast', 'dir': '/tmp', 'ids': [1, 2]}
    """
    try:
        return _safe(value, path, on_unknown, set())
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply or contains itself (a cycle); a "
                         "configuration must be a tree of dicts and lists") from None


def keras_serialized(value: Any) -> Any:
    """``value`` with every Keras-serialised object (``{'class_name': ..., 'config': ...,
    ...}``, as ``get_config()`` nests them) shortened to ``{'class': ..., 'config': ...}``;
    other values are left as they are (pass the result to :func:`json_safe`)."""
    if isinstance(value, Mapping):
        if _SERIALIZED_KEYS <= set(value):
            return {"class": str(value["class_name"]), "config": keras_serialized(value["config"])}
        return {k: keras_serialized(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [keras_serialized(v) for v in value]
    return value


def _safe(value: Any, path: str, on_unknown: Any, seen: set[int]) -> Any:
    plain = _scalar(value, path)
    if plain is not _NOTHING:
        return plain
    if isinstance(value, enum.Enum):
        return _safe(value.value, path, on_unknown, seen)
    container = _as_container(value)
    if container is not None:
        if id(value) in seen:
            raise ValueError(f"{path}: contains itself (a cycle); a configuration must be "
                             "a tree of dicts and lists")
        seen.add(id(value))
        try:
            if isinstance(container, Mapping):
                return {_key(k, path): _safe(v, f"{path}.{k}", on_unknown, seen)
                        for k, v in container.items()}
            return [_safe(v, f"{path}[{i}]", on_unknown, seen) for i, v in enumerate(container)]
        finally:
            seen.discard(id(value))
    array = _array(value)
    if array is not _NOTHING:
        return _safe(array, path, on_unknown, seen)
    if isinstance(value, _NAMED):
        return str(getattr(value, "__name__", None) or getattr(value, "__qualname__", "?"))
    if on_unknown is not None:
        on_unknown(path, value)
    cls = type(value)
    if any(getattr(cls, m) is not getattr(object, m) for m in ("__str__", "__repr__")):
        return str(value)
    return cls.__name__


def _scalar(value: Any, path: str) -> Any:
    """``value`` as a plain None/bool/int/float/str (a path or bytes as str), or
    ``_NOTHING`` when it is none of those. An Enum member is left to the caller."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, enum.Enum):
        return _NOTHING
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise ValueError(f"{path}: an int of {value.bit_length()} bits has more digits "
                             "than JSON readers accept (4300); store it as a string")
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, os.PathLike):
        p = os.fspath(value)
        return p if isinstance(p, str) else os.fsdecode(p)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    return _NOTHING


def _key(k: Any, path: str) -> str:
    if isinstance(k, str):
        return str(k)
    raise TypeError(f"{path}: key {k!r} is a {type(k).__name__}; keys must be strings")


def _as_container(value: Any) -> Mapping[Any, Any] | list[Any] | tuple[Any, ...] | None:
    """The mapping or sequence behind ``value``, or None when it is neither."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, (list, tuple)):
        if hasattr(value, "_asdict") and callable(value._asdict):  # a named tuple
            return dict(value._asdict())
        return value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, argparse.Namespace):
        return vars(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    cls = type(value)
    if (cls.__module__ or "").startswith("omegaconf") and cls.__name__ in {"DictConfig",
                                                                            "ListConfig"}:
        from omegaconf import OmegaConf  # type: ignore[import-not-found]  # given one: present

        plain = OmegaConf.to_container(value, resolve=True)
        return plain if isinstance(plain, (dict, list)) else None
    return None



def _array(value: Any) -> Any:
    """A one-element array/tensor as a Python number, a larger one as a nested list, or
    ``_NOTHING`` for anything that is not a framework array."""
    top = (type(value).__module__ or "").split(".", 1)[0]
    if top not in _ARRAY_MODULES or isinstance(value, type):
        return _NOTHING
    if top not in ("numpy", "torch"):  # TF/Keras tensors and variables, MXNet NDArrays
        for name in ("numpy", "asnumpy"):
            fn = getattr(value, name, None)
            if callable(fn):
                try:
                    value = fn()
                    break
                except (TypeError, ValueError, RuntimeError, NotImplementedError):
                    continue
    numel = getattr(value, "numel", None)  # torch: size is a method
    try:
        size = numel() if callable(numel) else getattr(value, "size", None)
        one = size is not None and not callable(size) and int(math.prod(size) if isinstance(
            size, tuple) else size) == 1
    except (TypeError, ValueError, RuntimeError):
        one = False
    item, tolist = getattr(value, "item", None), getattr(value, "tolist", None)
    try:
        if one and callable(item):
            return item()
        if callable(tolist):
            return tolist()
    except (TypeError, ValueError, RuntimeError):
        pass
    return _NOTHING
