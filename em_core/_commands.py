"""The built-in commands of ``em`` (``ls``, ``show``, ``export``); :mod:`em_core.cli` loads
this module only for them."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from ._metricfile import Record
from ._paths import run_parent_dir
from .errors import CorruptRunError, EmError
from .run import META_FILE, Run, load_run, ts_iso

__all__ = ["run_builtin"]


def _default_dir() -> Path:
    return run_parent_dir()


def _run_dirs(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted((p for p in parent.iterdir() if (p / META_FILE).is_file()),
                  key=lambda p: p.name)


def _resolve(ref: str, parent: Path) -> Path:
    p = Path(ref)
    if (p / META_FILE).is_file():
        return p
    candidates = [d for d in _run_dirs(parent) if d.name == ref]
    if not candidates:
        by_name = []
        for d in _run_dirs(parent):
            try:
                if json.loads((d / META_FILE).read_text("utf-8")).get("name") == ref:
                    by_name.append(d)
            except (OSError, ValueError):
                continue
        candidates = sorted(by_name, key=lambda d: d.stat().st_mtime)
    if not candidates:
        raise EmError(f"no run {ref!r}: not a run directory, nor a run name under {str(parent)!r}")
    return candidates[-1]


def _fmt_num(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.6g}"


def _duration(run: Run) -> str:
    start = datetime.fromisoformat(run.start_timestamp)
    end = datetime.fromisoformat(run.end_timestamp) if run.end_timestamp else None
    if end is None:
        recs = run.metric_records()
        end = datetime.fromtimestamp(recs[-1].time).astimezone() if recs else start
    secs = int((end - start).total_seconds())
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _last_values(records: Sequence[Record]) -> dict[str, float | int]:
    last: dict[str, float | int] = {}
    for r in records:
        for k, v in r.values.items():
            last[f"{r.type}/{k}"] = v
    return last


def _table(rows: list[list[str]], out: TextIO, indent: str = "") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.write(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def cmd_ls(args: argparse.Namespace, out: TextIO) -> int:
    parent = Path(args.dir) if args.dir else _default_dir()
    rows = [["RUN", "STATUS", "START", "DURATION", "LAST METRICS"]]
    for d in _run_dirs(parent):
        try:
            run = load_run(d)
            recs = run.metric_records()
            last = "  ".join(f"{k}={_fmt_num(v)}" for k, v in _last_values(recs).items())
            rows.append([run.alternative_name, run.status.value, run.start_timestamp[:19],
                         _duration(run), last])
        except (EmError, OSError, ValueError) as e:
            rows.append([d.name, "unreadable", "", "", str(e)[:80]])
    if len(rows) == 1:
        out.write(f"no runs under {str(parent)!r}\n")
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


def _summary(records: Sequence[Record]) -> list[list[str]]:
    stats: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        for k, v in r.values.items():
            s = stats.get((r.type, k))
            if s is None:
                stats[(r.type, k)] = [1, r.step, r.step, v, v, v]
                continue
            s[0] += 1
            s[2] = r.step
            s[3] = v
            if not (isinstance(v, float) and math.isnan(v)):
                s[4] = v if (isinstance(s[4], float) and math.isnan(s[4])) else min(s[4], v)
                s[5] = v if (isinstance(s[5], float) and math.isnan(s[5])) else max(s[5], v)
    rows = [["TYPE", "METRIC", "POINTS", "STEPS", "LAST", "MIN", "MAX"]]
    for (t, k), (n, first, lst, last, lo, hi) in stats.items():
        rows.append([t, k, str(n), f"{first}..{lst}", _fmt_num(last), _fmt_num(lo), _fmt_num(hi)])
    return rows


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    run = load_run(_resolve(args.run, Path(args.dir) if args.dir else _default_dir()))
    w = out.write
    w(f"Run          {run.name}  ({run.alternative_name})\n")
    w(f"Directory    {run.local}\n")
    w(f"Status       {run.status.value}\n")
    w(f"Started      {run.start_timestamp}\n")
    w(f"Ended        {run.end_timestamp or '-'}  (duration {_duration(run)})\n")
    if run.labels:
        w(f"Labels       {', '.join(run.labels)}\n")
    if run.description:
        w(f"Description  {run.description}\n")
    if run.error:
        w(f"Error        {run.error.get('type') or ''}: {run.error.get('message')}\n")
    w("\nHyperparameters\n")
    for k, v in _flatten(run.hparams.as_dict()) if len(run.hparams) else []:
        w(f"  {k} = {json.dumps(v)}\n")
    p = run.platform
    w("\nPlatform\n")
    w(f"  host {p.get('hostname')}, {(p.get('os') or {}).get('platform')}\n")
    w(f"  python {(p.get('python') or {}).get('version')}, {(p.get('cpu') or {}).get('count')} "
      f"CPUs, memory {p.get('memory_bytes')} bytes\n")
    for g in p.get("gpus") or []:
        w(f"  GPU {g.get('index')}: {g.get('name')} ({g.get('memory_total_mb')} MiB)\n")
    if p.get("packages"):
        w("  packages " + ", ".join(f"{k} {v}" for k, v in sorted(p["packages"].items())) + "\n")
    if p.get("command"):
        w(f"  command {' '.join(p['command'])}\n")
    g = run.git
    w("\nGit\n")
    if g:
        dirty = " (dirty)" if g.get("dirty") else ""
        w(f"  {g.get('remote_url') or '(no remote)'}  branch {g.get('branch')}  commit "
          f"{(g.get('commit') or '')[:12]}{dirty}  entry point {g.get('entry_point')}\n")
    else:
        w("  (not in a git repository)\n")
    w("\nMetrics\n")
    rows = _summary(run.metric_records())
    if len(rows) > 1:
        _table(rows, out, indent="  ")
    else:
        w("  (none)\n")
    assoc = run.associations
    w("\nData flow\n")
    if not any(assoc.values()):
        w("  (no artifacts or runs marked)\n")
    for key, entries in assoc.items():
        for e in entries:
            w(f"  {key}: {e.get('kind')} {e.get('alternative_name')}  {e.get('local')}\n")
    return 0


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    run = load_run(_resolve(args.run, Path(args.dir) if args.dir else _default_dir()))
    records = run.metric_records()
    dest: TextIO = open(args.output, "w", newline="", encoding="utf-8") if args.output else out
    try:
        if args.format == "jsonl":
            for r in records:
                dest.write(json.dumps({"type": r.type, "step": r.step, "epoch": r.epoch,
                                       "timestamp": ts_iso(r.time), "values": r.values}) + "\n")
        else:
            names: dict[str, None] = {}
            for r in records:
                names.update(dict.fromkeys(r.values))
            writer = csv.writer(dest, lineterminator="\n")
            writer.writerow(["type", "step", "epoch", "timestamp", *names])
            for r in records:
                writer.writerow([r.type, r.step, "" if r.epoch is None else r.epoch,
                                 ts_iso(r.time), *("" if (v := r.values.get(n)) is None else
                                                   repr(v) for n in names)])
    finally:
        if dest is not out:
            dest.close()
    return 0


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
        if name == "export":
            p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
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
