"""What ``create_run`` returns on a rank other than 0: :class:`NoOpRun`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._lifecycle import Status
from ._metricread import Point, Record
from .dist import dist_info
from .hparams import Hyperparameters

__all__ = ["NoOpRun"]


class NoOpRun:
    """What ``create_run`` returns on a rank other than 0: accepts every call of
    :class:`Run` and writes nothing. Hyperparameters are kept in memory only."""

    def __init__(self, name: str = "default", hparams: Any = None,
                 labels: list[str] | None = None, description: str = "", *,
                 upload: dict[str, Any] | None = None) -> None:
        self.name = name
        self.alternative_name = name
        self.labels = list(labels or [])
        self.description = description
        from .run import now_iso  # run.py imports this module

        self.status = Status.RUNNING
        self.start_timestamp = now_iso()
        self.end_timestamp: str | None = None
        self.hparams = Hyperparameters(hparams or {})
        self.metrics: dict[str, list[dict[str, Any]]] = {}
        self.platform: dict[str, Any] = {}
        self.git: dict[str, Any] | None = None
        self.associations: dict[str, list[dict[str, Any]]] = {}
        self.remote: list[dict[str, Any]] = []
        self.local: str | None = None
        self.error: dict[str, Any] | None = None
        self.upload_options: dict[str, Any] = dict(upload or {})

    def log(self, type: str, metrics: Mapping[str, Any], step: int,  # noqa: A002
            epoch: int | None = None) -> None:
        """Does nothing (this rank does not record)."""

    def log_many(self, type: str, steps: Sequence[int], metrics: Any,  # noqa: A002
                 epochs: int | Sequence[int] | None = None) -> None:
        """Does nothing (this rank does not record)."""

    def resume(self) -> None:
        pass

    def last_point(self, type: str) -> Point | None:  # noqa: A002 - as Run.last_point
        """None: this rank records nothing."""
        return None

    def finish(self, status: Status | str = Status.COMPLETE, *, error: Any = None) -> None:
        self.status = Status(status)

    def flush(self) -> None:
        pass

    def mark_input(self, obj: Any) -> None:
        pass

    def mark_output(self, obj: Any) -> None:
        pass

    def upload(self, *args: Any, **kwargs: Any) -> None:
        """Does nothing (only rank 0 uploads)."""

    def _add_association(self, key: str, other: Any) -> None:
        pass

    def metric_records(self) -> list[Record]:
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status.value, "hparams": self.hparams.as_dict()}

    @classmethod
    def parse_from_dict(cls, d: Mapping[str, Any]) -> dict[str, Any]:
        """As :meth:`Run.parse_from_dict`."""
        from .run import Run

        return Run.parse_from_dict(d)

    def __enter__(self) -> NoOpRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<em NoOpRun {self.name!r} (rank {dist_info().rank} does not record)>"
