"""Hyperparameters from PyTorch objects: optimizers, LR schedulers, models and their
distributed wrappers.

Everything here returns a new plain dict (numbers, strings, booleans, None, lists, dicts) and
never changes or calls into the training state beyond reading attributes, so it is safe to
call at any point of a script and on any rank. Put the result in a run with
``run.hparams.update(...)``::

    import em_core as em
    from integrations.torch import torch_hparams

    run = em.create_run(name='mnist')
    run.hparams.update(torch_hparams(model=model, optimizer=opt, scheduler=sched))
    run.hparams.get('optimizer.lr')   # 0.1

On a rank other than 0, ``em.create_run`` returns a ``NoOpRun``: the update is accepted and
nothing is written.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from collections.abc import Mapping
from typing import Any

try:
    import torch
except ModuleNotFoundError as e:  # pragma: no cover - exercised in the no-framework session
    raise ModuleNotFoundError(
        "integrations.torch needs PyTorch: pip install 'em[torch]'", name=e.name) from e

__all__ = [
    "count_parameters",
    "describe_optimizer",
    "describe_scheduler",
    "describe_torch_model",
    "torch_hparams",
]

# Scheduler attributes that are progress, not configuration: recording them would make the
# hyperparameters depend on when they were read.
_SCHEDULER_STATE = frozenset({
    "last_epoch", "best", "num_bad_epochs", "cooldown_counter", "mode_worse", "T_cur",
    "verbose", "optimizer",
})
_WRAPPERS = ("DistributedDataParallel", "DataParallel", "FullyShardedDataParallel")


def _plain(value: Any) -> Any:
    """A JSON-compatible copy of one configuration value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, collections.Counter):  # MultiStepLR keeps its milestones in one
        return sorted(value.elements())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if callable(value):
        return getattr(value, "__qualname__", None) or type(value).__qualname__
    item = getattr(value, "item", None)  # NumPy scalars
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    return repr(value)


def count_parameters(module: torch.nn.Module) -> dict[str, int]:
    """Parameter counts (elements, not tensors) of ``module`` and its submodules.

    Returns:
        ``{'total': n, 'trainable': n, 'non_trainable': n}``; a parameter shared by two
        submodules is counted once.

    Raises:
        TypeError: ``module`` is not a ``torch.nn.Module``.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"count_parameters expects a torch.nn.Module, got "
                        f"{type(module).__name__}: {module!r:.100}")
    total = trainable = 0
    for p in module.parameters():  # parameters() already de-duplicates shared ones
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def describe_optimizer(optimizer: Any) -> dict[str, Any]:
    """The class and settings of a ``torch.optim`` optimizer.

    Every parameter-group setting is recorded (lr, momentum, betas, eps, weight_decay,
    nesterov, amsgrad, foreach, fused, ...), plus ``num_tensors`` and ``num_elements`` (the
    parameters it updates). With one parameter group the settings are at the top level
    (``hparams.get('optimizer.lr')``); with several, settings shared by all groups are at the
    top level and ``param_groups`` lists what differs per group, with its counts.

    Args:
        optimizer: a ``torch.optim.Optimizer`` (or anything with ``param_groups``, such as
            ``ZeroRedundancyOptimizer``).

    Raises:
        TypeError: ``optimizer`` has no ``param_groups``.
    """
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list):
        raise TypeError(f"describe_optimizer expects a torch.optim.Optimizer, got "
                        f"{type(optimizer).__name__}: {optimizer!r:.100}")
    settings, counts = [], []
    for g in groups:
        params = list(g.get("params", []))
        settings.append({k: _plain(v) for k, v in g.items() if k != "params"})
        counts.append({"num_tensors": len(params),
                       "num_elements": sum(int(p.numel()) for p in params)})
    out: dict[str, Any] = {"class": type(optimizer).__name__}
    if len(settings) == 1:
        out.update(settings[0])
        out.update(counts[0])
        return out
    common = {k: v for k, v in settings[0].items()
              if all(k in s and s[k] == v for s in settings[1:])}
    out.update(common)
    out["num_tensors"] = sum(c["num_tensors"] for c in counts)
    out["num_elements"] = sum(c["num_elements"] for c in counts)
    out["param_groups"] = [{**{k: v for k, v in s.items() if k not in common}, **c}
                           for s, c in zip(settings, counts)]
    return out


def describe_scheduler(scheduler: Any) -> dict[str, Any]:
    """The class and arguments of a learning-rate scheduler.

    Public configuration attributes are recorded (``step_size``, ``gamma``, ``milestones``,
    ``T_max``, ``factor``, ``patience``, ``base_lrs``, ...), progress counters are not
    (``last_epoch``, ``best``, ``num_bad_epochs``...). ``LambdaLR`` functions are recorded by
    qualified name; ``SequentialLR``/``ChainedScheduler`` list their schedulers.

    Raises:
        TypeError: ``scheduler`` is not an object with attributes (``None``, a number...).
    """
    attrs = getattr(scheduler, "__dict__", None)
    if scheduler is None or not isinstance(attrs, dict):
        raise TypeError(f"describe_scheduler expects a torch.optim.lr_scheduler scheduler, "
                        f"got {type(scheduler).__name__}: {scheduler!r:.100}")
    out: dict[str, Any] = {"class": type(scheduler).__name__}
    for k, v in attrs.items():
        if k.startswith("_") or k in _SCHEDULER_STATE:
            continue
        out[k] = _plain(v)
    # Configuration these schedulers keep only under private names.
    inner = attrs.get("_schedulers")
    if isinstance(inner, (list, tuple)):
        out["schedulers"] = [describe_scheduler(s) for s in inner]
    if "_milestones" in attrs:
        out["milestones"] = _plain(attrs["_milestones"])
    if "_anneal_func_type" in attrs:  # OneCycleLR's anneal_strategy
        out["anneal_strategy"] = _plain(attrs["_anneal_func_type"])
    return out


def _launcher() -> str | None:
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return "torchrun"
    if multiprocessing.parent_process() is not None:
        return "mp.spawn"
    if os.environ.get("RANK") is not None:
        return "env"
    return None


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _process_group(model: Any) -> dict[str, Any]:
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return {}
    pg = getattr(model, "process_group", None)
    return {"world_size": dist.get_world_size(pg), "rank": dist.get_rank(pg),
            "backend": str(dist.get_backend(pg))}


def describe_torch_model(model: Any) -> dict[str, Any]:
    """How a model is distributed: what ``run.hparams.parse(dist_torch_model=model)`` records.

    Returns:
        For ``DistributedDataParallel`` (and FSDP): ``kind``, ``model`` (the wrapped module's
        class), ``world_size``, ``rank``, ``local_rank``, ``backend`` (gloo, nccl...),
        ``device_ids``, ``output_device``, ``bucket_cap_mb``, ``find_unused_parameters``,
        ``broadcast_buffers``, ``gradient_as_bucket_view``, ``static_graph`` and
        ``launcher`` ('torchrun', 'mp.spawn', 'env' for a RANK set by other means, or None).
        For ``DataParallel``: ``kind``, ``model``, ``device_ids``, ``output_device``,
        ``replicas``. For anything else: ``{'kind': 'not distributed', 'model': class}``,
        plus world size, rank and backend when a process group is initialised anyway.
        It never raises for an unwrapped model.
    """
    kind = type(model).__name__
    inner = getattr(model, "module", model) if kind in _WRAPPERS else model
    out: dict[str, Any] = {"kind": kind if kind in _WRAPPERS else "not distributed",
                           "model": type(inner).__name__}
    if kind == "DataParallel":
        ids = getattr(model, "device_ids", None) or []
        out["device_ids"] = [str(d) for d in ids] or None
        out["output_device"] = _plain(getattr(model, "output_device", None))
        out["replicas"] = max(len(ids), 1)
        return out
    out.update(_process_group(model))
    if kind not in _WRAPPERS:
        return out
    out["local_rank"] = _int_or_none(os.environ.get("LOCAL_RANK"))
    ids = getattr(model, "device_ids", None)
    out["device_ids"] = [str(d) for d in ids] if ids else None
    out["output_device"] = _plain(getattr(model, "output_device", None))
    cap = getattr(model, "bucket_bytes_cap", None)
    out["bucket_cap_mb"] = cap / (1024 * 1024) if isinstance(cap, (int, float)) else None
    for name in ("find_unused_parameters", "broadcast_buffers", "gradient_as_bucket_view",
                 "static_graph"):
        out[name] = _plain(getattr(model, name, None))
    out["launcher"] = _launcher()
    return out


def torch_hparams(*, model: torch.nn.Module | None = None, optimizer: Any = None,
                  scheduler: Any = None) -> dict[str, Any]:
    """Hyperparameters of a PyTorch training set-up, ready for ``run.hparams.update``.

    Args:
        model: the model, wrapped in DDP/DataParallel or not. Recorded as ``model``
            (class of the unwrapped module and its parameter counts) and, when wrapped, as
            ``distributed.torch`` (see :func:`describe_torch_model`).
        optimizer: recorded as ``optimizer`` (see :func:`describe_optimizer`).
        scheduler: recorded as ``lr_scheduler`` (see :func:`describe_scheduler`).

    Returns:
        A new dict with only the keys for what was given.
    """
    out: dict[str, Any] = {}
    if model is not None:
        inner = getattr(model, "module", model) if type(model).__name__ in _WRAPPERS else model
        out["model"] = {"class": type(inner).__name__, "parameters": count_parameters(inner)}
        desc = describe_torch_model(model)
        if desc["kind"] != "not distributed":
            out["distributed"] = {"torch": desc}
    if optimizer is not None:
        out["optimizer"] = describe_optimizer(optimizer)
    if scheduler is not None:
        out["lr_scheduler"] = describe_scheduler(scheduler)
    return out

