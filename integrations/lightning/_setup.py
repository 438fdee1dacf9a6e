"""What EMLogger records about a Trainer when fitting starts. Reads public Trainer and
Strategy attributes only, the same way for ``lightning.pytorch`` and ``pytorch_lightning``."""

from __future__ import annotations

from typing import Any

from em_core.sanitize import json_safe
from integrations.torch import (
    count_parameters,
    describe_optimizer,
    describe_scheduler,
    describe_torch_model,
)

__all__ = ["describe_trainer"]

_TRAINER_ATTRS = ("max_epochs", "min_epochs", "max_steps", "min_steps",
                  "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm",
                  "precision", "check_val_every_n_epoch", "val_check_interval",
                  "log_every_n_steps", "num_devices", "num_nodes", "world_size")
# Lightning's launcher classes (private names, read as strings, never imported).
_LAUNCHERS = {"_SubprocessScriptLauncher": "subprocess script",
              "_MultiProcessingLauncher": "multiprocessing"}


def _one_or_many(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    if not items:
        return {}
    return {key: items[0]} if len(items) == 1 else {key + "s": items}


def _scheduler(config: Any) -> dict[str, Any]:
    out = describe_scheduler(getattr(config, "scheduler", config))
    for name in ("interval", "frequency", "monitor", "name"):
        value = getattr(config, name, None)
        if value is not None:
            out[name] = json_safe(value, name)
    return out


def _strategy(trainer: Any) -> dict[str, Any]:
    strategy = trainer.strategy
    launcher = getattr(strategy, "launcher", None)
    out: dict[str, Any] = {
        "strategy": type(strategy).__name__,
        "world_size": int(trainer.world_size),
        "num_nodes": int(trainer.num_nodes),
        "num_devices": int(trainer.num_devices),
        "launcher": (_LAUNCHERS.get(type(launcher).__name__, type(launcher).__name__)
                     if launcher is not None else None),
    }
    backend = getattr(strategy, "process_group_backend", None)
    if backend is not None:
        out["backend"] = str(backend)
    out["torch"] = describe_torch_model(getattr(strategy, "model", None))
    return out


def describe_trainer(trainer: Any, module: Any) -> dict[str, Any]:
    """Hyperparameters describing ``trainer`` fitting ``module``.

    Returns:
        ``{'trainer': {...max_epochs, accumulate_grad_batches, gradient clipping, precision,
        ...}, 'model': {'class', 'parameters'}, 'optimizer' (or 'optimizers'),
        'lr_scheduler' (or 'lr_schedulers'), 'distributed': {'strategy', 'world_size',
        'num_nodes', 'launcher', 'backend', 'torch': ...}}``. One optimizer or scheduler is
        a dict, several are a list.
    """
    out: dict[str, Any] = {"trainer": {a: json_safe(getattr(trainer, a, None), a)
                                       for a in _TRAINER_ATTRS}}
    top = type(trainer).__module__.split(".")[0]
    version = getattr(__import__(top), "__version__", None)
    out["trainer"]["framework"] = f"{top} {version}" if version else top
    out["model"] = {"class": type(module).__name__, "parameters": count_parameters(module)}
    out.update(_one_or_many("optimizer", [describe_optimizer(o) for o in trainer.optimizers]))
    out.update(_one_or_many("lr_scheduler",
                            [_scheduler(c) for c in trainer.lr_scheduler_configs]))
    out["distributed"] = _strategy(trainer)
    return out
