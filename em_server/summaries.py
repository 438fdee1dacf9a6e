"""Per-chunk summaries of a metric series, and downsampled views read from them.

Every chunk row of a series (see :mod:`em_server.metrics`) records ``start``, the position of
its first point in the series (points are numbered 0, 1, ... in the order they were logged),
the range of its step, epoch and time values, and ``summary``: for each block of points
inside one aligned window ``[k*BLOCK, (k+1)*BLOCK)`` of positions, its minimum and its maximum
point (the first one, on ties; NaN counts as neither) with their step, epoch and time.

A view of ``max_points`` over a range groups the points in range into buckets of
``bucket_width`` consecutive positions (bucket ``floor(position / bucket_width)``) and keeps
each bucket's minimum and maximum point, so its extremes are exact. When the width is a
multiple of :data:`BLOCK`, a block never straddles two buckets and a chunk lying wholly in
the range is read from its summary alone, not point by point; only chunks cut by the range
ends are read whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BLOCK = 32  # points per summary block (80 bytes of summary per block)
# summaries serve a view whose bucket width is at least this (rounding the width up to a
# multiple of BLOCK then costs at most a quarter of the buckets); narrower ones read points
MIN_SUMMARY_WIDTH = 4 * BLOCK

SUMMARY = np.dtype([("min_pos", "<i8"), ("min_val", "<f8"), ("min_step", "<i8"),
                    ("min_epoch", "<i8"), ("min_time", "<f8"),
                    ("max_pos", "<i8"), ("max_val", "<f8"), ("max_step", "<i8"),
                    ("max_epoch", "<i8"), ("max_time", "<f8")])


def first_arg_extreme(key: np.ndarray, seg_starts: np.ndarray) -> np.ndarray:
    """Index of the first minimum of ``key`` in each segment (segments start at the sorted
    indices ``seg_starts``, the first at 0; ``key`` holds no NaN)."""
    mins = np.minimum.reduceat(key, seg_starts)
    seg = np.zeros(len(key), dtype=np.intp)
    seg[seg_starts[1:]] = 1
    seg = np.cumsum(seg)
    hit = np.flatnonzero(key == mins[seg])
    first = np.ones(len(hit), dtype=bool)
    first[1:] = seg[hit[1:]] != seg[hit[:-1]]
    return hit[first]


def _lo(vals: np.ndarray) -> np.ndarray:
    nan = np.isnan(vals)
    return np.where(nan, np.inf, vals) if nan.any() else vals


def _neg_hi(vals: np.ndarray) -> np.ndarray:  # the max as a min: -value, NaN never wins
    nan = np.isnan(vals)
    return np.where(nan, np.inf, -vals) if nan.any() else -vals


def _ranges(a: np.ndarray) -> tuple[Any, Any]:
    if not len(a):
        return None, None
    lo, hi = a.min(), a.max()
    if isinstance(lo, np.floating) and not (np.isfinite(lo) and np.isfinite(hi)):
        return None, None  # unknown: such a chunk is always read point by point
    return lo.item(), hi.item()


def summarize(start: int, steps: np.ndarray, epochs: np.ndarray, times: np.ndarray,
              vals: np.ndarray) -> dict[str, Any]:
    """The summary columns of a chunk whose first point is at position ``start``."""
    n = len(steps)
    off = start % BLOCK  # the chunk starts this far into its first window
    nblocks = -(-(off + n) // BLOCK)
    out = np.zeros(nblocks, dtype=SUMMARY)
    if n:
        for side, key in (("min", _lo(vals)), ("max", _neg_hi(vals))):
            # windows padded with +inf on both sides: argmin takes the first minimum, so the
            # tail padding never wins; the head's only when the whole first block is +inf,
            # and then its first point is the answer
            padded = np.full(nblocks * BLOCK, np.inf)
            padded[off:off + n] = key
            i = padded.reshape(nblocks, BLOCK).argmin(axis=1) + \
                np.arange(nblocks) * BLOCK - off
            i[0] = max(int(i[0]), 0)
            out[f"{side}_pos"] = start + i
            out[f"{side}_val"] = vals[i]
            out[f"{side}_step"] = steps[i]
            out[f"{side}_epoch"] = epochs[i]
            out[f"{side}_time"] = times[i]
    cols: dict[str, Any] = {"start": start, "summary": out.tobytes()}
    for name, a in (("step", steps), ("epoch", epochs), ("time", times)):
        cols[f"{name}_lo"], cols[f"{name}_hi"] = _ranges(a)
    return cols


class Units:
    """Candidates for a view, in position order: single points, or summary blocks (a block
    brings its minimum and maximum point)."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray | bytes] = []

    def add_points(self, pos: np.ndarray, steps: np.ndarray, epochs: np.ndarray,
                   times: np.ndarray, vals: np.ndarray) -> None:
        u = np.zeros(len(pos), dtype=SUMMARY)
        for side in ("min", "max"):
            u[f"{side}_pos"], u[f"{side}_val"], u[f"{side}_step"] = pos, vals, steps
            u[f"{side}_epoch"], u[f"{side}_time"] = epochs, times
        self.parts.append(u)

    def add_summary(self, blob: bytes) -> None:
        self.parts.append(blob)  # joined as bytes: far faster than structured arrays

    def view(self, width: int) -> tuple[np.ndarray, ...]:
        """(positions, steps, epochs, times, values) of each bucket's min and max point."""
        arrays, blobs = [], []
        for p in [*self.parts, None]:
            if isinstance(p, bytes):
                blobs.append(p)
                continue
            if blobs:
                arrays.append(np.frombuffer(b"".join(blobs), dtype=SUMMARY))
                blobs = []
            if p is not None:
                arrays.append(p)
        u = (arrays[0] if len(arrays) == 1 else np.concatenate(arrays)) if arrays else \
            np.zeros(0, dtype=SUMMARY)
        if not len(u):
            return tuple(np.zeros(0, dtype=t) for t in ("<i8", "<i8", "<i8", "<f8", "<f8"))
        bucket = u["min_pos"] // width
        seg = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
        imin = first_arg_extreme(_lo(u["min_val"]), seg)
        imax = first_arg_extreme(_neg_hi(u["max_val"]), seg)
        pos = np.concatenate([u["min_pos"][imin], u["max_pos"][imax]])
        pos, keep = np.unique(pos, return_index=True)  # sorted; a min that is the max once
        cols = [np.concatenate([u[f"min_{f}"][imin], u[f"max_{f}"][imax]])[keep]
                for f in ("step", "epoch", "time", "val")]
        return (pos, *cols)


def bucket_width(first: int, last: int, max_points: int) -> int:
    """Positions per bucket so that the buckets meeting positions ``first..last`` are at
    most ``max_points // 2`` (so the view keeps at most ``max_points`` points); a multiple
    of :data:`BLOCK` when that loses at most a quarter of the buckets."""
    buckets = max_points // 2
    span = last - first + 1
    if buckets < 2:
        return -(-(last + 1) // BLOCK) * BLOCK  # one bucket
    # positions first..last meet at most floor((span - 1) / w) + 2 buckets of width w
    w = -(-span // (buckets - 1))
    if w >= MIN_SUMMARY_WIDTH:
        w = -(-w // BLOCK) * BLOCK
    return max(1, w)


def uses_summaries(width: int) -> bool:
    """Whether a view of this bucket width can read whole chunks from their summaries."""
    return width % BLOCK == 0


def positions(starts: Sequence[int], ns: Sequence[int]) -> np.ndarray:
    """The positions of the points of chunks with these starts and sizes, concatenated."""
    if not len(ns):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in zip(starts, ns,
                                                                                  strict=True)])
