"""YAML files whose validation errors name the file, the line and the field.

Used for service settings and for any user-edited YAML a service owns (the scheduler's conf.yml).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError


class FileError(Exception):
    """A file that cannot be used; the message names the file, the line (when known) and the field."""

    def __init__(self, path: str, problems: list[dict]):
        self.path = path
        self.problems = problems  # [{"field": "a.b", "line": 3, "message": "..."}]
        super().__init__("\n".join(describe(path, p) for p in problems))


def describe(path: str, problem: dict) -> str:
    where = f"{path}:{problem['line']}" if problem.get("line") else path
    field = problem.get("field") or "(top level)"
    return f"{where}: {field}: {problem['message']}"


class LocatedYaml:
    """A parsed YAML document plus the line of every mapping key and sequence item in it."""

    def __init__(self, text: str, path: str):
        self.path = path
        try:
            self.node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = getattr(exc, "problem", None) or str(exc)
            raise FileError(path, [{"field": None, "line": line, "message": f"not valid YAML: {reason}"}]) from None

    def line_of(self, loc: Iterable[Any]) -> int | None:
        """The 1-based line of the deepest node along `loc` that exists (pydantic's error location)."""
        node, line = self.node, (self.node.start_mark.line + 1 if self.node is not None else None)
        for key in loc:
            found = _child(node, key)
            if found is None:
                break
            node, line = found[1], found[0].start_mark.line + 1
        return line


def _child(node, key):
    """(the node that marks the line: the key of a mapping entry or the item itself, the child node)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == str(key):
                return key_node, value_node
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key], node.value[key]
    return None


def load(path: Path) -> LocatedYaml:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileError(str(path), [{"field": None, "line": None, "message": f"cannot read: {exc.strerror}"}]) from None
    return LocatedYaml(text, str(path))


def field_name(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def problems_from(error: ValidationError, located: LocatedYaml | None = None, sources: dict | None = None) -> list[dict]:
    """Turn pydantic's errors into problems with line numbers; `sources` maps a field path to where it came from."""
    problems = []
    for item in error.errors():
        loc = [part for part in item["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
        name = field_name(loc)
        message = item["msg"]
        origin = (sources or {}).get(name)
        if origin:
            message += f" (from {origin})"
        line = located.line_of(loc) if located is not None and not origin else None
        problems.append({"field": name, "line": line, "message": message})
    return problems
