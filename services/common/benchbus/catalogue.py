"""What the contract (bus-schemas) says a device offers: its services, their commands, an example request of each.

Offline and fast: the command line uses it to name an unknown service or command at once, to pick a command's
default timeout, for `benchbus commands` and for shell completion.
"""
from __future__ import annotations

import difflib
import re
from typing import Any

from benchbus_schemas import registry
from benchbus_schemas.registry import TopicSpec

DEFAULT_TIMEOUT_S = 5.0


def services() -> list[str]:
    """Every service the contract declares a command, state or event of."""
    return sorted({spec.service for spec in registry.specs()})


def commands(service: str) -> list[TopicSpec]:
    return [spec for spec in registry.specs(service) if spec.kind == "cmd"]


def command(service: str, name: str) -> TopicSpec | None:
    return next((spec for spec in commands(service) if spec.name == name), None)


def timeout_s(service: str, name: str) -> float:
    """How long a caller waits for this command's reply unless told otherwise: the contract's, else 5 s."""
    spec = command(service, name)
    return spec.timeout_s if spec is not None and spec.timeout_s is not None else DEFAULT_TIMEOUT_S


def close_matches(word: str, choices: list[str]) -> list[str]:
    return difflib.get_close_matches(word, choices, n=3, cutoff=0.6)


def summary(spec: TopicSpec, width: int = 88) -> str:
    """The description's first sentence, on one line, cut at a word when longer than `width`."""
    text = " ".join(spec.description.split())
    match = re.match(r"(.+?\.)(\s|$)", text)
    sentence = match.group(1) if match else text
    if len(sentence) <= width:
        return sentence
    return sentence[: width - 1].rsplit(" ", 1)[0] + " …"


# -- example requests from the JSON schema ----------------------------------------------------------------------------

def example_request(spec: TopicSpec) -> dict[str, Any]:
    """A request the command's model accepts: its schema's own `examples` when it declares some, else every required
    field filled in with a value its schema allows. When a model's validator wants more than the schema says
    ("one of text or alternate"), optional fields are added one at a time until the model accepts it."""
    schema = spec.model.model_json_schema()
    maker = _Example(schema.get("$defs", {}))
    example = maker.value(schema)
    example = example if isinstance(example, dict) else {}
    if _accepted(spec, example):
        return example
    properties = schema.get("properties", {})
    for name in properties:
        if name not in example:
            candidate = {**example, name: maker.value(properties[name])}
            if _accepted(spec, candidate):
                return candidate
    return example


def _accepted(spec: TopicSpec, payload: dict[str, Any]) -> bool:
    try:
        spec.model.model_validate(payload)
    except ValueError:  # pydantic's ValidationError is a ValueError
        return False
    return True


_STRING_CANDIDATES = ("example", "stir", "od_90", "a", "x1", "0")


class _Example:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions

    def value(self, schema: dict[str, Any]) -> Any:
        schema = self._resolve(schema)
        for key in ("const", "examples", "enum"):
            if key in schema:
                return schema[key] if key == "const" else schema[key][0]
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [o for o in schema[key] if self._resolve(o).get("type") != "null"] or schema[key]
                return self.value(options[0])
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        maker = getattr(self, f"_{kind}", None)
        return maker(schema) if maker is not None else {}

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.definitions[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def _object(self, schema: dict[str, Any]) -> dict[str, Any]:
        properties = schema.get("properties", {})
        # required fields, and constants (the tag of a discriminated union has a default, so it is not required)
        wanted = [n for n, p in properties.items() if n in schema.get("required", []) or "const" in p]
        result = {name: self.value(properties[name]) for name in wanted}
        extra = schema.get("additionalProperties")
        if not result and isinstance(extra, dict) and schema.get("minProperties", 0) > 0:
            names = schema.get("propertyNames", {}).get("enum") or ["key"]
            result[names[0]] = self.value(extra)
        return result

    def _array(self, schema: dict[str, Any]) -> list[Any]:
        count = max(1, schema.get("minItems", 0))
        return [self.value(schema.get("items", {})) for _ in range(count)]

    def _string(self, schema: dict[str, Any]) -> str:
        if schema.get("format") == "date-time":
            return "2026-01-01T00:00:00Z"
        pattern = schema.get("pattern")
        low, high = int(schema.get("minLength", 0)), int(schema.get("maxLength", 1000))
        for candidate in _STRING_CANDIDATES:
            if low <= len(candidate) <= high and (pattern is None or re.search(pattern, candidate)):
                return candidate
        return "x" * max(low, 1)

    def _number(self, schema: dict[str, Any], one: float = 1.0) -> float:
        """`one` when the bounds allow it, else the minimum, else a value between or beside the bounds."""
        low: float | None = schema.get("minimum", schema.get("exclusiveMinimum"))
        high: float | None = schema.get("maximum", schema.get("exclusiveMaximum"))
        above_low = low is None or one > low or (one == low and "minimum" in schema)
        below_high = high is None or one < high or (one == high and "maximum" in schema)
        if above_low and below_high:
            return one
        if low is not None and "minimum" in schema:
            return float(low)
        if low is not None and high is not None:
            return (low + high) / 2
        if low is not None:
            return low + one
        assert high is not None  # not above_low or not below_high: one bound at least
        return high - one

    def _integer(self, schema: dict[str, Any]) -> int:
        return int(self._number(schema, 1))

    def _boolean(self, _schema: dict[str, Any]) -> bool:
        return False

    def _null(self, _schema: dict[str, Any]) -> None:
        return None
