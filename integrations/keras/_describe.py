"""What the Keras callbacks read from a model: its set-up as plain hyperparameters, the
global step and the learning rate. Read-only: nothing here changes the model."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from em_core.sanitize import json_safe, keras_serialized

__all__ = ["current_lr", "describe_fit", "describe_loss", "describe_optimizer",
           "distribute_strategy", "iterations", "keras_info", "param_counts"]



def _to_python(value: Any) -> Any:
    """A one-element tensor/array/Variable as a Python number, else ``value`` unchanged."""
    numpy_fn = getattr(value, "numpy", None)  # tf.Tensor, tf.Variable, keras.Variable
    if callable(numpy_fn):
        try:
            value = numpy_fn()
        except (TypeError, ValueError, RuntimeError, NotImplementedError):
            pass
    item = getattr(value, "item", None)  # NumPy scalars and arrays, torch tensors
    if callable(item) and getattr(value, "size", 1) in (1, ()):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def plain(value: Any) -> Any:
    """A JSON-compatible copy of a Keras config value: serialized Keras objects
    (``{'class_name', 'config', ...}``) become ``{'class': ..., 'config': ...}``, the rest
    follows :func:`em_core.sanitize.json_safe` (NumPy scalars, which tf_keras returns, as
    Python numbers; functions as their names)."""
    return json_safe(keras_serialized(value), "keras")


def _is_schedule(value: Any) -> bool:
    # LearningRateSchedule of either Keras: callable with a config, not a tensor.
    return (callable(value) and hasattr(value, "get_config")
            and not hasattr(value, "numpy") and not hasattr(value, "dtype"))


def iterations(model: Any) -> int | None:
    """The optimizer's global iteration count (None without an optimizer)."""
    opt = getattr(model, "optimizer", None)
    its = getattr(opt, "iterations", None)
    if its is None:
        return None
    value = _to_python(its)
    return int(value)


def current_lr(model: Any) -> float | None:
    """The learning rate as the optimizer reports it now (schedules evaluated).

    Keras 3's ``optimizer.learning_rate`` evaluates the schedule at the current iteration
    (the rate of the next step); tf_keras' holds the rate of the last step taken.
    """
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    lr = getattr(opt, "learning_rate", None)
    if lr is None:
        lr = getattr(opt, "lr", None)
    if _is_schedule(lr):
        lr = lr(opt.iterations)
    value = _to_python(lr)
    return float(value) if isinstance(value, (int, float)) else None


def describe_optimizer(model: Any) -> dict[str, Any] | None:
    """Optimizer class and full config; a schedule as its class, config and current value."""
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    config = plain(opt.get_config())
    lr = config.get("learning_rate") if isinstance(config, dict) else None
    if isinstance(lr, dict) and "class" in lr:
        lr["value"] = current_lr(model)
    return {"class": type(opt).__name__, "config": config}


def describe_loss(loss: Any) -> Any:
    """A loss as given to ``compile``: a name stays a name, a Loss object becomes its class
    and config, a plain function its name; dicts and lists (multi-output) item by item."""
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, Mapping):
        return {str(k): describe_loss(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [describe_loss(v) for v in loss]
    get_config = getattr(loss, "get_config", None)
    if callable(get_config) and not isinstance(loss, type):
        try:
            return {"class": type(loss).__name__, "config": plain(get_config())}
        except (NotImplementedError, TypeError, ValueError):
            return {"class": type(loss).__name__}
    return plain(loss)


def _count(weights: Any) -> int:
    total = 0
    for w in weights or ():
        total += math.prod(int(d) for d in w.shape)
    return total


def param_counts(model: Any) -> dict[str, int] | None:
    """Trainable and non-trainable parameter counts, or None before the model is built."""
    if not getattr(model, "built", False):
        return None
    return {"trainable_params": _count(model.trainable_weights),
            "non_trainable_params": _count(model.non_trainable_weights)}


def distribute_strategy(model: Any) -> Any:
    """The model's ``tf.distribute`` strategy, or None when it is TensorFlow's default one
    (or the backend has none, e.g. torch)."""
    if "tensorflow" not in sys.modules:
        return None
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or type(strategy).__name__.startswith("_Default"):
        return None
    return strategy


def keras_info(model: Any) -> dict[str, str]:
    """Which Keras built the model (``keras`` 3 or legacy ``tf_keras``), version, backend."""
    for cls in type(model).__mro__:
        top = cls.__module__.split(".", 1)[0]
        if top in ("keras", "tf_keras"):
            break
    else:
        top = "keras"
    module = sys.modules.get(top)
    version = str(getattr(module, "__version__", "unknown"))
    if top == "tf_keras" or version.startswith("2."):
        return {"flavour": top, "version": version, "backend": "tensorflow"}
    backend_fn = getattr(getattr(module, "backend", None), "backend", None)
    backend = str(backend_fn()) if callable(backend_fn) else "unknown"
    return {"flavour": top, "version": version, "backend": backend}


def describe_fit(model: Any, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Everything known at the start of ``fit``, as plain hyperparameters."""
    params = params or {}
    out: dict[str, Any] = {"framework": keras_info(model)}
    optimizer = describe_optimizer(model)
    if optimizer is not None:
        out["optimizer"] = optimizer
    loss = getattr(model, "loss", None)
    if loss is not None:
        out["loss"] = describe_loss(loss)
    for key, name in (("epochs", "epochs"), ("steps", "steps_per_epoch"),
                      ("batch_size", "batch_size"), ("samples", "samples")):
        value = _to_python(params.get(key))
        if isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
    counts = param_counts(model)
    if counts is not None:
        out.update(counts)
    return out
