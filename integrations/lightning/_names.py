"""Lightning metric names -> em (type, name).

Lightning's ``self.log`` names carry the stage by convention (``train_loss``, ``val/acc``) and
get ``_step``/``_epoch`` suffixes when a value is logged both per step and per epoch. em keeps
one series per (type, name), so the rule is:

* a leading ``train``/``training``, ``val``/``valid``/``validation``/``validate``,
  ``test``/``testing`` followed by ``_``, ``/``, ``-`` or ``.`` gives the type and is removed;
  without one, the trainer's stage at logging time gives it (training -> train, validating ->
  val, testing -> test, predicting -> predict; unknown -> train);
* the series that em's types are about keeps the plain name: per-step values for ``train``
  (``train_loss_step`` -> train/``loss``, ``train_loss_epoch`` -> train/``loss_epoch``),
  per-epoch values for ``val`` and ``test`` (``val_loss_epoch`` -> val/``loss``,
  ``val_loss_step`` -> val/``loss_step``).
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["split_metric_name", "stage_type"]

_PREFIX = re.compile(r"^(train|training|val|valid|validation|validate|test|testing)[/_\-.](.+)$",
                     re.IGNORECASE)
_TYPES = {"train": "train", "training": "train", "val": "val", "valid": "val",
          "validation": "val", "validate": "val", "test": "test", "testing": "test"}
_STAGES = {"train": "train", "sanity_check": "val", "validate": "val", "test": "test",
           "predict": "predict"}


def stage_type(stage: object) -> str:
    """The em type for a ``RunningStage`` (or its string value); 'train' when unknown."""
    value = getattr(stage, "value", stage)
    return _STAGES.get(value, "train") if isinstance(value, str) else "train"


@lru_cache(maxsize=4096)  # the same few names come every step: map each once
def split_metric_name(key: str, default_type: str) -> tuple[str, str]:
    """Map a Lightning metric key to em's ``(type, name)``; see the module docstring.

    Example:
        >>> split_metric_name('train_loss_step', 'train')
        ('train', 'loss')
        >>> split_metric_name('val/acc_epoch', 'train')
        ('val', 'acc')
        >>> split_metric_name('lr-SGD', 'train')
        ('train', 'lr-SGD')
    """
    m = _PREFIX.match(key)
    if m:
        mtype, name = _TYPES[m.group(1).lower()], m.group(2)
    else:
        mtype, name = default_type, key
    if mtype == "train" and name.endswith("_step") and len(name) > 5:
        name = name[:-5]
    elif mtype in ("val", "test") and name.endswith("_epoch") and len(name) > 6:
        name = name[:-6]
    return mtype, name
