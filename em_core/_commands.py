"""The built-in commands of ``em`` (``ls``, ``show``, ``export``); :mod:`em_core.cli` loads
this module only for them."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ._console import CONSOLE_LOG
from ._metricread import from_json_number, iter_records, json_number, summarize
from ._paths import run_parent_dir
from ._system import METRIC_TYPE as SYSTEM
from ._system import Stats, summary_lines
from .errors import CorruptRunError, EmError
from .run import META_FILE, METRICS_FILE, Run, load_run, ts_iso

__all__ = ["WIDE_MAX_COLUMNS", "run_builtin"]

WIDE_MAX_COLUMNS = 1000  # `em export --wide`: metric columns beyond this are refused
INCOMPLETE = "incomplete (no run.json)"


def _default_dir() -> Path:
    return run_parent_dir()


def _run_dirs(parent: Path) -> list[Path]:
    """Every run directory under ``parent``, also those with no run.json (a run killed
    between mkdir and its first write), so that nothing is hidden."""
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _resolve(ref: str, parent: Path) -> Path:
    p = Path(ref)
    if (p / META_FILE).is_file():
        return p
    dirs = [d for d in _run_dirs(parent) if (d / META_FILE).is_file()]
    candidates = [d for d in dirs if d.name == ref]
    if not candidates:
        by_name = []
        for d in dirs:
            try:
                meta = json.loads((d / META_FILE).read_text("utf-8"))
                if isinstance(meta, dict) and meta.get("name") == ref:
                    by_name.append(d)
            except (OSError, ValueError, RecursionError):
                continue
        candidates = sorted(by_name, key=lambda d: d.stat().st_mtime)
    if not candidates:
        if p.is_dir():
            raise EmError(f"{_safe(str(p))!r} is not a readable run: {INCOMPLETE}")
        raise EmError(f"no run {_safe(ref)!r}: not a run directory, nor a run name under "
                      f"{_safe(str(parent))!r}")
    return candidates[-1]


def _safe(text: Any) -> str:
    """``text`` with control characters (C0, DEL, C1, bidi and other format characters,
    line separators) written as escapes (``\\x1b``, ``\\r``, ``\\u202e``), so a name cannot
    drive the terminal."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _fmt_num(v: Any) -> str:
    v = from_json_number(v)
    if isinstance(v, int) or not isinstance(v, float):
        return _safe(v)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.6g}"


def _summary_of(run: Run) -> dict[str, Any]:
    """The metric summary: the one in run.json when it covers the whole metric log (a
    finished run), else a streaming scan of the log (flat memory)."""
    path = Path(str(run.local)) / METRICS_FILE
    if not path.exists():
        return {"bytes": 0, "metrics": []}
    stored = run._meta.get("summary")
    if (isinstance(stored, dict) and stored.get("bytes") == path.stat().st_size
            and isinstance(stored.get("metrics"), list)):
        return stored
    return summarize(path)


def _duration(run: Run, summary: dict[str, Any]) -> str:
    start = datetime.fromisoformat(run.start_timestamp)
    end = datetime.fromisoformat(run.end_timestamp) if run.end_timestamp else None
    if end is None:
        times = [m["time"] for m in summary["metrics"]]
        end = datetime.fromtimestamp(max(times)).astimezone() if times else start
    secs = int((end - start).total_seconds())
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _table(rows: list[list[str]], out: TextIO, indent: str = "") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def _ls_row(d: Path) -> list[str]:
    if not (d / META_FILE).exists():
        return [_safe(d.name), INCOMPLETE, "", "", ""]
    run = load_run(d)
    summary = _summary_of(run)
    last = "  ".join(f"{_safe(m['type'])}/{_safe(m['name'])}={_fmt_num(m['last'])}"
                     for m in summary["metrics"] if m["type"] != SYSTEM)
    return [_safe(run.alternative_name), run.status.value, _safe(run.start_timestamp[:19]),
            _duration(run, summary), last]


def cmd_ls(args: argparse.Namespace, out: TextIO) -> int:
    """List runs: one row each, also for runs that cannot be read (saying why)."""
    parent = Path(args.dir) if args.dir else _default_dir()
    rows = [["RUN", "STATUS", "START", "DURATION", "LAST METRICS"]]
    for d in _run_dirs(parent):
        try:
            rows.append(_ls_row(d))
        except Exception as e:  # noqa: BLE001 - one damaged run must not hide the others
            rows.append([_safe(d.name), "unreadable", "", "",
                         _safe(f"{type(e).__name__}: {e}")[:120]])
    if len(rows) == 1:
        out.write(f"no runs under {_safe(str(parent))!r}\n")
        return 0
    _table(rows, out)
    return 0


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict) and d:
        items: list[tuple[str, Any]] = []
        for k, v in d.items():
            items.extend(_flatten(v, f"{prefix}{k}."))
        return items
    return [(prefix[:-1], d)]


def _summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = [["TYPE", "METRIC", "POINTS", "STEPS", "LAST", "MIN", "MAX"]]
    for m in summary["metrics"]:
        first = m.get("first_step", "")
        rows.append([_safe(m["type"]), _safe(m["name"]), str(m["count"]),
                     f"{first}..{m['step']}", _fmt_num(m["last"]),
                     "-" if m["min"] is None else _fmt_num(m["min"]),
                     "-" if m["max"] is None else _fmt_num(m["max"])])
    return rows


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    """Show one run; its metrics as a summary read in one streaming pass."""
    d = _resolve(args.run, Path(args.dir) if args.dir else _default_dir())
    if args.console:
        return show_console(d, out, tail=args.tail)
    try:
        _show(load_run(d), out)
    except (CorruptRunError, EmError, OSError):
        raise
    except Exception as e:
        raise CorruptRunError(f"run {_safe(str(d))!r} is damaged: "
                              f"{_safe(type(e).__name__)}: {_safe(e)}") from e
    return 0


def _show(run: Run, out: TextIO) -> None:
    w = out.write
    e = _safe
    summary = _summary_of(run)
    w(f"Run          {e(run.name)}  ({e(run.alternative_name)})\n")
    w(f"Directory    {e(run.local)}\n")
    w(f"Status       {run.status.value}\n")
    w(f"Started      {e(run.start_timestamp)}\n")
    w(f"Ended        {e(run.end_timestamp or '-')}  (duration {_duration(run, summary)})\n")
    if run.labels:
        w(f"Labels       {e(', '.join(map(str, run.labels)))}\n")
    if run.description:
        w(f"Description  {e(run.description)}\n")
    if run.error:
        w(f"Error        {e(run.error.get('type') or '')}: {e(run.error.get('message'))}\n")
    w("\nHyperparameters\n")
    for k, v in _flatten(run.hparams.as_dict()) if len(run.hparams) else []:
        w(f"  {e(k)} = {e(json.dumps(v))}\n")
    _show_platform(run.platform, out)
    _show_git(run.git, out)
    w("\nMetrics\n")
    rows = _summary_rows({"metrics": [m for m in summary["metrics"] if m["type"] != SYSTEM]})
    if len(rows) > 1:
        _table(rows, out, indent="  ")
    else:
        w("  (none)\n")
    system = _system_of(run, summary)
    if system is not None:
        w("\nSystem\n")
        for line in summary_lines(system):
            w(f"  {e(line)}\n")
    console = Path(str(run.local)) / CONSOLE_LOG
    if console.is_file():
        w(f"\nConsole      {e(console)} ({console.stat().st_size} bytes; "
          f"em show {e(run.alternative_name)} --console)\n")
    _show_flow(run.associations, out)


def _show_platform(p: dict[str, Any], out: TextIO) -> None:
    w, e = out.write, _safe
    w("\nPlatform\n")
    w(f"  host {e(p.get('hostname'))}, {e((p.get('os') or {}).get('platform'))}\n")
    w(f"  python {e((p.get('python') or {}).get('version'))}, "
      f"{e((p.get('cpu') or {}).get('count'))} CPUs, memory {e(p.get('memory_bytes'))} bytes\n")
    for g in p.get("gpus") or []:
        w(f"  GPU {e(g.get('index'))}: {e(g.get('name'))} ({e(g.get('memory_total_mb'))} MiB)\n")
    if p.get("packages"):
        w("  packages " + e(", ".join(f"{k} {v}" for k, v in sorted(p["packages"].items())))
          + "\n")
    if p.get("command"):
        w(f"  command {e(' '.join(map(str, p['command'])))}\n")


def _show_git(g: dict[str, Any] | None, out: TextIO) -> None:
    w, e = out.write, _safe
    w("\nGit\n")
    if g:
        dirty = " (dirty)" if g.get("dirty") else ""
        w(f"  {e(g.get('remote_url') or '(no remote)')}  branch {e(g.get('branch'))}  commit "
          f"{e((g.get('commit') or '')[:12])}{dirty}  entry point {e(g.get('entry_point'))}\n")
    else:
        w("  (not in a git repository)\n")


def _show_flow(assoc: dict[str, list[dict[str, Any]]], out: TextIO) -> None:
    w, e = out.write, _safe
    w("\nData flow\n")
    if not any(assoc.values()):
        w("  (no artifacts or runs marked)\n")
    for key, entries in assoc.items():
        for x in entries:
            where = x.get("local") or (f"on the server: {x['path']}" if x.get("path") else None)
            w(f"  {e(key)}: {e(x.get('kind'))} {e(x.get('alternative_name'))}  {e(where)}\n")


def _system_of(run: Run, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The system-metrics summary: stored in run.json when the run ended, else read from
    the metric log (a run still going, or one that crashed)."""
    stored = run._meta.get("system")
    if isinstance(stored, dict) and isinstance(stored.get("metrics"), dict):
        return stored
    if not any(m["type"] == SYSTEM for m in summary["metrics"]):
        return None
    stats = Stats.of_records(iter_records(Path(str(run.local)) / METRICS_FILE))
    return stats.to_meta(math.nan) if stats.samples else None


def show_console(run_dir: Path, out: TextIO, *, tail: int | None = None) -> int:
    """``em show RUN --console [--tail N]``: the run's console.log as it was written (the
    program's own bytes, escape sequences included, as ``cat`` would show them)."""
    path = run_dir / CONSOLE_LOG
    if not path.is_file():
        raise EmError(f"run {_safe(str(run_dir))!r} has no {CONSOLE_LOG} (console capture was "
                      "off, or the run is older)")
    sink = getattr(out, "buffer", None)
    out.flush()
    with open(path, "rb") as f:
        if tail is not None:
            f.seek(_tail_offset(f, tail))
        while chunk := f.read(1 << 16):
            if sink is not None:
                sink.write(chunk)
            else:
                out.write(chunk.decode("utf-8", "replace"))
    if sink is not None:
        sink.flush()
    return 0


def _tail_offset(f: BinaryIO, lines: int) -> int:
    """Where the last ``lines`` lines of the file start (read backwards, a block at a time)."""
    end = f.seek(0, 2)
    if lines <= 0:
        return end
    pos, seen = end, 0
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        if pos + step == end and block.endswith(b"\n"):
            block = block[:-1]  # the file's last newline ends the last line, not a new one
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            seen += 1
            if seen == lines:
                return pos + i + 1
    return 0


def _num(v: int | float) -> str:
    return repr(v)  # nan, inf, -inf for non-finite floats: float() reads them back


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    """Export a run's metrics, streamed (flat memory in the run's size).

    CSV (default) is long form, one row per value: ``type,name,step,epoch,timestamp,value``
    (non-finite values as ``nan``, ``inf``, ``-inf``). ``--wide`` writes one row per
    ``log`` call with one column per metric name, refused beyond WIDE_MAX_COLUMNS names.
    JSONL is one strict-JSON object per ``log`` call, ``{"type", "step", "epoch",
    "timestamp", "values"}``, with NaN and infinities as the strings "NaN", "Infinity",
    "-Infinity".
    """
    d = _resolve(args.run, Path(args.dir) if args.dir else _default_dir())
    run = load_run(d)
    path = Path(str(run.local)) / METRICS_FILE
    if not path.exists():
        return 0
    names = _wide_names(run, path) if args.format == "csv" and args.wide else []
    dest: TextIO = open(args.output, "w", newline="", encoding="utf-8") if args.output else out
    # Escape control characters only for a terminal: a file gets the names as recorded.
    e = _safe if dest is out and out.isatty() else str
    try:
        if args.format == "jsonl":
            _export_jsonl(path, dest, e)
        elif args.wide:
            _export_wide(path, dest, e, names)
        else:
            _export_long(path, dest, e)
    finally:
        if dest is not out:
            dest.close()
    return 0


def _wide_names(run: Run, path: Path) -> list[str]:
    names: dict[str, None] = {}
    for r in iter_records(path):
        names.update(dict.fromkeys(r.values))
        if len(names) > WIDE_MAX_COLUMNS:
            raise EmError(f"run {_safe(run.alternative_name)!r} has more than "
                          f"{WIDE_MAX_COLUMNS} metric names: too many columns for --wide; "
                          "use the default long form")
    return list(names)


def _export_jsonl(path: Path, dest: TextIO, e: Callable[[Any], str]) -> None:
    for r in iter_records(path):
        dest.write(json.dumps(
            {"type": e(r.type), "step": r.step, "epoch": r.epoch, "timestamp": ts_iso(r.time),
             "values": {e(k): json_number(v) for k, v in r.values.items()}},
            allow_nan=False) + "\n")


def _export_wide(path: Path, dest: TextIO, e: Callable[[Any], str], names: list[str]) -> None:
    writer = csv.writer(dest, lineterminator="\n")
    writer.writerow(["type", "step", "epoch", "timestamp", *map(e, names)])
    for r in iter_records(path):
        writer.writerow([e(r.type), r.step, "" if r.epoch is None else r.epoch,
                         ts_iso(r.time), *("" if (v := r.values.get(n)) is None else
                                           _num(v) for n in names)])


def _export_long(path: Path, dest: TextIO, e: Callable[[Any], str]) -> None:
    writer = csv.writer(dest, lineterminator="\n")
    writer.writerow(["type", "name", "step", "epoch", "timestamp", "value"])
    for r in iter_records(path):
        epoch = "" if r.epoch is None else r.epoch
        ts = ts_iso(r.time)
        t = e(r.type)
        for k, v in r.values.items():
            writer.writerow([t, e(k), r.step, epoch, ts, _num(v)])


def _parser(plugins: Sequence[str]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="em", description="Look at runs recorded by em.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("ls", help="list runs")
    p.add_argument("dir", nargs="?", help="parent directory (default $EM_RUN_PARENT_DIR or "
                                          ".em/runs)")
    for name, hlp in (("show", "show one run"), ("export", "export a run's metrics")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("run", help="run directory, directory name, or run name")
        p.add_argument("--dir", help="where to look up run names (default $EM_RUN_PARENT_DIR "
                                     "or .em/runs)")
        if name == "show":
            p.add_argument("--console", action="store_true",
                           help="print the run's console.log (its captured stdout and stderr)")
            p.add_argument("--tail", type=int, metavar="N",
                           help="with --console: only the last N lines")
        if name == "export":
            p.add_argument("--format", choices=["csv", "jsonl"], default="csv",
                           help="csv: long form, one row per value (type,name,step,epoch,"
                                "timestamp,value; non-finite as nan/inf/-inf); jsonl: one "
                                "strict-JSON object per log call, NaN and infinities as the "
                                "strings \"NaN\", \"Infinity\", \"-Infinity\"")
            p.add_argument("--wide", action="store_true",
                           help="csv with one column per metric name (refused beyond "
                                f"{WIDE_MAX_COLUMNS} names)")
            p.add_argument("-o", "--output", help="file to write (default: standard output)")
    for name in plugins:
        sub.add_parser(name, help=f"see 'em {name} --help'", add_help=False)
    return ap


def run_builtin(argv: list[str], plugins: Sequence[str]) -> int:
    """``em ls|show|export ...`` (``plugins``: the other subcommands, for ``--help``)."""
    args = _parser(plugins).parse_args(argv)
    try:
        handler = {"ls": cmd_ls, "show": cmd_show, "export": cmd_export}[args.command]
        return handler(args, sys.stdout)
    except (EmError, CorruptRunError, OSError) as e:
        sys.stderr.write(f"em: {e}\n")
        return 2
    except BrokenPipeError:
        return 0
