"""EMLogger for ``pytorch_lightning`` (the ``pytorch-lightning`` package).

Example:
    >>> import pytorch_lightning as L                           # doctest: +SKIP
    >>> from integrations.lightning.pytorch_lightning import EMLogger  # doctest: +SKIP
    >>> trainer = L.Trainer(max_epochs=2, logger=EMLogger(name='mnist'))  # doctest: +SKIP
"""

from __future__ import annotations

try:
    from pytorch_lightning import LightningModule
    from pytorch_lightning.loggers import Logger
except ModuleNotFoundError as e:  # pragma: no cover - exercised in the no-framework session
    raise ModuleNotFoundError(
        "integrations.lightning.pytorch_lightning needs pytorch-lightning: "
        "pip install pytorch-lightning",
        name=e.name) from e

from ._base import LOGGER_DOC, EMLoggerBase

__all__ = ["EMLogger"]


class EMLogger(EMLoggerBase, Logger):
    __doc__ = LOGGER_DOC
    _module_class = LightningModule
    _flavour = "pytorch_lightning"
