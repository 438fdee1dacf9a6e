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
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ValueError(f"config file {str(p)!r} is not valid YAML at {where}: "
                         f"{e.problem}") from e
    except yaml.YAMLError as e:
        raise ValueError(f"config file {str(p)!r} is not valid YAML: {e}") from e
    if data is None:
        return {}
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
