"""Describe the machine, interpreter and command a run was started on.

`collect_platform` is called once when a run starts; its result is stored as the run's
``platform`` record. It is deliberately cheap: it reads ``/proc`` files and package metadata,
runs ``nvidia-smi`` at most once, and never imports a framework.

What it never records: environment variables, API keys, passwords. Secret-looking values
on the command line (``--token X``, ``--api-key=X``, ``https://user:pass@host``) are
replaced by ``***``.
"""

from __future__ import annotations

import csv
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
from typing import Any

from ._secrets import redact_argv

__all__ = ["collect_platform", "redact_argv"]

#: Distributions reported in ``packages`` when installed (read from metadata, never imported).
ML_PACKAGES: tuple[str, ...] = (
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "torch",
    "torchvision",
    "lightning",
    "pytorch-lightning",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "tf-keras",
    "jax",
    "jaxlib",
    "mxnet",
    "horovod",
    "transformers",
    "omegaconf",
    "hydra-core",
    "em",
)


_NVIDIA_SMI_TIMEOUT_S = 5.0
_GPU_FIELDS = ("index", "name", "memory.total", "driver_version", "uuid")

def collect_platform() -> dict[str, Any]:
    """Collect JSON-compatible facts about the current process and machine.

    Never raises for a missing or failing probe: an unknown value is ``None`` (or empty),
    and a failing ``nvidia-smi`` is reported in ``gpu_error``.

    Returns:
        A dict with the keys:

        - ``hostname`` (str): ``socket.gethostname()``.
        - ``os`` (dict): ``system``, ``release``, ``machine``, ``platform`` (all str).
        - ``python`` (dict): ``version``, ``implementation``, ``executable`` (str).
        - ``cpu`` (dict): ``count`` (int or None), ``model`` (str or None).
        - ``memory_bytes`` (int or None): total physical memory.
        - ``gpus`` (list of dict): one per NVIDIA GPU with ``index`` (int), ``name`` (str),
          ``memory_total_mb`` (int or None), ``driver_version`` (str), ``uuid`` (str).
        - ``gpu_error`` (str or None): why ``nvidia-smi`` gave no answer; None when it
          succeeded or is not installed.
        - ``packages`` (dict): distribution name -> version, for the installed ones among
          `ML_PACKAGES`.
        - ``command`` (list of str): ``sys.argv`` with secret values replaced by ``***``.
        - ``cwd`` (str or None), ``pid`` (int).
    """
    gpus, gpu_error = _gpus()
    return {
        "hostname": socket.gethostname(),
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "cpu": {"count": os.cpu_count(), "model": _cpu_model()},
        "memory_bytes": _memory_bytes(),
        "gpus": gpus,
        "gpu_error": gpu_error,
        "packages": _packages(),
        "command": redact_argv(sys.argv),
        "cwd": _cwd(),
        "pid": os.getpid(),
    }


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working directory was deleted
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _cpu_model() -> str | None:
    text = _read_text("/proc/cpuinfo")
    if text is not None:
        # x86 says `model name`; some ARM kernels only say `Hardware` or `Processor`.
        for key in ("model name", "hardware", "processor"):
            for line in text.splitlines():
                name, sep, value = line.partition(":")
                value = value.strip()
                if sep and name.strip().lower() == key and value and not value.isdigit():
                    return value
    # macOS and others: platform.processor() is cheap there (on Linux it forks `uname`).
    if sys.platform != "linux":
        return platform.processor() or None
    return None


def _memory_bytes() -> int | None:
    text = _read_text("/proc/meminfo")
    if text is not None:
        for line in text.splitlines():
            if line.startswith("MemTotal:"):
                fields = line.split()
                if len(fields) >= 2 and fields[1].isdigit():
                    unit = 1024 if len(fields) < 3 or fields[2].lower() == "kb" else 1
                    return int(fields[1]) * unit
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or name unknown
        return None
    if pages > 0 and page_size > 0:
        return pages * page_size
    return None


def _gpus() -> tuple[list[dict[str, Any]], str | None]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], None
    cmd = [smi, f"--query-gpu={','.join(_GPU_FIELDS)}", "--format=csv,noheader,nounits"]
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [], f"nvidia-smi timed out after {_NVIDIA_SMI_TIMEOUT_S:g} s"
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"nvidia-smi could not run: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        reason = f": {detail[0][:200]}" if detail else ""
        return [], f"nvidia-smi exited with status {proc.returncode}{reason}"
    try:
        return _parse_gpu_csv(proc.stdout), None
    except ValueError as exc:
        return [], f"nvidia-smi output not understood: {exc}"


def _parse_gpu_csv(text: str) -> list[dict[str, Any]]:
    gpus: list[dict[str, Any]] = []
    for row in csv.reader(line for line in text.splitlines() if line.strip()):
        cells = [cell.strip() for cell in row]
        if len(cells) != len(_GPU_FIELDS):
            raise ValueError(f"expected {len(_GPU_FIELDS)} columns, got {row!r}")
        index, name, memory, driver, uuid = cells
        gpus.append(
            {
                "index": int(index),
                "name": name,
                # `[N/A]` on some virtual GPUs / MIG set-ups.
                "memory_total_mb": int(float(memory)) if _is_number(memory) else None,
                "driver_version": driver,
                "uuid": uuid,
            }
        )
    return gpus


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in ML_PACKAGES:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        if version:  # a broken dist-info can lack its Version field
            found[dist] = version
    return found
