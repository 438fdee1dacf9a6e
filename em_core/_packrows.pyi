"""Run.log_many's packing loop in C (see _packrows.c)."""

from typing import Any

def pack(buffer: Any, offset: int, rows: int, groups: tuple[tuple[int, int, int, bytes], ...],
         steps: list[Any], epochs: list[Any] | int | None, time: float, columns: list[list[Any]],
         classes: tuple[type, ...], /) -> int: ...
