"""Describing a Horovod job for ``run.hparams.parse(dist_hvd=...)``.

Everything is read by duck typing: neither Horovod nor a framework is imported here. A
wrapper (``DistributedOptimizer``, ``DistributedGradientTape``) is recognised by the
Horovod functions its dynamically created class carries, and the Horovod module behind it is
looked up in ``sys.modules`` (creating the wrapper imported it).

What lands under ``hparams['distributed']['horovod']``::

    framework          'torch' | 'tensorflow' | 'tensorflow.keras' | 'keras' | 'mxnet'
    version            Horovod's version
    size, rank, local_size, local_rank, cross_size, cross_rank
    controller         the controller this job runs on: 'gloo' | 'mpi'
    controllers_built  {'mpi': bool, 'gloo': bool}
    collectives_built  {'nccl', 'ddl', 'ccl', 'mpi', 'gloo': bool}  (tensor operations)
    gpu_built          {'cuda': bool, 'rocm': bool}
    wrapper            only when given a DistributedOptimizer or DistributedGradientTape:
                       kind, compression, op, backward_passes_per_step,
                       gradient_predivide_factor, sparse_as_dense, process_set, groups and,
                       for an optimizer, 'optimizer': the wrapped optimizer's own settings
                       (the layout of ``em_core.torch_optimizer`` for PyTorch,
                       ``{'class', 'config'}`` as ``integrations.keras`` records it for Keras)
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .sanitize import json_safe, keras_serialized
from .torch_optimizer import describe_torch_optimizer

# Horovod module name -> framework recorded.
_FRAMEWORKS = {"horovod.torch": "torch", "horovod.tensorflow": "tensorflow",
               "horovod.tensorflow.keras": "tensorflow.keras", "horovod.keras": "keras",
               "horovod.mxnet": "mxnet"}
# Module defining a wrapper's methods -> (Horovod module with size()/rank(), framework).
_WRAPPER_HOMES = {"horovod.torch.optimizer": ("horovod.torch", "torch"),
                  "horovod.tensorflow": ("horovod.tensorflow", "tensorflow"),
                  "horovod._keras": ("horovod.tensorflow", "keras"),
                  "horovod.mxnet": ("horovod.mxnet", "mxnet")}
_OPS = ("Average", "Sum", "Adasum", "Min", "Max", "Product")
_TOPOLOGY = ("size", "rank", "local_size", "local_rank", "cross_size", "cross_rank")
_EXPECTED = ("a Horovod module after hvd.init() (horovod.torch, horovod.tensorflow, "
             "horovod.tensorflow.keras, horovod.keras), or the hvd.DistributedOptimizer / "
             "hvd.DistributedGradientTape it made")


def _what(obj: Any) -> str:
    name = getattr(obj, "__name__", None) if isinstance(obj, types.ModuleType) else None
    if name:
        return f"module {name}"
    cls = type(obj)
    shown = " ".join(repr(obj).split())  # an optimizer's repr spans lines
    return f"{cls.__module__}.{cls.__qualname__}: {shown:.80}"


def _wrapper_origin(obj: Any) -> tuple[str, str] | None:
    """(defining module, Horovod class name) when ``obj`` is a Horovod wrapper.

    Horovod builds the wrapper's class with ``type(name, (optimizer_class,),
    dict(_DistributedOptimizer.__dict__))``, so the class keeps the user's class name but
    its ``__init__`` is Horovod's.
    """
    if isinstance(obj, type) or isinstance(obj, types.ModuleType):
        return None
    for klass in type(obj).__mro__:
        init = klass.__dict__.get("__init__")
        module = getattr(init, "__module__", None) or ""
        if module.startswith("horovod."):
            qualname = str(getattr(init, "__qualname__", ""))
            parts = qualname.split(".")
            return module, parts[-2] if len(parts) > 1 else klass.__name__
    return None


def _call(hvd: Any, name: str) -> Any:
    fn = getattr(hvd, name, None)
    if not callable(fn):
        return None
    try:
        return fn()
    except (ValueError, RuntimeError, AttributeError):
        # Older Horovod versions or builds without the feature raise instead of answering.
        return None


def _check_initialized(hvd: Any, received: Any) -> None:
    is_init = getattr(hvd, "is_initialized", None)
    initialized = bool(is_init()) if callable(is_init) else True
    if initialized:
        try:
            hvd.size()
        except ValueError:
            initialized = False
    if not initialized:
        raise ValueError(f"dist_hvd: Horovod ({getattr(hvd, '__name__', type(hvd).__name__)}) "
                         f"is not initialized; call hvd.init() before "
                         f"run.hparams.parse(dist_hvd=...) (received {_what(received)})")


def _describe_job(hvd: Any, framework: str | None, received: Any) -> dict[str, Any]:
    _check_initialized(hvd, received)
    top = sys.modules.get("horovod")
    out: dict[str, Any] = {"kind": "horovod", "framework": framework,
                           "version": getattr(top, "__version__", None)}
    for name in _TOPOLOGY:
        value = _call(hvd, name)
        out[name] = int(value) if value is not None else None
    controller = None
    if _call(hvd, "gloo_enabled"):
        controller = "gloo"
    elif _call(hvd, "mpi_enabled"):
        controller = "mpi"
    out["controller"] = controller
    out["controllers_built"] = {n: bool(_call(hvd, f"{n}_built")) for n in ("mpi", "gloo")}
    out["collectives_built"] = {n: bool(_call(hvd, f"{n}_built"))
                                for n in ("nccl", "ddl", "ccl", "mpi", "gloo")}
    out["gpu_built"] = {n: bool(_call(hvd, f"{n}_built")) for n in ("cuda", "rocm")}
    return out


def _op_name(op: Any, hvd: Any) -> Any:
    for name in _OPS:
        if hvd is not None and getattr(hvd, name, object()) == op:
            return name
    return json_safe(op, "op")


def _compression_name(compression: Any) -> Any:
    if compression is None:
        return None
    name = getattr(compression, "__name__", None) or type(compression).__name__
    # Horovod's compressors: NoneCompressor, FP16Compressor (Compression.none, .fp16).
    return name[: -len("Compressor")].lower() if name.endswith("Compressor") and \
        name != "Compressor" else name


def _process_set(ps: Any) -> Any:
    if ps is None:
        return None
    ps_id = getattr(ps, "process_set_id", None)
    if ps_id == 0:
        return "global"
    ranks = getattr(ps, "ranks", None)
    return {"id": ps_id, "ranks": list(ranks) if ranks is not None else None}


def _groups(groups: Any) -> Any:
    if groups is None or isinstance(groups, int):
        return groups
    if isinstance(groups, (list, tuple)):
        return {"explicit_groups": len(groups)}
    return json_safe(groups, "groups")


def _closure(fn: Any) -> dict[str, Any]:
    """The variables a TensorFlow allreduce function closes over (compression, op, ...).

    Horovod's TensorFlow wrappers keep their settings only there: ``_allreduce_grads`` is a
    ``tf.function`` (eager) or a plain function (graph) made by
    ``_make_allreduce_grads_fn``.
    """
    fn = getattr(fn, "python_function", fn)
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    out: dict[str, Any] = {}
    for name, cell in zip(getattr(code, "co_freevars", ()), cells):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return out


def _keras_optimizer(opt: Any) -> dict[str, Any]:
    config = json_safe(keras_serialized(opt.get_config()), "optimizer.config")
    lr = config.get("learning_rate") if isinstance(config, dict) else None
    if isinstance(lr, dict) and "class" in lr:  # a schedule: add the value it gives now
        value = json_safe(getattr(opt, "learning_rate", None), "optimizer.learning_rate")
        lr["value"] = value if isinstance(value, (int, float)) else None
    return {"class": type(opt).__name__, "config": config}


def _describe_wrapper(obj: Any, origin: tuple[str, str], hvd: Any) -> dict[str, Any]:
    module, hvd_class = origin
    kind = hvd_class.lstrip("_")
    out: dict[str, Any] = {"kind": "DistributedOptimizer" if "Optimizer" in kind else kind}
    if module == "horovod.torch.optimizer":
        adasum = hvd_class == "_DistributedAdasumOptimizer"
        out["compression"] = _compression_name(getattr(obj, "_compression", None))
        out["op"] = "Adasum" if adasum else _op_name(getattr(obj, "op", None), hvd)
        out["backward_passes_per_step"] = getattr(obj, "backward_passes_per_step", None)
        out["gradient_predivide_factor"] = (None if adasum else
                                            getattr(obj, "gradient_predivide_factor", None))
        out["sparse_as_dense"] = getattr(obj, "sparse_as_dense", None)
        out["process_set"] = _process_set(getattr(obj, "process_set", None))
        out["groups"] = _groups(getattr(obj, "_groups", None))
        out["optimizer"] = describe_torch_optimizer(obj)
        return out
    settings = _closure(getattr(obj, "_allreduce_grads", None))
    if settings:
        op = settings.get("op")
        out["compression"] = _compression_name(settings.get("compression"))
        out["op"] = _op_name(op, hvd)
        # Horovod splits Average into prescale 1/f and postscale f: f is the predivide factor.
        out["gradient_predivide_factor"] = (settings.get("postscale_factor")
                                            if out["op"] == "Average" else 1.0)
        out["sparse_as_dense"] = settings.get("sparse_as_dense")
        out["groups"] = _groups(settings.get("groups"))
    helper = getattr(obj, "_agg_helper", None)
    out["backward_passes_per_step"] = int(getattr(helper, "backward_passes_per_step", 1) or 1)
    if hasattr(obj, "_backward_passes_per_step"):  # TF1 DistributedDeltaOptimizer (Adasum)
        out["backward_passes_per_step"] = obj._backward_passes_per_step
    out["process_set"] = _process_set(getattr(obj, "process_set", None))
    if hasattr(obj, "scale_local_gradients"):
        out["scale_local_gradients"] = bool(obj.scale_local_gradients)
    if out["kind"] == "DistributedOptimizer":
        # Keras: the wrapper is an instance of a subclass of the user's optimizer class;
        # TF1 and MXNet: the user's optimizer is kept in ``_optimizer``.
        inner = getattr(obj, "_optimizer", None) if module != "horovod._keras" else obj
        if inner is not None and callable(getattr(inner, "get_config", None)):
            out["optimizer"] = _keras_optimizer(inner)
        elif inner is not None:
            out["optimizer"] = {"class": type(inner).__name__}
    return out


def describe_hvd(obj: Any) -> dict[str, Any]:
    """Describe a Horovod job, and the wrapper's settings when given one.

    Args:
        obj: the Horovod module (``horovod.torch``, ``horovod.tensorflow``,
            ``horovod.tensorflow.keras``, ``horovod.keras``) after ``hvd.init()``, or the
            ``hvd.DistributedOptimizer`` / ``hvd.DistributedGradientTape`` it returned
            (then the job is read from its Horovod module, plus the wrapper's settings).

    Returns:
        A new plain dict (see the module docstring for its keys).

    Raises:
        TypeError: ``obj`` is neither a Horovod module nor a Horovod wrapper.
        ValueError: Horovod is not initialized yet (``hvd.init()`` not called).
    """
    origin = _wrapper_origin(obj)
    if origin is not None:
        home, framework = _WRAPPER_HOMES.get(origin[0], (origin[0], origin[0].split(".")[1]))
        hvd = sys.modules.get(home)
        if hvd is None:
            raise TypeError(f"dist_hvd: {_what(obj)} comes from {origin[0]} but {home} is not "
                            "imported; pass the hvd module instead")
        out = _describe_job(hvd, framework, obj)
        out["wrapper"] = _describe_wrapper(obj, origin, hvd)
        return out
    if not all(callable(getattr(obj, n, None)) for n in ("size", "rank", "local_size")):
        hint = ""
        if hasattr(obj, "param_groups") or hasattr(obj, "get_config"):
            hint = " (an optimizer not wrapped by hvd.DistributedOptimizer)"
        elif type(obj).__name__ == "GradientTape":
            hint = " (a tape not wrapped by hvd.DistributedGradientTape)"
        raise TypeError(f"dist_hvd: expected {_EXPECTED}; received {_what(obj)}{hint}")
    name = getattr(obj, "__name__", None)
    return _describe_job(obj, _FRAMEWORKS.get(name, name) if isinstance(name, str) else None,
                         obj)
