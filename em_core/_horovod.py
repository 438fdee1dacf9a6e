"""Describing a Horovod set-up for ``run.hparams.parse(dist_hvd=...)``, by duck typing
(Horovod is never imported here)."""

from __future__ import annotations

from typing import Any


def describe_hvd(hvd: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "horovod"}
    for name in ("size", "rank", "local_size", "local_rank", "cross_size", "cross_rank"):
        fn = getattr(hvd, name, None)
        if callable(fn):
            try:
                out[name] = int(fn())
            except (ValueError, RuntimeError):
                out[name] = None
    for name in ("gloo_enabled", "mpi_enabled", "nccl_built"):
        fn = getattr(hvd, name, None)
        if callable(fn):
            try:
                out[name] = bool(fn())
            except (ValueError, RuntimeError):
                pass
    return out
