"""Every service declares its topics here, with the models of their payloads.

The runtime refuses to publish or handle a topic that is not declared, so this registry is the whole contract;
the generator turns it into JSON Schema files and one AsyncAPI document.
"""
from __future__ import annotations

import contextlib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

Kind = Literal["state", "event", "cmd"]


@dataclass(frozen=True)
class TopicSpec:
    service: str
    kind: Kind
    name: str
    model: type[BaseModel]
    description: str
    result: type[BaseModel] | None = None  # only for commands
    # Only for commands: how long a caller should wait for the reply by default (the CLI's --timeout); None means
    # the caller's own default (a few seconds). Long ones say so here, so a home that takes a minute is no error.
    timeout_s: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service, self.kind, self.name)


_REGISTRY: dict[tuple[str, str, str], TopicSpec] = {}


def _declare(spec: TopicSpec) -> TopicSpec:
    existing = _REGISTRY.get(spec.key)
    if existing is not None and existing != spec:
        raise ValueError(f"topic {spec.service}/{spec.kind}/{spec.name} is declared twice")
    _REGISTRY[spec.key] = spec
    return spec


def command(service: str, name: str, request: type[BaseModel], result: type[BaseModel], description: str,
            timeout_s: float | None = None) -> TopicSpec:
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"{service}/cmd/{name}: timeout_s must be positive")
    return _declare(TopicSpec(service, "cmd", name, request, description, result, timeout_s))


def state(service: str, name: str, model: type[BaseModel], description: str) -> TopicSpec:
    return _declare(TopicSpec(service, "state", name, model, description))


def event(service: str, name: str, model: type[BaseModel], description: str) -> TopicSpec:
    return _declare(TopicSpec(service, "event", name, model, description))


def lookup(service: str, kind: str, name: str) -> TopicSpec:
    """The spec of one topic. Imports only that service's module (benchbus_schemas/<service>.py)."""
    if (service, kind, name) not in _REGISTRY:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(f"benchbus_schemas.{service}")
    try:
        return _REGISTRY[(service, kind, name)]
    except KeyError:
        raise KeyError(f"{service}/{kind}/{name} is not declared in bus-schemas") from None


def specs(service: str | None = None) -> list[TopicSpec]:
    """Every declared topic, or one service's. For one service only its own module is imported when that declares
    it (the command line stays quick); otherwise every module is."""
    if service is not None:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(f"{__package__}.{service}")
    if service is None or not any(s.service == service for s in _REGISTRY.values()):
        load_all()
    chosen = [s for s in _REGISTRY.values() if service is None or s.service == service]
    return sorted(chosen, key=lambda s: s.key)


def load_all() -> None:
    """Import every module of this package, so each service's declarations are in the registry."""
    package = importlib.import_module("benchbus_schemas")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"benchbus_schemas.{module.name}")
