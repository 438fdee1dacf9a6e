"""Hyperparameters: a persisted, JSON-compatible mapping with attribute and dotted access.

Values are sanitised when they go in by :func:`em_core.sanitize.json_safe` (a copy is
stored; what the caller passed is never changed): NumPy scalars and one-element tensors
become Python numbers, tuples and sets become lists, ``pathlib.Path`` becomes ``str``,
``Enum`` members their value; anything else is stored as its ``str()`` (its class name when
it has only the default repr) with a one-time warning. Every change is written to the run's
metadata file at once.
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from ._secrets import is_secret_name, mask_value
from .errors import EmWarning
from .sanitize import json_safe

__all__ = ["Hyperparameters", "deep_merge", "sanitize", "to_plain_dict"]

_warned_types: set[str] = set()


def _warn_unknown(path: str, value: Any) -> None:
    name = type(value).__name__
    if name not in _warned_types:
        _warned_types.add(name)
        warnings.warn(f"em: hyperparameter {path!r} has type {name}, which is not "
                      "JSON-compatible; it is stored as its str()", EmWarning, stacklevel=5)


def _masked(tree: Any) -> Any:
    """``tree`` (already JSON-safe) with the values under secret names masked, at any depth."""
    if isinstance(tree, dict):
        return {k: mask_value(v) if is_secret_name(k) else _masked(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_masked(v) for v in tree]
    return tree


def to_plain_dict(obj: Any, *, what: str = "hparams") -> dict[str, Any]:
    """Turn a Mapping, argparse Namespace, dataclass instance or OmegaConf DictConfig into a
    new plain dict, sanitised by :func:`em_core.sanitize.json_safe` (OmegaConf
    interpolations resolved) and with values under secret names masked (see
    ``em_core._secrets``).

    Raises:
        TypeError: ``obj`` is none of those, or a key is not a string.
        ValueError: an int too long for JSON, or a structure that contains itself.
    """
    out = json_safe(obj, what, on_unknown=lambda path, value: (
        None if path == what else _warn_unknown(path, value)))  # top level: refused below
    if not isinstance(out, dict):
        raise TypeError(f"{what}: expected a dict (or argparse.Namespace, dataclass instance, "
                        f"OmegaConf DictConfig), got {type(obj).__name__}: {obj!r:.200}")
    return _masked(out)  # type: ignore[no-any-return]


def sanitize(value: Any, path: str) -> Any:
    """A JSON-compatible copy of one hyperparameter value, secrets below it masked."""
    return _masked(json_safe(value, path, on_unknown=_warn_unknown))


def deep_merge(dst: dict[str, Any], src: Mapping[str, Any], override: bool) -> None:
    """Merge ``src`` into ``dst`` key by key (nested dicts too); ``override=False`` keeps the
    values ``dst`` has."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v, override)
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
                           (to_plain_dict(data) if data is not None else {}))
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
                 else sanitize(value, self._prefix + key))
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
        incoming = to_plain_dict(new_params) if new_params is not None else {}
        if kwargs:
            incoming.update(to_plain_dict(kwargs))
        self._change(lambda: deep_merge(self._data, incoming, override))

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


