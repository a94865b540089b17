"""YAML in, with the line of every key kept, so each error can name where to look.

Composes the document with PyYAML's SafeLoader and walks the node tree once to record the
1-based line of every path (``links[1].gateway``); ``line_of`` falls back to the nearest
ancestor for a path the file does not spell out (a missing key). Duplicate keys and bad
YAML are ConfigErrors here, before any field is looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from controller.config.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader; kept as a subclass so nothing we do leaks into yaml's global loader."""


def compose(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML, returning the data and the 1-based line of every path in it.

    Duplicate keys are an error here: PyYAML would silently keep the last one, and a second
    ``links:`` block replacing the first is exactly the mistake an operator cannot see.
    """
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        raise ConfigError([f"bad YAML: {_one_line(exc)}"], source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[str, int] = {}
        dup_errors: list[tuple[str, int]] = []
        _walk(node, "", lines, dup_errors, set())
        if dup_errors:
            raise ConfigError(
                [err for err, _ in dup_errors],
                source,
                [line for _, line in dup_errors],
            )
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        # The line and column go in the message itself: no path exists to hang them on.
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError([f"{where}bad YAML: {problem}"], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"bad YAML: {_one_line(exc)}"], source) from None
    except RecursionError:
        raise ConfigError(["bad YAML: nested too deeply"], source) from None
    finally:
        loader.dispose()
    return data, lines


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _walk(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    dups: list[tuple[str, int]],
    seen: set[int],
) -> None:
    if id(node) in seen:  # aliases may point back up the tree
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key == "<<":  # merge key: its content lands in this mapping
                _walk(value_node, path, lines, dups, seen)
                continue
            line = key_node.start_mark.line + 1
            if key in keys:
                dups.append((f"{child}: duplicate key (first at line {keys[key]})", line))
            keys.setdefault(key, line)
            lines.setdefault(child, key_node.start_mark.line + 1)
            _walk(value_node, child, lines, dups, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, lines, dups, seen)


def line_of(path: str, lines: Mapping[str, int]) -> int | None:
    """Line of ``path`` or of its nearest ancestor that exists in the file."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return None
        path = path[:cut]
    return None
