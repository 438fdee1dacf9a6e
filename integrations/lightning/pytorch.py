"""EMLogger for ``lightning.pytorch`` (the ``lightning`` package).

Example:
    >>> import lightning.pytorch as L                          # doctest: +SKIP
    >>> from integrations.lightning.pytorch import EMLogger    # doctest: +SKIP
    >>> trainer = L.Trainer(max_epochs=2, logger=EMLogger(name='mnist'))  # doctest: +SKIP
"""

from __future__ import annotations

try:
    from lightning.pytorch import LightningModule
    from lightning.pytorch.loggers import Logger
except ModuleNotFoundError as e:  # pragma: no cover - exercised in the no-framework session
    raise ModuleNotFoundError(
        "integrations.lightning.pytorch needs Lightning: pip install 'em[lightning]'",
        name=e.name) from e

from ._base import LOGGER_DOC, EMLoggerBase

__all__ = ["EMLogger"]


class EMLogger(EMLoggerBase, Logger):
    __doc__ = LOGGER_DOC
    _module_class = LightningModule
    _flavour = "lightning.pytorch"
