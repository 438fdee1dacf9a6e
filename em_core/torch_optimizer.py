"""The description of a PyTorch optimizer recorded as hyperparameters.

Read by duck typing (``param_groups``, ``numel()``): PyTorch is never imported here, so
``integrations.torch`` and ``run.hparams.parse(dist_hvd=...)`` (a Horovod
``DistributedOptimizer`` is a ``torch.optim`` optimizer) share one layout.
"""

from __future__ import annotations

from typing import Any

from .sanitize import json_safe

__all__ = ["describe_torch_optimizer"]


def describe_torch_optimizer(opt: Any) -> dict[str, Any]:
    """A ``torch.optim`` optimizer's class and settings.

    Every parameter-group setting is recorded (lr, momentum, betas, eps, weight_decay, ...,
    made JSON-safe by :func:`em_core.sanitize.json_safe`), plus ``num_tensors`` and
    ``num_elements`` (the parameters it updates). With one parameter group the settings are
    at the top level; with several, the settings shared by all groups are at the top level
    and ``param_groups`` lists what differs per group, with its counts.

    Args:
        opt: anything with a ``param_groups`` list of dicts (``torch.optim.Optimizer``,
            ``ZeroRedundancyOptimizer``, Horovod's ``DistributedOptimizer``).

    Returns:
        ``{'class': ..., <settings>, 'num_tensors', 'num_elements'[, 'param_groups']}``.
    """
    settings, counts = [], []
    for i, g in enumerate(opt.param_groups):
        params = list(g.get("params", []))
        settings.append({k: json_safe(v, f"param_groups[{i}].{k}") for k, v in g.items()
                         if k != "params"})
        counts.append({"num_tensors": len(params),
                       "num_elements": sum(int(p.numel()) for p in params)})
    out: dict[str, Any] = {"class": type(opt).__name__}
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
