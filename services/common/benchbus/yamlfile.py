"""YAML files whose validation errors name the file, the line and the field.

Used for service settings and for any user-edited YAML a service owns (the scheduler's conf.yml).

Every YAML text from outside is read with limits: at most `MAX_BYTES` (a bigger file is refused before it is read
whole), no anchors or aliases (`&a`, `*a`, `<<: *a`: a few hundred bytes of nested aliases expand to gigabytes, the
"billion laughs"; no benchbus file needs them), and at most `MAX_DEPTH` levels of nesting. Each refusal is a
FileError naming the file and the line.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

MAX_BYTES = 1_000_000
MAX_DEPTH = 64

# {"field": "a.b" or None, "line": 3 or None, "message": "..."}
Problem = dict[str, Any]


class FileError(Exception):
    """A file that cannot be used; the message names the file, the line (when known) and the field."""

    def __init__(self, path: str, problems: list[Problem]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(describe(path, p) for p in problems))


def describe(path: str, problem: Problem) -> str:
    where = f"{path}:{problem['line']}" if problem.get("line") else path
    field = problem.get("field") or "(top level)"
    return f"{where}: {field}: {problem['message']}"


class Refused(yaml.YAMLError):
    """YAML that is valid but not accepted here (an anchor, an alias, too deep)."""

    def __init__(self, problem: str, mark: object):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors and aliases and nesting deeper than MAX_DEPTH."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves Parser's unannotated
        if isinstance(event, yaml.AliasEvent):
            raise Refused(f"aliases are not allowed (*{event.anchor})", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise Refused(f"anchors are not allowed (&{event.anchor})", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse(text: str, path: str) -> tuple[yaml.Node | None, Any]:
    """(the node tree, the data) of one YAML document, within the limits; FileError naming the line otherwise."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise FileError(path, [{"field": None, "line": None,
                                "message": f"{size} bytes is more than the {MAX_BYTES} bytes a YAML file may have"}])
    loader = LimitedLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        what = "YAML refused" if isinstance(exc, Refused) else "not valid YAML"
        raise FileError(path, [{"field": None, "line": line, "message": f"{what}: {reason}"}]) from None
    finally:
        loader.dispose()


def loads(text: str, path: str = "<text>") -> Any:
    """The data of a YAML text, within the limits (FileError otherwise)."""
    return parse(text, path)[1]


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """A file's UTF-8 text; a file larger than `limit` is refused after reading at most limit + 1 bytes."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise FileError(str(path), [{"field": None, "line": None, "message": f"cannot read: {exc.strerror}"}]) from None
    if len(raw) > limit:
        raise FileError(str(path), [{"field": None, "line": None,
                                     "message": f"larger than the {limit} bytes a YAML file may have; not read"}])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise FileError(str(path), [{"field": None, "line": line, "message": "not UTF-8 text"}]) from None


class LocatedYaml:
    """A parsed YAML document plus the line of every mapping key and sequence item in it (read within the limits)."""

    def __init__(self, text: str, path: str):
        self.path = path
        self.node, self.data = parse(text, path)

    def line_of(self, loc: Iterable[Any]) -> int | None:
        """The 1-based line of the deepest node along `loc` that exists (pydantic's error location)."""
        node, line = self.node, (self.node.start_mark.line + 1 if self.node is not None else None)
        for key in loc:
            found = _child(node, key)
            if found is None:
                break
            node, line = found[1], found[0].start_mark.line + 1
        return line


def _child(node: yaml.Node | None, key: Any) -> tuple[yaml.Node, yaml.Node] | None:
    """(the node that marks the line: the key of a mapping entry or the item itself, the child node)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == str(key):
                return key_node, value_node
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key], node.value[key]
    return None


def load(path: Path) -> LocatedYaml:
    return LocatedYaml(read_text(path), str(path))


def field_name(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def problems_from(error: ValidationError, located: LocatedYaml | None = None,
                  sources: dict[str, str] | None = None) -> list[Problem]:
    """Turn pydantic's errors into problems with line numbers; `sources` maps a field path to where it came from."""
    problems: list[Problem] = []
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
