"""The YAML run config read by ``create_run(config_path=...)``."""

from __future__ import annotations

from typing import Any

import yaml

from . import _validate

CONFIG_KEYS = ("name", "hparams", "labels", "description", "auto_upload", "folder",
               "make_folder", "conflict_strategy")


def load_run_config(path: Any) -> dict[str, Any]:
    """Read a run config file: a YAML mapping with any of :data:`CONFIG_KEYS`.

    Raises:
        FileNotFoundError: naming the path.
        ValueError: malformed YAML (naming the line), not a mapping, or unknown keys.
    """
    p = _validate.existing_file(path, "config_path")
    if p.is_dir():
        raise ValueError(f"config_path {str(p)!r} is a directory; expected a YAML file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"config file {str(p)!r} is not UTF-8 text (byte {e.start}: "
                         f"{raw[e.start:e.start + 1]!r}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ValueError(f"config file {str(p)!r} is not valid YAML at {where}: "
                         f"{e.problem}") from e
    except yaml.YAMLError as e:
        raise ValueError(f"config file {str(p)!r} is not valid YAML: {e}") from e
    if data is None:
        return {}
    _check_size(data, str(p))
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping of "
                         f"{', '.join(CONFIG_KEYS)}; found a {type(data).__name__}")
    if "hyperparameters" in data and "hparams" not in data:
        data["hparams"] = data.pop("hyperparameters")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"config file {str(p)!r} has unknown keys {unknown}; accepted keys: "
                         f"{', '.join(CONFIG_KEYS)}")
    return data


#: At most this many values (mappings, lists and scalars) in a config once YAML aliases are
#: expanded, and at most this deep: an alias bomb ("billion laughs") or a recursive anchor is
#: refused instead of expanding into run.json.
MAX_NODES = 100_000
MAX_DEPTH = 64


def _check_size(data: Any, where: str) -> None:
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ValueError(f"config file {where!r} expands to more than {MAX_NODES} values "
                             "(YAML aliases repeated into a huge document?); refusing it")
        if depth > MAX_DEPTH:
            raise ValueError(f"config file {where!r} nests deeper than {MAX_DEPTH} levels "
                             "(a recursive YAML anchor?); refusing it")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
