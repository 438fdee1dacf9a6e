"""Where this process stands in a distributed job, read from the launcher's environment.

In a distributed job, one logical run exists: ``create_run`` on the chief (rank 0) records
it and on every other rank returns a :class:`~em_core.run.NoOpRun` that accepts every call
and writes nothing. Set ``EM_ALL_RANKS=1`` to have every rank record a run of its own (its
name gets a ``-rank<k>`` suffix and a ``rank:<k>`` label).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DistInfo", "dist_info", "describe_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Rank and size of this process's job (rank 0 and size 1 outside a distributed job)."""

    rank: int
    world_size: int
    local_rank: int | None = None
    launcher: str | None = None

    @property
    def is_chief(self) -> bool:
        """True on the process that records the run."""
        return self.rank == 0


def _int_env(env: dict[str, str] | os._Environ[str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    # -1 is the usual "not distributed" value (LOCAL_RANK=-1 in many training scripts).
    return None if value < 0 else value


# (rank variable, size variable, local-rank variable, launcher name), in order of precedence:
# a torchrun job inside a SLURM allocation has both RANK and SLURM_PROCID, and RANK is right.
_LAUNCHERS = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK", "torch.distributed"),
    ("HOROVOD_RANK", "HOROVOD_SIZE", "HOROVOD_LOCAL_RANK", "horovod"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "openmpi"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "mpich"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "slurm"),
)


def _from_tf_config(raw: str) -> DistInfo | None:
    try:
        cfg = json.loads(raw)
        cluster = cfg.get("cluster") or {}
        task = cfg.get("task") or {}
        ttype, tindex = str(task.get("type", "")), int(task.get("index", 0))
    except (ValueError, TypeError, AttributeError):
        return None
    chiefs = list(cluster.get("chief") or [])
    workers = list(cluster.get("worker") or [])
    size = len(chiefs) + len(workers)
    if size == 0:
        return None
    # The chief (or worker 0 when there is no chief) is rank 0; evaluators and parameter
    # servers are not among the ranks that record.
    if ttype == "chief":
        rank = 0
    elif ttype == "worker":
        rank = tindex + len(chiefs)
    else:
        rank = -1
    return DistInfo(rank=rank, world_size=size, local_rank=None, launcher="tf_config")


def _from_torch_distributed() -> DistInfo | None:
    # torch.multiprocessing.spawn sets no environment variable: the script passes the rank
    # to init_process_group. Look only if torch.distributed is imported already (never
    # import a framework from here).
    tdist = sys.modules.get("torch.distributed")
    try:
        if tdist is None or not tdist.is_available() or not tdist.is_initialized():
            return None
        return DistInfo(rank=int(tdist.get_rank()), world_size=int(tdist.get_world_size()),
                        local_rank=None, launcher="torch.distributed")
    except (AttributeError, RuntimeError, ValueError):
        return None


def dist_info(env: dict[str, str] | None = None) -> DistInfo:
    """Rank, world size, local rank and launcher from the environment variables set by
    torchrun (``RANK``), Horovod, Open MPI, MPICH/Intel MPI (``PMI_RANK``), SLURM and
    TensorFlow's ``TF_CONFIG``, or from an initialised ``torch.distributed`` process group
    when no variable says (``torch.multiprocessing.spawn``). Rank -1 marks a process that is
    not a worker (a TF parameter server or evaluator). A negative ``RANK``/``LOCAL_RANK`` (the
    usual ``-1``) means "not distributed", as if unset. With ``env`` given, only it is read."""
    e: Any = os.environ if env is None else env
    for rank_var, size_var, local_var, launcher in _LAUNCHERS:
        rank = _int_env(e, rank_var)
        if rank is not None:
            size = _int_env(e, size_var)
            if launcher == "torch.distributed" and e.get("TORCHELASTIC_RUN_ID"):
                launcher = "torchrun"
            return DistInfo(rank=rank, world_size=size if size is not None else rank + 1,
                            local_rank=_int_env(e, local_var), launcher=launcher)
    if env is None:
        info = _from_torch_distributed()
        if info is not None:
            return info
    local = _int_env(e, "LOCAL_RANK")
    if local is not None:
        # Lightning's DDP launcher re-runs the script with LOCAL_RANK/NODE_RANK/WORLD_SIZE
        # but no RANK; only local rank 0 of node 0 is the chief.
        node = _int_env(e, "NODE_RANK") or 0
        per_node = _int_env(e, "LOCAL_WORLD_SIZE") or 1
        size = _int_env(e, "WORLD_SIZE")
        rank = node * per_node + local if node else local
        return DistInfo(rank=rank, world_size=size if size is not None else rank + 1,
                        local_rank=local, launcher="local_rank")
    raw = e.get("TF_CONFIG")
    if raw:
        info = _from_tf_config(raw)
        if info is not None:
            return info
    return DistInfo(rank=0, world_size=1)


def describe_torch_model(model: Any) -> dict[str, Any]:
    """What ``run.hparams.parse(dist_torch_model=model)`` records (see
    ``integrations.torch.describe_torch_model``); never raises for an unwrapped model."""
    kind = type(model).__name__
    wrapped = getattr(model, "module", None)
    out: dict[str, Any] = {"kind": kind, "model": type(wrapped or model).__name__}
    if kind not in {"DistributedDataParallel", "DataParallel", "FullyShardedDataParallel"}:
        out["kind"] = "not distributed"
    device_ids = getattr(model, "device_ids", None)
    output_device = getattr(model, "output_device", None)
    if out["kind"] != "not distributed":
        out["device_ids"] = [str(d) for d in device_ids] if device_ids else None
        out["output_device"] = None if output_device is None else str(output_device)
    if kind == "DataParallel":
        out["replicas"] = len(device_ids) if device_ids else 1
        return out
    tdist = sys.modules.get("torch.distributed")  # imported already when a model is wrapped
    pg = getattr(model, "process_group", None)
    if tdist is not None and tdist.is_available() and tdist.is_initialized():
        out["world_size"] = tdist.get_world_size(pg)
        out["rank"] = tdist.get_rank(pg)
        out["backend"] = str(tdist.get_backend(pg))
    if out["kind"] == "not distributed":
        return out
    out["local_rank"] = dist_info().local_rank
    cap = getattr(model, "bucket_bytes_cap", None)
    out["bucket_cap_mb"] = cap / (1024 * 1024) if isinstance(cap, (int, float)) else None
    for attr in ("find_unused_parameters", "broadcast_buffers", "gradient_as_bucket_view",
                 "static_graph"):
        out[attr] = getattr(model, attr, None)
    out["launcher"] = _torch_launcher()
    return out


def _torch_launcher() -> str | None:
    import multiprocessing

    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return "torchrun"
    if multiprocessing.parent_process() is not None:
        return "mp.spawn"
    return "env" if os.environ.get("RANK") else None


# TF's classes behind its public names
_TF_PUBLIC = {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
              "CollectiveAllReduceStrategyV1": "MultiWorkerMirroredStrategy"}


def _tf_strategy(strategy: Any) -> dict[str, Any]:
    cls = type(strategy).__name__
    out: dict[str, Any] = {"kind": _TF_PUBLIC.get(cls, cls), "class": cls}
    replicas = getattr(strategy, "num_replicas_in_sync", None)
    if replicas is not None:
        out["replicas"] = int(replicas)
    extended = getattr(strategy, "extended", None)
    devices = getattr(extended, "worker_devices", None) if extended is not None else None
    if devices:
        out["devices"] = [str(d) for d in devices]
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None:
        try:
            spec = resolver.cluster_spec().as_dict()
        except (AttributeError, ValueError, RuntimeError):
            spec = {}
        out["workers"] = len(spec.get("worker", [])) + len(spec.get("chief", []))
        out["task_type"] = getattr(resolver, "task_type", None)
        out["task_id"] = getattr(resolver, "task_id", None)
    return out


def describe_distributed(*, dist_tf_strategy: Any = None, dist_torch_model: Any = None,
                         dist_hvd: Any = None) -> dict[str, Any]:
    """Describe the distributed set-up from the objects given plus the environment.

    Frameworks are never imported: the objects are read by duck typing, and
    ``torch.distributed`` is only looked up in ``sys.modules`` (a DDP model implies it).
    """
    out: dict[str, Any] = {"env": asdict(dist_info())}
    if dist_torch_model is not None:
        out["torch"] = describe_torch_model(dist_torch_model)
    if dist_tf_strategy is not None:
        out["tf"] = _tf_strategy(dist_tf_strategy)
    if dist_hvd is not None:
        from ._horovod import describe_hvd

        out["horovod"] = describe_hvd(dist_hvd)
    return out
