"""What the uploader reads from a metric log: complete records only (never a torn or
zero-padded tail), in batches that end on record boundaries and start where the server is."""

from __future__ import annotations

from pathlib import Path

import pytest

import em_core as em
from em_core import _upload
from em_core._metricfile import read_records
from em_core._upload import metric_ranges


def _records(tmp_path: Path, data: bytes) -> int:
    f = tmp_path / "joined.bin"
    f.write_bytes(data)
    return len(read_records(f))


def test_live_log_stops_before_zero_padding(tmp_path: Path) -> None:
    run = em.create_run(name="live")
    for i in range(1000):
        run.log("train", {"loss": float(i)}, step=i)
    path = Path(run.local) / "metrics.bin"
    pieces = list(metric_ranges(path, 0))
    joined = b"".join(d for _, d in pieces)
    size = path.stat().st_size
    assert len(joined) < size  # the live file is zero-padded beyond the writer
    assert path.read_bytes()[len(joined):] == bytes(size - len(joined))
    assert _records(tmp_path, joined) == 1000
    # later records: shipped from where the server is, not again from 0
    run.log("train", {"loss": -1.0}, step=1000)
    more = list(metric_ranges(path, len(joined)))
    assert more and more[0][0] == len(joined)
    assert _records(tmp_path, joined + b"".join(d for _, d in more)) == 1001
    run.finish()


def test_torn_tail_is_never_sent(tmp_path: Path) -> None:
    run = em.create_run(name="torn")
    for i in range(10):
        run.log("train", {"loss": float(i)}, step=i)
    run.finish()
    path = Path(run.local) / "metrics.bin"
    whole = path.read_bytes()
    last = whole[-40:]  # part of the last record, as a crash mid-write leaves it
    with open(path, "ab") as f:
        f.write(last[:20])
    joined = b"".join(d for _, d in metric_ranges(path, 0))
    assert joined == whole
    assert list(metric_ranges(path, len(whole))) == []


def test_batches_end_on_record_boundaries(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_upload, "BATCH", 1000)
    run = em.create_run(name="batches")
    wide = {f"metric_with_a_long_name_{k:03d}": float(k) for k in range(60)}  # schema > 1000 B
    run.log("train", wide, step=0)
    for i in range(500):
        run.log("train", {"loss": float(i)}, step=i)
    run.finish()
    path = Path(run.local) / "metrics.bin"
    pieces = list(metric_ranges(path, 0))
    offset = 0
    for off, data in pieces:
        assert off == offset
        offset += len(data)
    assert offset == path.stat().st_size
    # a record wider than a batch goes whole (with what follows it in that read); the
    # rest keep to the batch size
    assert len(pieces[1][1]) > 1000
    assert max(len(d) for _, d in pieces[2:]) <= 1000
    assert len(pieces) > 10
    # every piece but the first starts a record: prefix + piece always parses whole
    prefix = b""
    count = 0
    for _, data in pieces:
        prefix += data
        n = _records(tmp_path, prefix)
        assert n >= count
        count = n
    assert count == 501


def test_missing_or_foreign_file_sends_nothing(tmp_path: Path) -> None:
    assert list(metric_ranges(tmp_path / "absent.bin", 0)) == []
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a metric log at all" * 10)
    assert list(metric_ranges(junk, 0)) == []
