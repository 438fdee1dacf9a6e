"""Protocol Buffers text format (``.prototxt``) without protobuf or Caffe installed.

Enough of the format for Caffe solver and net files: ``# comments``, ``field: value``,
``message { ... }`` / ``message: { ... }`` / ``message < ... >``, repeated fields, quoted strings
with escapes (adjacent strings are concatenated), numbers, ``true``/``false`` and enum names.
A field seen once is a scalar (or dict); a field seen again becomes a list, so repeated
fields such as ``stepvalue`` or ``layer`` come back as lists.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["PrototxtError", "batch_sizes", "parse_prototxt", "read_prototxt", "solver_hparams"]


class PrototxtError(ValueError):
    """A text-format file that does not parse; the message names the file and the line."""


# Leading blanks are part of each match (half as many matches); at the very end they match
# alone, with no group. A character that starts no token is 'bad'.
_TOKEN = re.compile(r"""
    [ \t\r\f\v]*
    (?:
    (\n)
  | (\#[^\n]*)
  | ("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | ([{}<>:;,\[\]])
  | ([^\s{}<>:;,\[\]"'#]+)
  | (.)
  | \Z
    )
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "?": "?"}
_INT = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)\Z")
_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?\Z")


def _unquote(tok: str) -> str:
    body, out, i = tok[1:-1], [], 0
    if "\\" not in body:
        return body
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567":  # octal escape, up to 3 digits
                j = i + 1
                while j < min(i + 4, len(body)) and body[j] in "01234567":
                    j += 1
                out.append(chr(int(body[i + 1:j], 8)))
                i = j
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _scalar(word: str) -> Any:
    low = word.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if _INT.match(word):
        return int(word, 0) if word.lower().lstrip("+-").startswith("0x") else int(word)
    if _FLOAT.match(word):
        return float(word.rstrip("fF"))
    if low in ("inf", "-inf", "+inf", "infinity", "-infinity", "nan"):
        return float(low.replace("infinity", "inf"))
    return word  # an enum name such as GPU, SGD, TRAIN


def _tokenize(text: str, source: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    line = 1
    append = tokens.append
    for nl, _, string, punct, word, bad in _TOKEN.findall(text):
        if word:
            append(("word", word, line))
        elif punct:
            append(("punct", punct, line))
        elif nl:
            line += 1
        elif string:
            append(("str", string, line))
        elif bad:
            raise PrototxtError(f"{source}, line {line}: unexpected character {bad!r}")
    return tokens


def parse_prototxt(text: str, *, source: str = "<string>") -> dict[str, Any]:  # noqa: C901 - one tokenizer loop with its cursor; split, each piece would carry the whole state
    """Parse Protocol Buffers text format into nested dicts.

    Args:
        text: The file's content.
        source: Named in error messages (usually the file path).

    Returns:
        ``{field: value}``; nested messages are dicts, repeated fields lists.

    Raises:
        PrototxtError: With the source and line number of the first problem.
    """
    tokens = _tokenize(text, source)
    pos = 0
    root: dict[str, Any] = {}
    stack: list[tuple[dict[str, Any], str, int]] = []  # (parent, closing bracket, line)
    current = root

    def add(target: dict[str, Any], key: str, value: Any) -> None:
        if key in target:
            old = target[key]
            if isinstance(old, list):
                old.append(value)
            else:
                target[key] = [old, value]
        else:
            target[key] = value

    def where(i: int) -> str:
        return f"{source}, line {tokens[i][2] if i < len(tokens) else tokens[-1][2]}"

    while pos < len(tokens):
        kind, tok, line = tokens[pos]
        if kind == "punct" and tok in "}>":
            if not stack or stack[-1][1] != tok:
                raise PrototxtError(f"{source}, line {line}: unexpected {tok!r}")
            current = stack.pop()[0]
            pos += 1
            continue
        if kind == "punct" and tok in ";,":
            pos += 1
            continue
        if kind != "word":
            raise PrototxtError(f"{source}, line {line}: expected a field name, found {tok!r}")
        key = tok
        pos += 1
        if pos < len(tokens) and tokens[pos][1] == ":":
            pos += 1
        if pos >= len(tokens):
            raise PrototxtError(f"{source}, line {line}: field {key!r} has no value")
        vkind, vtok, vline = tokens[pos]
        if vkind == "punct" and vtok in "{<":
            child: dict[str, Any] = {}
            add(current, key, child)
            stack.append((current, "}" if vtok == "{" else ">", vline))
            current = child
            pos += 1
        elif vkind == "punct" and vtok == "[":  # short-hand list: field: [1, 2, 3]
            pos += 1
            while pos < len(tokens) and tokens[pos][1] != "]":
                if tokens[pos][1] != ",":
                    k2, t2, _ = tokens[pos]
                    add(current, key, _unquote(t2) if k2 == "str" else _scalar(t2))
                pos += 1
            if pos >= len(tokens):
                raise PrototxtError(f"{where(pos)}: list for {key!r} is not closed with ']'")
            pos += 1
        elif vkind == "str":
            parts = []
            while pos < len(tokens) and tokens[pos][0] == "str":
                parts.append(_unquote(tokens[pos][1]))
                pos += 1
            add(current, key, "".join(parts))
        elif vkind == "word":
            add(current, key, _scalar(vtok))
            pos += 1
        else:
            raise PrototxtError(f"{source}, line {vline}: unexpected {vtok!r} after {key!r}")
    if stack:
        raise PrototxtError(f"{source}, line {stack[-1][2]}: message opened here is not closed")
    return root


def read_prototxt(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and parse a ``.prototxt`` file.

    Raises:
        PrototxtError: The file is missing, unreadable or does not parse (names file and line).
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise PrototxtError(f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    return parse_prototxt(text, source=os.fspath(path))


_DATA_PARAMS = ("data_param", "image_data_param", "hdf5_data_param", "memory_data_param",
                "window_data_param", "annotated_data_param", "python_param")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _layer_batch_size(layer: dict[str, Any]) -> int | None:
    """The batch size of one data layer, or None."""
    for key in _DATA_PARAMS:
        param = layer.get(key)
        if isinstance(param, dict) and isinstance(param.get("batch_size"), int):
            return int(param["batch_size"])
    for key in ("dummy_data_param", "input_param"):
        param = layer.get(key)
        shape = _as_list(param.get("shape")) if isinstance(param, dict) else []
        if shape and isinstance(shape[0], dict):
            dims = _as_list(shape[0].get("dim"))
            if dims and isinstance(dims[0], int):
                return int(dims[0])
    return None


def batch_sizes(net: dict[str, Any]) -> dict[str, int]:
    """Batch sizes of a net's data layers, keyed ``'train'``/``'test'`` by their phase.

    Looks at ``batch_size`` in the usual data layer parameters and at the first ``dim`` of
    ``dummy_data_param``/``input_param`` shapes. A layer without an ``include { phase }``
    counts for both phases; the first layer found per phase wins.
    """
    found: dict[str, int] = {}
    for layer in _as_list(net.get("layer")) + _as_list(net.get("layers")):
        size = _layer_batch_size(layer) if isinstance(layer, dict) else None
        if size is None:
            continue
        phases = [inc.get("phase") for inc in _as_list(layer.get("include"))
                  if isinstance(inc, dict)]
        for phase in [p for p in phases if p] or ["TRAIN", "TEST"]:
            found.setdefault(str(phase).lower(), size)
    return found


def solver_hparams(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Hyperparameters from a solver file: every field, plus batch sizes from its net.

    The net named by ``net`` (or an inline ``net_param``) is read when it can be found,
    relative to the working directory (as Caffe does) or else to the solver's folder; its
    data layers give ``batch_size`` (TRAIN phase) and ``test_batch_size`` (TEST). With
    separate ``train_net``/``test_net`` files (or ``*_net_param``), each gives its own phase's
    size. A net file that cannot be read is skipped: the solver's own fields are the
    hyperparameters. Inline net definitions are not hyperparameters.

    Raises:
        PrototxtError: The solver file is missing or does not parse.
    """
    solver = read_prototxt(path)
    hparams = {k: v for k, v in solver.items() if k not in NET_DEFINITIONS}
    folder = os.path.dirname(os.fspath(path))
    if "net" in solver or "net_param" in solver:  # one net for both phases
        net = _net(solver, "net_param", "net", folder)
        sizes = batch_sizes(net) if net is not None else {}
    else:  # separate nets: each counts for its own phase only
        net = _net(solver, "train_net_param", "train_net", folder)
        test = _net(solver, "test_net_param", "test_net", folder)
        sizes = {}
        if net is not None and "train" in batch_sizes(net):
            sizes["train"] = batch_sizes(net)["train"]
        if test is not None and "test" in batch_sizes(test):
            sizes["test"] = batch_sizes(test)["test"]
    if "train" in sizes:
        hparams["batch_size"] = sizes["train"]
    if "test" in sizes:
        hparams["test_batch_size"] = sizes["test"]
    if net is not None and isinstance(net.get("name"), str):
        hparams.setdefault("net_name", net["name"])
    return hparams


#: Solver fields that hold whole net definitions: not hyperparameters.
NET_DEFINITIONS = frozenset({"net_param", "train_net_param", "test_net_param"})


def _net(solver: dict[str, Any], inline: str, file_key: str, folder: str
         ) -> dict[str, Any] | None:
    """The solver's (first) net of one kind: inline, or read from its file relative to the
    working directory (as Caffe does) or else to the solver's folder; None if unreadable."""
    defined = _as_list(solver.get(inline))
    if defined and isinstance(defined[0], dict):
        return defined[0]
    names = _as_list(solver.get(file_key))
    if not names or not isinstance(names[0], str):
        return None
    for candidate in (names[0], os.path.join(folder, names[0])):
        if os.path.isfile(candidate):
            try:
                return read_prototxt(candidate)
            except PrototxtError:
                return None
    return None
