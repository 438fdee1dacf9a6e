"""What the MXNet integration records as hyperparameters: ``Module.fit`` arguments, a Gluon
``Trainer``, an optimizer and a kvstore (re-exported by :mod:`integrations.mxnet`).

Read by attribute, without importing MXNet; values are made JSON-safe by
:func:`em_core.sanitize.json_safe` (an object such as an initializer is stored as its class
name).
"""

from __future__ import annotations

from typing import Any

import em_core as em
from em_core.sanitize import json_safe

__all__ = ["kvstore_hparams", "log_fit_args", "log_trainer_hparams", "optimizer_hparams"]


def _scheduler(sched: Any) -> Any:
    if sched is None:
        return None
    out: dict[str, Any] = {"type": type(sched).__name__}
    for key in ("base_lr", "step", "factor", "stop_factor_lr", "max_update", "final_lr",
                "pwr", "warmup_steps", "warmup_begin_lr", "warmup_mode"):
        value = getattr(sched, key, None)
        if isinstance(value, (int, float, str, list, tuple)):
            out[key] = json_safe(value, key)
    return out


def optimizer_hparams(opt: Any) -> dict[str, Any]:
    """What an ``mx.optimizer.Optimizer`` holds: its kind and settings."""
    out: dict[str, Any] = {"optimizer": type(opt).__name__.lower()}
    try:
        out["learning_rate"] = float(opt.learning_rate)
    except (AttributeError, TypeError, ValueError, RuntimeError):
        pass
    for key in ("wd", "momentum", "rescale_grad", "clip_gradient", "beta1", "beta2",
                "epsilon", "multi_precision", "begin_num_update"):
        value = getattr(opt, key, None)
        if isinstance(value, (int, float, bool)):
            out[key] = value
    if getattr(opt, "lr_scheduler", None) is not None:
        out["lr_scheduler"] = _scheduler(opt.lr_scheduler)
    return out


def kvstore_hparams(kv: Any) -> dict[str, Any]:
    """A kvstore (a name or a KVStore): its type, and the worker count when distributed."""
    if kv is None:
        return {}
    if isinstance(kv, str):
        return {"kvstore": kv}
    out: dict[str, Any] = {"kvstore": str(getattr(kv, "type", type(kv).__name__))}
    workers = getattr(kv, "num_workers", None)
    if isinstance(workers, int) and ("dist" in out["kvstore"]
                                     or out["kvstore"].startswith(("horovod", "byteps"))):
        out["kvstore_num_workers"] = workers
    return out


def log_fit_args(run: Any, **fit_kwargs: Any) -> dict[str, Any]:
    """Record ``Module.fit`` arguments as given, and return them unchanged for ``fit(**...)``.

    Recorded as hyperparameters, when present: ``optimizer`` (a name, or an
    ``mx.optimizer.Optimizer``: its lowercased class name, and its settings as
    ``optimizer_params`` since MXNet then ignores the ``optimizer_params`` argument),
    ``optimizer_params`` (a dict or ``(name, value)`` pairs, as ``fit`` takes them),
    ``num_epoch``, ``begin_epoch``, ``kvstore`` (a name, or a KVStore: its type, and the
    worker count when distributed) and ``initializer`` (its class name). Other keyword
    arguments pass through unrecorded.

    Raises:
        TypeError: ``optimizer_params`` is neither a mapping nor (name, value) pairs.
    """
    rec: dict[str, Any] = {}
    for key in ("optimizer", "num_epoch", "begin_epoch", "kvstore", "initializer"):
        if key in fit_kwargs:
            value = fit_kwargs[key]
            rec[key] = json_safe(value, key)  # an object (initializer...): its class name
    if "optimizer_params" in fit_kwargs:
        params = fit_kwargs["optimizer_params"]
        try:
            pairs = dict(params)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"optimizer_params must be a dict or a sequence of (name, value) "
                            f"pairs, as Module.fit takes it; got {params!r}") from exc
        rec["optimizer_params"] = {str(k): json_safe(v, f"optimizer_params.{k}")
                                   for k, v in pairs.items()}
    opt = fit_kwargs.get("optimizer")
    if opt is not None and not isinstance(opt, str):  # an Optimizer: what it holds
        held = optimizer_hparams(opt)
        rec["optimizer"] = held.pop("optimizer")
        rec["optimizer_params"] = held
    kv = fit_kwargs.get("kvstore")
    if kv is not None and not isinstance(kv, str):
        rec.update(kvstore_hparams(kv))
    if rec:
        try:
            run.hparams.update(rec)
        except Exception as exc:  # noqa: BLE001 - recording must not stop the training
            em.handle_problem(exc, key="mxnet-fit-args")
    return fit_kwargs


def log_trainer_hparams(run: Any, trainer: Any) -> None:
    """Record a Gluon ``Trainer``: optimizer, learning rate, weight decay, momentum,
    rescale_grad, lr scheduler, and the kvstore (type, and workers when distributed)."""
    try:
        opt = trainer.optimizer
        hp = optimizer_hparams(opt)
        hp["learning_rate"] = float(trainer.learning_rate)
        kv = getattr(trainer, "_kvstore", None)  # private; set once the trainer has stepped
        if kv is None:
            params = getattr(trainer, "_kvstore_params", None) or {}
            kv = params.get("kvstore") if isinstance(params.get("kvstore"), str) else None
        hp.update(kvstore_hparams(kv))
        run.hparams.update(hp)
    except Exception as exc:  # noqa: BLE001 - a changed Trainer must not stop training
        em.handle_problem(exc, key="mxnet-trainer-hparams")
