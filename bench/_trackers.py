"""One adapter per tracker, shared by the benchmarks in this folder.

Each adapter has the same life cycle: ``setup(workdir)`` (not timed: imports, run creation,
helper processes), ``log(metrics, step)`` (the call the benchmarks time), ``finish()`` (not
timed, but reported), and ``read_back(workdir, name)`` which counts, from what is on disk and
through the tracker's own reader where one exists, how many points of metric ``name`` landed.

Every tracker is used the way its documentation shows for offline use, with default settings
otherwise: no tuning of queue sizes or flush intervals for any of them, em included.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import sys
import time
import zlib
from typing import Any

TRACKERS = ("noop", "naive", "em", "swanlab", "tensorboardx", "wandb", "mlflow", "aim")


def env_for(tracker: str, workdir: str) -> dict[str, str]:
    """Environment variables a child process needs to run ``tracker`` offline in ``workdir``."""
    env = dict(os.environ)
    env.update({
        "EM_RUN_PARENT_DIR": os.path.join(workdir, "em"),
        "EM_ARTIFACT_PARENT_DIR": os.path.join(workdir, "em_artifacts"),
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": workdir,
        "WANDB_CONSOLE": "off",
        "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
        "MLFLOW_TRACKING_URI": "file:" + os.path.join(workdir, "mlruns"),
        "SWANLAB_MODE": "offline",
    })
    env.pop("EM_STRICT", None)
    if tracker == "wandb":
        # wandb starts helper processes that write temporary files: keep them in the workdir.
        tmp = os.path.join(workdir, "tmp")
        os.makedirs(tmp, exist_ok=True)
        env["TMPDIR"] = tmp
    return env


def version(tracker: str) -> str:
    from importlib import metadata

    dist = {"swanlab": "swanlab", "tensorboardx": "tensorboardX", "wandb": "wandb",
            "mlflow": "mlflow", "aim": "aim"}.get(tracker)
    if tracker == "em":
        import em_core

        return em_core.__version__
    if dist is None:
        return "py " + sys.version.split()[0]
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


class Noop:
    """Calls a function that does nothing: the floor set by the timer and the call itself."""

    def setup(self, workdir: str) -> None:
        pass

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def finish(self) -> None:
        pass


class Naive:
    """json.dumps + write + flush per call, one JSON line per call."""

    def setup(self, workdir: str) -> None:
        self.f = open(os.path.join(workdir, "naive.jsonl"), "a", encoding="utf-8")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.f.write(json.dumps({"type": "train", "step": step, "time": time.time(),
                                 "metrics": metrics}) + "\n")
        self.f.flush()

    def finish(self) -> None:
        self.f.close()

    @staticmethod
    def read_back(workdir: str, name: str) -> int:
        n = 0
        with open(os.path.join(workdir, "naive.jsonl"), encoding="utf-8") as f:
            for line in f:
                try:
                    n += name in json.loads(line)["metrics"]
                except ValueError:
                    break
        return n


class Em:
    """em: ``run.log('train', metrics, step=i)`` on a run in $EM_RUN_PARENT_DIR."""

    def setup(self, workdir: str) -> None:
        import em_core as em

        self.run = em.create_run(name="bench")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log("train", metrics, step=step)

    def finish(self) -> None:
        self.run.finish()

    @staticmethod
    def read_back(workdir: str, name: str) -> int:
        import em_core as em

        (path,) = glob.glob(os.path.join(workdir, "em", "bench_*"))
        metrics = em.load_run(path).metrics
        return sum(name in p["value"] for p in metrics.get("train", []))


class Swanlab:
    """SwanLab ``mode='offline'``: ``swanlab.log(metrics, step=i)``."""

    def setup(self, workdir: str) -> None:
        import swanlab

        self.sw = swanlab
        self.run = swanlab.init(project="bench", mode="offline",
                                logdir=os.path.join(workdir, "swanlog"))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.sw.log(metrics, step=step)

    def finish(self) -> None:
        self.sw.finish()

    @staticmethod
    def read_back(workdir: str, name: str) -> int:
        # SwanLab's own reader (used by `swanlab sync`) over its LevelDB-style record log.
        from swanlab.proto.swanlab.record.v1.record_pb2 import Record
        from swanlab.sdk.internal.core_python.store import DataStoreReader

        steps = set()
        for path in glob.glob(os.path.join(workdir, "swanlog", "run-*", "*.swanlab")):
            reader = DataStoreReader()
            reader.open(path)
            for data in reader:
                rec = Record()
                rec.ParseFromString(data)
                if rec.WhichOneof("record_type") == "scalar" and rec.scalar.key == name:
                    steps.add(rec.scalar.step)
            reader.close()
        return len(steps)


class TensorboardX:
    """tensorboardX ``SummaryWriter``: one ``add_scalar`` per metric per call."""

    def setup(self, workdir: str) -> None:
        from tensorboardX import SummaryWriter  # imports torch when installed: not timed

        self.w = SummaryWriter(logdir=os.path.join(workdir, "tb"))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        add = self.w.add_scalar
        for k, v in metrics.items():
            add(k, v, step)

    def finish(self) -> None:
        self.w.close()

    @staticmethod
    def read_back(workdir: str, name: str) -> int:
        # TensorBoard's own reader; it stops at a truncated last record.
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(os.path.join(workdir, "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        if name not in acc.Tags()["scalars"]:
            return 0
        return len({e.step for e in acc.Scalars(name)})


class Wandb:
    """wandb ``mode='offline'``: ``run.log(metrics, step=i)``."""

    def setup(self, workdir: str) -> None:
        import wandb

        self.run = wandb.init(project="bench", mode="offline", dir=workdir)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self) -> None:
        self.run.finish()

    @staticmethod
    def read_back(workdir: str, name: str) -> int:
        # The .wandb transaction log (what `wandb sync` uploads), parsed with wandb's protobufs.
        from wandb.proto import wandb_internal_pb2

        steps = set()
        for path in glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "*.wandb")):
            for data in _leveldb_log_records(path, ident=b":W&B"):
                rec = wandb_internal_pb2.Record()
                rec.ParseFromString(data)
                if rec.WhichOneof("record_type") != "history":
                    continue
                items = {i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item}
                if name in items:
                    steps.add(int(items.get("_step", "-1")))
        return len(steps)


class Mlflow:
    """MLflow file store: ``mlflow.log_metrics(metrics, step=i)`` in an active run."""

    def setup(self, workdir: str) -> None:
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri("file:" + os.path.join(workdir, "mlruns"))
        mlflow.start_run(run_name="bench")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def finish(self) -> None:
        self.mlflow.end_run()

    @staticmethod
    def read_back(workdir: str, name: str) -> int:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri="file:" + os.path.join(workdir, "mlruns"))
        n = 0
        for exp in client.search_experiments():
            for run in client.search_runs([exp.experiment_id]):
                n += len({m.step for m in client.get_metric_history(run.info.run_id, name)})
        return n


class Aim:
    """Aim ``Run(repo=...)``: ``run.track(metrics, step=i)`` (a dict tracks every name)."""

    def setup(self, workdir: str) -> None:
        import aim

        self.run = aim.Run(repo=os.path.join(workdir, "aim"), experiment="bench")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.track(metrics, step=step)

    def finish(self) -> None:
        self.run.close()

    @staticmethod
    def read_back(workdir: str, name: str) -> int:
        import aim

        repo = aim.Repo(os.path.join(workdir, "aim"))
        repo._recreate_index()  # what `aim storage reindex` does: index runs never closed
        n = 0
        for run_hash in repo.list_all_runs():
            run = aim.Run(run_hash=run_hash, repo=repo, read_only=True)
            for metric in run.metrics():
                if metric.name == name:
                    n += len(set(metric.values.sparse_numpy()[0].tolist()))
        return n


ADAPTERS = {"noop": Noop, "naive": Naive, "em": Em, "swanlab": Swanlab,
            "tensorboardx": TensorboardX, "wandb": Wandb, "mlflow": Mlflow, "aim": Aim}


def _leveldb_log_records(path: str, *, ident: bytes):
    """Yield each complete record of a LevelDB-log-format file (W&B's .wandb), stopping at the
    first torn or corrupt one: 7-byte file header, 32 KiB blocks, 7-byte record headers."""
    block = 32768
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != ident:
        raise ValueError(f"{path}: not a {ident!r} log")
    pos, buf = 7, b""
    while True:
        left = block - pos % block
        if left < 7:
            pos += left
        if pos + 7 > len(data):
            return
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        body = data[pos + 7:pos + 7 + length]
        if kind == 0 or len(body) < length or zlib.crc32(body, zlib.crc32(bytes([kind]))) != crc:
            return
        pos += 7 + length
        if kind == 1:
            yield body
        elif kind == 2:
            buf = body
        elif kind == 3:
            buf += body
        elif kind == 4:
            yield buf + body
