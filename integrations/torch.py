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
from typing import Any

from em_core.dist import describe_torch_model as _describe_torch_model
from em_core.sanitize import json_safe
from em_core.torch_optimizer import describe_torch_optimizer

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


def _plain(value: Any, path: str) -> Any:
    """:func:`em_core.sanitize.json_safe`, with MultiStepLR's milestone ``Counter`` as the
    sorted list of milestones it stands for."""
    if isinstance(value, collections.Counter):
        value = sorted(value.elements())
    return json_safe(value, path)


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
    return describe_torch_optimizer(optimizer)


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
        out[k] = _plain(v, k)
    # Configuration these schedulers keep only under private names.
    inner = attrs.get("_schedulers")
    if isinstance(inner, (list, tuple)):
        out["schedulers"] = [describe_scheduler(s) for s in inner]
    if "_milestones" in attrs:
        out["milestones"] = _plain(attrs["_milestones"], "milestones")
    if "_anneal_func_type" in attrs:  # OneCycleLR's anneal_strategy
        out["anneal_strategy"] = _plain(attrs["_anneal_func_type"], "anneal_strategy")
    return out


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
    return _describe_torch_model(model)


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

