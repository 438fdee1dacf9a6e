"""System metrics: what the machine and the training process were doing, sampled by a
daemon thread every ``EM_SYSTEM_INTERVAL`` seconds (default 10; ``0`` turns it off) and
recorded under the metric type ``system`` through the run's metric log, like ``run.log``.

Each sample is one record; its step is the sample index (0, 1, ...), its time the wall time
of the sample. Names (every value a float; rates are averaged over the interval):

=============================  =======================================================
``proc.cpu_percent``           CPU time of this process (all its threads) per wall time,
                               in % of one core (above 100 with several busy threads)
``proc.rss_bytes``             resident memory of this process
``cpu.percent``                the machine's CPU busy time, in % of all its cores
``mem.used_bytes``             the machine's memory in use (MemTotal - MemAvailable)
``mem.used_percent``           the same, in % of MemTotal
``disk.read_bytes_per_s``      bytes read from the machine's disks (whole devices; loop,
``disk.write_bytes_per_s``     RAM, device-mapper and md devices left out, as they count
                               the same bytes twice)
``disk.free_bytes``            free space (for unprivileged users) of the run's file system
``net.recv_bytes_per_s``       bytes received and sent over every network interface of
``net.sent_bytes_per_s``       the process's network namespace, loopback included
``gpu.<i>.util_percent``       per GPU (NVML index), when NVML loads: utilisation,
``gpu.<i>.mem_used_bytes``     memory used and total, temperature (deg C), power (W);
``gpu.<i>.mem_total_bytes``    a value a GPU does not support is left out
``gpu.<i>.temperature_c``
``gpu.<i>.power_w``
=============================  =======================================================

The machine-wide values come from ``/proc`` (Linux). Where ``/proc`` is missing (macOS, BSD)
only what the standard library can tell is recorded: ``proc.cpu_percent``,
``proc.max_rss_bytes`` (the peak, from ``getrusage``) instead of ``proc.rss_bytes``,
``disk.free_bytes`` and ``cpu.load_1m`` (the 1-minute load average).

GPUs are read through NVML (``pip install 'em[gpu]'``, the ``nvidia-ml-py`` package),
imported in the sampler thread, never at ``create_run``. Without it nothing is recorded for
GPUs and nothing is said; when it is installed but fails (no driver, no GPU), one warning.

Which process samples: only a run that records (rank 0 of a distributed job; with
``EM_ALL_RANKS=1`` each node's local rank 0, or rank 0 alone when the launcher sets no
local rank), so that each machine is counted once. NVML sees every GPU of the machine,
whatever ``CUDA_VISIBLE_DEVICES`` says. A forked child has no sampler (threads do not
survive ``fork``).
"""

from __future__ import annotations

import math
import os
import resource
import threading
import time
from typing import Any

from .errors import EmError, handle_problem

__all__ = ["DEFAULT_INTERVAL", "ENV", "METRIC_TYPE", "SystemSampler", "interval_from"]

ENV = "EM_SYSTEM_INTERVAL"
DEFAULT_INTERVAL = 10.0
METRIC_TYPE = "system"
_JOIN_S = 5.0  # finish() waits at most this long for a sample in progress (NVML can be slow)
_SECTOR = 512  # /proc/diskstats counts 512-byte sectors, whatever the device's block size
_SKIP_DISKS = ("loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd")


def interval_from(value: Any) -> float:
    """The sampling interval in seconds: ``value`` when given, else ``$EM_SYSTEM_INTERVAL``,
    else 10. ``0`` means off.

    Raises:
        TypeError, ValueError: not a number >= 0 (naming the value and where it came from).
    """
    where = "system_interval"
    if value is None:
        raw = os.environ.get(ENV, "").strip()
        if not raw:
            return DEFAULT_INTERVAL
        where = ENV
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{ENV}={raw!r} is not a number of seconds (0 turns system "
                             "metrics off)") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} must be a number of seconds (0 turns system metrics off), "
                        f"got {type(value).__name__}: {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}={value!r} must be a finite number of seconds >= 0 (0 turns "
                         "system metrics off)")
    return float(value)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _whole_disks() -> frozenset[str] | None:
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return None
    return frozenset(n for n in names if not n.startswith(_SKIP_DISKS))


class Probe:
    """Reads the counters behind the metrics; :meth:`values` turns two readings into one
    sample. Every reading is a few small ``/proc`` files (no process is started)."""

    def __init__(self, disk_path: str) -> None:
        self.disk_path = disk_path
        self.proc = os.path.isdir("/proc/self")
        self.disks = _whole_disks() if self.proc else None
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def read(self) -> dict[str, float]:  # noqa: C901 - one read per /proc source, each a few lines in sequence
        """The raw counters now (cumulative ones as totals)."""
        t = os.times()
        c: dict[str, float] = {"wall": time.monotonic(), "proc_cpu": t.user + t.system}
        try:
            st = os.statvfs(self.disk_path)
            c["disk_free"] = float(st.f_bavail * st.f_frsize)
        except OSError:
            c["disk_free"] = math.nan
        if not self.proc:
            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            c["max_rss"] = float(ru if os.uname().sysname == "Darwin" else ru * 1024)
            c["load_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
            return c
        statm = _read("/proc/self/statm")
        c["rss"] = float(int(statm.split()[1]) * self.page) if statm else math.nan
        stat = _read("/proc/stat")
        if stat:
            f = [int(x) for x in stat.split("\n", 1)[0].split()[1:9]]
            c["cpu_total"], c["cpu_idle"] = float(sum(f)), float(f[3] + f[4])
        mem = _read("/proc/meminfo")
        if mem:
            kv = {}
            for line in mem.splitlines():
                k, _, v = line.partition(":")
                if k in ("MemTotal", "MemAvailable"):
                    kv[k] = int(v.split()[0]) * 1024
            c["mem_total"] = float(kv.get("MemTotal", math.nan))
            c["mem_avail"] = float(kv.get("MemAvailable", math.nan))
        disk = _read("/proc/diskstats")
        if disk and self.disks is not None:
            rd = wr = 0
            for line in disk.splitlines():
                p = line.split()
                if len(p) > 9 and p[2] in self.disks:
                    rd += int(p[5])
                    wr += int(p[9])
            c["disk_read"], c["disk_write"] = float(rd * _SECTOR), float(wr * _SECTOR)
        net = _read("/proc/net/dev")
        if net:
            rx = tx = 0
            for line in net.splitlines()[2:]:
                _, _, rest = line.partition(":")
                p = rest.split()
                if len(p) >= 9:
                    rx += int(p[0])
                    tx += int(p[8])
            c["net_rx"], c["net_tx"] = float(rx), float(tx)
        return c

    @staticmethod
    def values(prev: dict[str, float], cur: dict[str, float]) -> dict[str, float]:
        """One sample: the metrics from two readings (rates over the time between them)."""
        dt = max(cur["wall"] - prev["wall"], 1e-9)

        def rate(key: str) -> float:
            if key not in cur or key not in prev:
                return math.nan
            return max(cur[key] - prev[key], 0.0) / dt

        v = {"proc.cpu_percent": 100.0 * rate("proc_cpu")}
        if "max_rss" in cur:  # no /proc
            v["proc.max_rss_bytes"] = cur["max_rss"]
            v["cpu.load_1m"] = cur["load_1m"]
            v["disk.free_bytes"] = cur["disk_free"]
            return v
        v["proc.rss_bytes"] = cur.get("rss", math.nan)
        busy = math.nan
        if "cpu_total" in cur and "cpu_total" in prev:
            total = cur["cpu_total"] - prev["cpu_total"]
            if total > 0:
                busy = 100.0 * (total - (cur["cpu_idle"] - prev["cpu_idle"])) / total
        v["cpu.percent"] = busy
        used = cur.get("mem_total", math.nan) - cur.get("mem_avail", math.nan)
        v["mem.used_bytes"] = used
        v["mem.used_percent"] = 100.0 * used / cur.get("mem_total", math.nan)
        v["disk.read_bytes_per_s"] = rate("disk_read")
        v["disk.write_bytes_per_s"] = rate("disk_write")
        v["disk.free_bytes"] = cur["disk_free"]
        v["net.recv_bytes_per_s"] = rate("net_rx")
        v["net.sent_bytes_per_s"] = rate("net_tx")
        return v


class Gpus:
    """GPUs through NVML (the ``pynvml`` module of ``nvidia-ml-py``), loaded on first use.

    Absent: no GPUs, silently. Installed but failing at start (no driver): one warning,
    no GPUs. A GPU that stops answering mid-run: one warning, GPUs no longer sampled."""

    _FIELDS = ("util_percent", "mem_used_bytes", "mem_total_bytes", "temperature_c", "power_w")

    def __init__(self) -> None:
        self.nvml: Any = None
        self.handles: list[Any] = []
        self.unsupported: set[tuple[int, str]] = set()
        try:
            import pynvml  # type: ignore[import-not-found]  # the optional extra "gpu"
        except ImportError:
            return
        try:
            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                            for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as e:  # noqa: BLE001 - NVMLError and whatever a broken install raises
            self.handles = []
            handle_problem(EmError(f"NVML (nvidia-ml-py) is installed but failed "
                                   f"({type(e).__name__}: {e}); GPUs are not sampled"),
                           key="system:nvml")
            return
        self.nvml = pynvml

    def read(self) -> dict[str, float]:
        if self.nvml is None:
            return {}
        n = self.nvml
        out: dict[str, float] = {}
        try:
            for i, h in enumerate(self.handles):
                for field in self._FIELDS:
                    if (i, field) in self.unsupported:
                        continue
                    try:
                        out[f"gpu.{i}.{field}"] = self._one(n, h, field)
                    except n.NVMLError_NotSupported:
                        self.unsupported.add((i, field))
        except Exception as e:  # noqa: BLE001 - a GPU fell off the bus, a driver reload
            self.close()
            handle_problem(EmError(f"NVML stopped answering ({type(e).__name__}: {e}); GPUs "
                                   "are no longer sampled"), key="system:nvml-read")
            return {}
        return out

    @staticmethod
    def _one(n: Any, h: Any, field: str) -> float:
        if field == "util_percent":
            return float(n.nvmlDeviceGetUtilizationRates(h).gpu)
        if field == "mem_used_bytes":
            return float(n.nvmlDeviceGetMemoryInfo(h).used)
        if field == "mem_total_bytes":
            return float(n.nvmlDeviceGetMemoryInfo(h).total)
        if field == "temperature_c":
            return float(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU))
        return float(n.nvmlDeviceGetPowerUsage(h)) / 1000.0  # mW

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down: nothing left to report to
                pass
            self.nvml = None


class Stats:
    """Running count, mean, min, max and last value of each system metric (NaN ignored):
    what ``em show`` summarises, stored in ``run.json`` under ``system`` when the run ends."""

    def __init__(self) -> None:
        self.samples = 0
        self.by_name: dict[str, list[float]] = {}  # name -> [count, sum, min, max, last]

    def add(self, values: dict[str, float]) -> None:
        self.samples += 1
        for name, v in values.items():
            s = self.by_name.get(name)
            if s is None:
                s = self.by_name[name] = [0, 0.0, math.inf, -math.inf, math.nan]
            s[4] = v
            if v == v:  # not NaN
                s[0] += 1
                s[1] += v
                s[2] = min(s[2], v)
                s[3] = max(s[3], v)

    def to_meta(self, interval: float) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {"interval_s": interval, "samples": self.samples, "metrics": {
            name: {"mean": num(s[1] / s[0]) if s[0] else None, "min": num(s[2]),
                   "max": num(s[3]), "last": num(s[4])}
            for name, s in self.by_name.items()}}

    @classmethod
    def of_records(cls, records: Any) -> Stats:
        """From a metric log's records (a run that crashed before storing its summary)."""
        stats = cls()
        for r in records:
            if r.type == METRIC_TYPE:
                stats.add({k: float(v) for k, v in r.values.items()})
        return stats


def _size(v: float | None) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return "-"  # not reached


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def summary_lines(system: dict[str, Any]) -> list[str]:  # noqa: C901 - one optional line per group of metrics: a flat run of ifs
    """``em show``'s lines for a run's system summary (see :meth:`Stats.to_meta`)."""
    m = system.get("metrics") or {}

    def get(name: str, key: str) -> float | None:
        v = (m.get(name) or {}).get(key)
        return float(v) if isinstance(v, (int, float)) else None

    every = system.get("interval_s")
    lines = [(f"every {every:g} s, " if isinstance(every, (int, float)) else "")
             + f"{system.get('samples')} sample{'' if system.get('samples') == 1 else 's'}"]
    if "proc.cpu_percent" in m:
        lines.append(f"process CPU      mean {_pct(get('proc.cpu_percent', 'mean'))} of one "
                     f"core, max {_pct(get('proc.cpu_percent', 'max'))}")
    for name, label in (("proc.rss_bytes", "process RSS"),
                        ("proc.max_rss_bytes", "process RSS")):
        if name in m:
            lines.append(f"{label:<16} peak {_size(get(name, 'max'))}, last "
                         f"{_size(get(name, 'last'))}")
    if "cpu.percent" in m:
        lines.append(f"machine CPU      mean {_pct(get('cpu.percent', 'mean'))}, max "
                     f"{_pct(get('cpu.percent', 'max'))}")
    if "mem.used_bytes" in m:
        lines.append(f"machine memory   peak {_size(get('mem.used_bytes', 'max'))} "
                     f"({_pct(get('mem.used_percent', 'max'))})")
    if "disk.read_bytes_per_s" in m:
        lines.append(f"disk             read mean {_size(get('disk.read_bytes_per_s', 'mean'))}"
                     f"/s, write mean {_size(get('disk.write_bytes_per_s', 'mean'))}/s, free "
                     f"min {_size(get('disk.free_bytes', 'min'))}")
    if "net.recv_bytes_per_s" in m:
        lines.append(f"network          recv mean {_size(get('net.recv_bytes_per_s', 'mean'))}"
                     f"/s, sent mean {_size(get('net.sent_bytes_per_s', 'mean'))}/s")
    gpus = sorted({int(n.split(".")[1]) for n in m
                   if n.startswith("gpu.") and n.split(".")[1].isdigit()})
    for i in gpus:
        g = f"gpu.{i}."
        parts = [f"util mean {_pct(get(g + 'util_percent', 'mean'))}"]
        if g + "mem_used_bytes" in m:
            parts.append(f"memory peak {_size(get(g + 'mem_used_bytes', 'max'))} of "
                         f"{_size(get(g + 'mem_total_bytes', 'max'))}")
        if g + "temperature_c" in m:
            parts.append(f"temperature max {get(g + 'temperature_c', 'max')} C")
        if g + "power_w" in m:
            parts.append(f"power mean {get(g + 'power_w', 'mean') or 0:.0f} W")
        lines.append(f"GPU {i:<12} " + ", ".join(parts))
    return lines


class SystemSampler:
    """The sampler thread of one run (see the module's docstring).

    :meth:`start` returns at once: the first readings are taken in the thread. :meth:`stop`
    takes a last sample (when at least ``min(interval, 0.2 s)`` passed since the previous one,
    so that a short run gets one) and joins the thread."""

    def __init__(self, run: Any, interval: float, *, gpus: bool = True) -> None:
        self.run = run
        self.interval = interval
        self.samples = 0
        self.stats = Stats()
        self._gpus = gpus
        self._stop = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="em-system-metrics",
                                        daemon=True)

    def start(self) -> SystemSampler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            self._sample_until_stopped()
        except Exception as e:  # noqa: BLE001 - never a traceback in the training's output
            handle_problem(EmError(f"system metrics stopped: {type(e).__name__}: {e}"),
                           key="system:failed")

    def _sample_until_stopped(self) -> None:
        probe = Probe(str(self.run.local))
        gpus = Gpus() if self._gpus else None
        try:
            prev = probe.read()
            final_after = min(self.interval, 0.2)
            while True:
                stopped = self._stop.wait(self.interval)
                cur = probe.read()
                if stopped and cur["wall"] - prev["wall"] < final_after:
                    return
                prev = self.record(prev, cur, gpus)
                if stopped:
                    return
        finally:
            if gpus is not None:
                gpus.close()

    def record(self, prev: dict[str, float], cur: dict[str, float],
               gpus: Gpus | None) -> dict[str, float]:
        """Record one sample from two readings (and the GPUs now); returns ``cur``."""
        values = Probe.values(prev, cur)
        if gpus is not None:
            values.update(gpus.read())
        self.run.log(METRIC_TYPE, values, step=self.samples)
        self.samples += 1
        self.stats.add(values)
        return cur

    def stop(self) -> None:
        """Take the last sample and end the thread (waits at most 5 s); a no-op in a forked
        child, where the thread does not exist."""
        if os.getpid() != self._pid:
            return
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_JOIN_S)
        if self.stats.samples:  # saved with the run's final status, for `em show`
            self.run._meta["system"] = self.stats.to_meta(self.interval)
