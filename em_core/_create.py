"""Starting a run: :func:`create_run`."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from typing import Any

from . import _lifecycle, _monitor, _validate
from ._files import write_json_atomic
from ._lifecycle import Status
from ._noop import NoOpRun
from ._paths import RUN_PARENT_DEFAULT, RUN_PARENT_ENV
from .dist import dist_info
from .hparams import deep_merge, to_plain_dict
from .run import FORMAT_VERSION, META_FILE, Run, hostname, new_dir, now_iso

__all__ = ["create_run"]


def _all_ranks() -> bool:
    return os.environ.get("EM_ALL_RANKS", "").strip().lower() in {"1", "true", "yes", "on"}


def create_run(config_path: str | os.PathLike[str] | None = None, name: str = "default",
               hparams: Any = None, labels: list[str] | None = None, description: str = "",
               auto_upload: bool = False, folder: str = "default", make_folder: bool = False,
               conflict_strategy: str = "new", *, system_interval: float | None = None,
               console: bool | None = None) -> Run | NoOpRun:
    """Start recording a run in a new directory under ``$EM_RUN_PARENT_DIR`` (default
    ``.em/runs``), named ``<name>_<yymmdd>_<hhmmss>_<6 random [a-z0-9]>``.

    Args:
        config_path: a YAML file with any of these arguments; its values win over the
            arguments (``hparams`` are merged key by key, the file's winning).
        name: the run's name (no '/').
        hparams: initial hyperparameters: dict, argparse Namespace, dataclass, OmegaConf.
        labels: list of strings. description: free text.
        auto_upload, folder, make_folder, conflict_strategy: upload settings, validated and
            stored with the run ('skip', 'error', 'new' or 'replace').
        system_interval: seconds between system-metric samples (default
            ``$EM_SYSTEM_INTERVAL`` or 10; 0 turns them off). console: keep stdout/stderr in
            ``console.log`` (default: on unless ``EM_CONSOLE=off``). See ``em_core._monitor``.

    Returns:
        The :class:`Run`; on a rank other than 0 of a distributed job, a :class:`NoOpRun`
        that records nothing (set ``EM_ALL_RANKS=1`` to record every rank).

    Platform and git state are collected now. Until ``finish()`` (or the end of a ``with``
    block), exit hooks make sure the run's status tells how the process ended.
    """
    from ._config import load_run_config

    args: dict[str, Any] = {"name": name, "labels": labels, "description": description,
                            "auto_upload": auto_upload, "folder": folder,
                            "make_folder": make_folder, "conflict_strategy": conflict_strategy}
    hp = to_plain_dict(hparams) if hparams is not None else {}
    if config_path is not None:
        config = load_run_config(config_path)
        if "hparams" in config and config["hparams"] is not None:
            deep_merge(hp, to_plain_dict(config.pop("hparams"), what="config hparams"), True)
        config.pop("hparams", None)
        args.update(config)
    name = _validate.name(args["name"])
    monitor = _monitor.options(system_interval, console)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "kind": "run", "name": name,
        "labels": _validate.labels(args["labels"]),
        "description": _validate.text(args["description"], "description"),
        "upload": {"auto_upload": _validate.flag(args["auto_upload"], "auto_upload"),
                   "folder": _validate.folder(args["folder"]),
                   "make_folder": _validate.flag(args["make_folder"], "make_folder"),
                   "conflict_strategy": _validate.conflict_strategy(args["conflict_strategy"])},
    }
    dist = dist_info()
    if dist.rank != 0:
        if not _all_ranks():
            logging.getLogger("em").debug(
                "rank %d of %d (%s): create_run(name=%r) returns a NoOpRun that records "
                "nothing; set EM_ALL_RANKS=1 to record every rank", dist.rank,
                dist.world_size, dist.launcher, name)
            return NoOpRun(name, hp, meta["labels"], meta["description"], upload=meta["upload"])
        meta["name"] = name = f"{name}-rank{dist.rank}"
        meta["labels"].append(f"rank:{dist.rank}")

    from ._git import collect_git
    from ._platform import collect_platform

    path = new_dir(RUN_PARENT_ENV, RUN_PARENT_DEFAULT, name)
    try:
        meta.update({
            "alternative_name": path.name, "status": Status.RUNNING.value,
            "start_timestamp": now_iso(), "end_timestamp": None, "error": None, "hparams": hp,
            "platform": collect_platform(), "git": collect_git(),
            "associations": {}, "remote": [],
            "process": {"host": hostname(), "pid": os.getpid(), "boot_id": _lifecycle.boot_id(),
                        "rank": dist.rank, "world_size": dist.world_size,
                        "launcher": dist.launcher},
        })
        write_json_atomic(path / META_FILE, meta)
        run = Run(path, meta, writable=True)
    except BaseException as e:
        # No half-made run may be left saying Running (a full disk, a file-size limit).
        _remove(path)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, f"em could not create the run directory {str(path)!r}: "
                          f"{e.strerror or e} ({errno.errorcode.get(e.errno, e.errno)}); "
                          "nothing was left behind") from e
        raise
    _monitor.start(run, monitor)
    return run


def _remove(path: os.PathLike[str]) -> None:
    """Delete a half-made run's folder, even when signals keep landing: a Ctrl-C during
    ``shutil.rmtree`` leaves it half done and can make it raise ``OSError`` (EBADF: the
    descriptor it was closing when interrupted), which would replace the error that is
    being reported. Three tries; the caller's error is the one raised."""
    for _ in range(3):
        try:
            shutil.rmtree(path, ignore_errors=True)
            return
        except BaseException:  # noqa: BLE001 - interrupted: try again, then give up
            continue
