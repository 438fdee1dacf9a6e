"""Hyperparameters: a persisted, JSON-compatible mapping with attribute and dotted access.

Values are sanitised when they go in (a copy is stored; what the caller passed is never
changed): NumPy scalars and one-element tensors become Python numbers, tuples and sets
become lists, ``pathlib.Path`` becomes ``str``, ``Enum`` members their value; anything else
is stored as its ``repr`` with a one-time warning. Every change is written to the run's
metadata file at once.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from ._secrets import is_secret_name, mask_value
from .errors import EmWarning

__all__ = ["Hyperparameters", "to_plain_dict"]

_warned_types: set[str] = set()


def _is_omegaconf(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("omegaconf") and type(obj).__name__ in {"DictConfig", "ListConfig"}


def to_plain_dict(obj: Any, *, what: str = "hparams") -> dict[str, Any]:
    """Turn a Mapping, argparse Namespace, dataclass instance or OmegaConf DictConfig into a
    new plain dict with sanitised values (OmegaConf interpolations resolved).

    Raises:
        TypeError: ``obj`` is none of those, or a key is not a string.
    """
    if _is_omegaconf(obj):
        # Given an OmegaConf object, omegaconf is importable; it is never imported otherwise.
        from omegaconf import OmegaConf  # type: ignore[import-not-found]

        obj = OmegaConf.to_container(obj, resolve=True)
    elif isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif hasattr(obj, "_asdict") and callable(obj._asdict):  # namedtuple
        obj = obj._asdict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"{what}: expected a dict (or argparse.Namespace, dataclass instance, "
                        f"OmegaConf DictConfig), got {type(obj).__name__}: {obj!r:.200}")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise TypeError(f"{what}: key {k!r} is a {type(k).__name__}; keys must be strings")
        # a secret-named key keeps its place with its value masked (see em_core._secrets)
        out[k] = mask_value(v) if is_secret_name(k) else sanitize(v, f"{what}.{k}" if what else k)
    return out


def sanitize(value: Any, path: str) -> Any:
    """A JSON-compatible copy of one hyperparameter value (see the module docstring)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 14_000:
        raise ValueError(f"hyperparameter {path!r}: an int of {value.bit_length()} bits has more "
                         "digits than JSON readers accept (4300); store it as a string")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, enum.Enum):
        return sanitize(value.value, path)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if _is_omegaconf(value) or isinstance(value, argparse.Namespace) or (
            dataclasses.is_dataclass(value) and not isinstance(value, type)):
        if _is_omegaconf(value) and type(value).__name__ == "ListConfig":
            from omegaconf import OmegaConf  # type: ignore[import-not-found]

            return sanitize(OmegaConf.to_container(value, resolve=True), path)
        return to_plain_dict(value, what=path)
    if isinstance(value, Mapping):
        return to_plain_dict(value, what=path)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [sanitize(v, f"{path}[{i}]") for i, v in enumerate(items)]
    mod = type(value).__module__ or ""
    item = getattr(value, "item", None)
    if callable(item) and (mod.startswith(("numpy", "torch", "jax", "tensorflow", "mxnet"))):
        size = getattr(value, "size", 1)
        size = size() if callable(size) else size
        try:
            if int(math.prod(size) if isinstance(size, tuple) else size) == 1:
                return sanitize(item(), path)
        except (TypeError, ValueError):
            pass
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            return sanitize(tolist(), path)
    if type(value).__name__ not in _warned_types:
        _warned_types.add(type(value).__name__)
        warnings.warn(f"em: hyperparameter {path!r} has type {type(value).__name__}, which is "
                      "not JSON-compatible; it is stored as its repr()", EmWarning, stacklevel=4)
    return repr(value)


def _deep_merge(dst: dict[str, Any], src: Mapping[str, Any], override: bool) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v, override)
        elif override or k not in dst:
            dst[k] = v


class Hyperparameters(MutableMapping[str, Any]):
    """A run's hyperparameters.

    Item and attribute access (``hp['lr']``, ``hp.lr``), nested sections as views
    (``hp.optim.lr``, ``hp['optim']['lr'] = 0.1`` persists), and dotted paths in item
    access and :meth:`get` (``hp.get('optim.lr')``; a key that itself contains dots is found
    first). Every change is saved at once.

    Example:
        >>> hp = Hyperparameters({'optim': {'lr': 0.1}})
        >>> hp.get('optim.lr'), hp.optim.lr
        (0.1, 0.1)
        >>> hp.update({'optim': {'lr': 0.5, 'momentum': 0.9}}, override=False)
        >>> hp.as_dict()
        {'optim': {'lr': 0.1, 'momentum': 0.9}}
    """

    __slots__ = ("_data", "_lock", "_on_change", "_prefix")

    def __init__(self, data: Mapping[str, Any] | None = None, *,
                 on_change: Callable[[], None] | None = None, _prefix: str = "",
                 _shared: dict[str, Any] | None = None,
                 _lock: threading.RLock | None = None) -> None:
        object.__setattr__(self, "_data", _shared if _shared is not None else
                           (_plain(data, "hparams") if data is not None else {}))
        object.__setattr__(self, "_on_change", on_change)
        object.__setattr__(self, "_prefix", _prefix)
        # Shared with the run's saves: a change and the save that writes it are one step, so
        # a thread saving never iterates a dict another thread is changing.
        object.__setattr__(self, "_lock", _lock if _lock is not None else threading.RLock())

    def _change(self, mutate: Callable[[], None]) -> None:
        """Apply ``mutate`` to the data and save, as one step; if the save fails the data is
        put back as it was, so one bad change never spoils later saves."""
        with self._lock:
            before = copy.deepcopy(self._data)
            try:
                mutate()
                if self._on_change is not None:
                    self._on_change()
            except BaseException:
                self._data.clear()
                self._data.update(before)
                raise

    def _lookup(self, key: str) -> Any:
        data = self._data
        if key in data:
            return data[key]
        if isinstance(key, str) and "." in key:
            node: Any = data
            done: list[str] = []
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    where = ".".join(self._prefix.split(".")[:0] + done) or "the top level"
                    avail = sorted(node) if isinstance(node, dict) else []
                    raise KeyError(f"hyperparameter {self._prefix + key!r}: no key {part!r} "
                                   f"under {where} (available: {avail[:20]})")
                node = node[part]
                done.append(part)
            return node
        raise KeyError(f"hyperparameter {self._prefix + key!r} not found "
                       f"(available: {sorted(data)[:20]})")

    def __getitem__(self, key: str) -> Any:
        value = self._lookup(key)
        if isinstance(value, dict):
            return Hyperparameters(on_change=self._on_change, _prefix=f"{self._prefix}{key}.",
                                   _shared=value, _lock=self._lock)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"hyperparameter key must be a non-empty string, got {key!r}")
        clean = (mask_value(value) if is_secret_name(key)
                 else _plain_value(value, self._prefix + key))
        self._change(lambda: self._data.__setitem__(key, clean))

    def __delitem__(self, key: str) -> None:
        if key not in self._data:
            raise KeyError(f"hyperparameter {self._prefix + key!r} not found")
        self._change(lambda: self._data.__delitem__(key))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        try:
            self._lookup(key)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no hyperparameter {self._prefix + name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Hyperparameters):
            return bool(self._data == other._data)
        return isinstance(other, Mapping) and self._data == dict(other)

    def __repr__(self) -> str:
        return f"Hyperparameters({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle give a detached mapping of the same values: the default
        # protocol would set the slots through __setattr__ (a hyperparameter) and recurse.
        return (Hyperparameters, (self._data,))

    def get(self, key: str, default: Any = None) -> Any:
        """Value at ``key`` (dotted paths reach into sections), or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def update(self, new_params: Any = None, override: bool = True,  # type: ignore[override]
               **kwargs: Any) -> None:
        """Merge ``new_params`` (and keyword arguments) in, saving once.

        Args:
            new_params: dict, argparse Namespace, dataclass instance or OmegaConf DictConfig
                (the seed's name; positional or by keyword). Nested dicts are merged key by
                key.
            override: when False, keys that already exist keep their values.
            **kwargs: more hyperparameters by name (``update(lr=0.1)``).
        """
        incoming = _plain(new_params, "hparams") if new_params is not None else {}
        if kwargs:
            incoming.update(_plain(kwargs, "hparams"))
        self._change(lambda: _deep_merge(self._data, incoming, override))

    def as_dict(self) -> dict[str, Any]:
        """A deep copy as plain dicts and lists."""
        with self._lock:
            return copy.deepcopy(self._data)

    def parse(self, dist_tf_strategy: Any = None, dist_torch_model: Any = None,
              dist_hvd: Any = None) -> None:
        """Record the distributed set-up under the ``distributed`` key.

        Args:
            dist_tf_strategy: a ``tf.distribute.Strategy`` (kind, replicas, workers, task).
            dist_torch_model: a model wrapped in ``DistributedDataParallel`` or
                ``DataParallel`` (kind, world size, rank, backend, device ids, bucket size,
                find_unused_parameters); an unwrapped model is recorded as 'not distributed'.
            dist_hvd: the ``horovod.torch``/``horovod.tensorflow`` module after ``hvd.init()``.

        The environment's view (rank, world size, launcher) is always included.
        """
        from .dist import describe_distributed

        self["distributed"] = describe_distributed(dist_tf_strategy=dist_tf_strategy,
                                                   dist_torch_model=dist_torch_model,
                                                   dist_hvd=dist_hvd)


def _plain(obj: Any, what: str) -> dict[str, Any]:
    """:func:`to_plain_dict`, with a self-containing structure refused clearly."""
    try:
        return to_plain_dict(obj, what=what)
    except RecursionError:
        raise ValueError(f"{what}: nested too deeply or contains itself (a cycle); "
                         "hyperparameters must be a tree of dicts and lists") from None


def _plain_value(value: Any, path: str) -> Any:
    try:
        return sanitize(value, path)
    except RecursionError:
        raise ValueError(f"hyperparameter {path!r}: nested too deeply or contains itself "
                         "(a cycle)") from None
