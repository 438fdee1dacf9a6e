"""Lightning integration: :class:`EMLogger`, a Lightning ``Logger`` that records into an em run.

``lightning.pytorch`` and ``pytorch_lightning`` have distinct ``Logger`` classes, so there is
one EMLogger per package:

* ``integrations.lightning.pytorch.EMLogger`` for ``lightning.pytorch``;
* ``integrations.lightning.pytorch_lightning.EMLogger`` for ``pytorch_lightning``.

``from integrations.lightning import EMLogger`` gives the ``lightning.pytorch`` one when the
``lightning`` package is installed, else the ``pytorch_lightning`` one. Nothing is imported
until ``EMLogger`` is first looked up.
"""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["EMLogger"]


def __getattr__(name: str) -> Any:
    if name != "EMLogger":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if importlib.util.find_spec("lightning") is not None:
        from .pytorch import EMLogger
    elif importlib.util.find_spec("pytorch_lightning") is not None:
        from .pytorch_lightning import EMLogger
    else:
        raise ModuleNotFoundError("integrations.lightning needs Lightning: "
                                  "pip install 'em[lightning]'", name="lightning")
    return EMLogger
