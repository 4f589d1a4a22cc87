"""Service settings: a pydantic model, read from a YAML file, every field overridable from the environment.

A field `foo` of the service with MQTT segment `samd` is read from `BENCHBUS_SAMD_FOO`, else `BENCHBUS_FOO`;
a nested field `broker.host` from `BENCHBUS_SAMD_BROKER_HOST`, else `BENCHBUS_BROKER_HOST`. Environment values are
YAML scalars (`5`, `true`, `[1, 2]`).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import yamlfile

CONFIG_DIR = Path("/etc/benchbus")


class BrokerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    keepalive_s: int = Field(10, ge=2, le=3600)
    reconnect_min_s: float = Field(0.2, gt=0)
    reconnect_max_s: float = Field(10.0, gt=0)


class ServiceSettings(BaseModel):
    """What every service has; a service's own settings subclass this."""

    model_config = ConfigDict(extra="forbid")
    device: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.-]+$")
    broker: BrokerSettings = BrokerSettings()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = False
    shutdown_grace_s: float = Field(5.0, ge=0, description="how long in-flight requests may finish at SIGTERM")
    offline_queue: int = Field(1000, ge=1, description="events kept while the broker is unreachable")
    handler_threads: int = Field(8, ge=1, le=256)


S = TypeVar("S", bound=BaseModel)  # a service's settings, or a file of settings like the fleet's


def default_path(segment: str) -> Path:
    return CONFIG_DIR / f"{segment}.yaml"


def _env_overrides(model: type[BaseModel], segment: str,
                   environ: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Nested dict of overrides from the environment, and for each field path the variable it came from."""
    overrides: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def walk(cls: type[BaseModel], path: list[str], target: dict[str, Any]) -> None:
        for name, info in cls.model_fields.items():
            field_path = path + [name]
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, field_path, target.setdefault(name, {}))
                if not target[name]:
                    del target[name]
                continue
            suffix = "_".join(field_path).upper()
            for var in (f"BENCHBUS_{segment.upper()}_{suffix}", f"BENCHBUS_{suffix}"):
                if var in environ:
                    target[name] = _parse_env_value(environ[var])
                    sources[".".join(field_path)] = f"environment variable {var}"
                    break

    walk(model, [], overrides)
    return overrides, sources


def _parse_env_value(text: str) -> Any:
    """A YAML scalar or list; what is not YAML within the limits (no aliases) stays the plain text."""
    try:
        return yamlfile.loads(text, "environment") if text.strip() else text
    except yamlfile.FileError:
        return text


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(model: type[S], segment: str, path: str | Path | None = None,
                  environ: dict[str, str] | None = None) -> S:
    """Load and validate; raises yamlfile.FileError naming file, line and field (the CLI prints it and exits)."""
    environ = dict(os.environ if environ is None else environ)
    explicit = path is not None
    config_path = Path(path) if path is not None else default_path(segment)
    located = None
    data: dict[str, Any] = {}
    if explicit or config_path.exists():
        located = yamlfile.load(config_path)
        data = located.data if located.data is not None else {}
        if not isinstance(data, dict):
            raise yamlfile.FileError(str(config_path),
                                     [{"field": None, "line": 1, "message": "must be a mapping of settings"}])
    overrides, sources = _env_overrides(model, segment, environ)
    try:
        return model.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        shown = str(config_path) if located is not None else f"{config_path} (not present; defaults and environment)"
        raise yamlfile.FileError(shown, yamlfile.problems_from(exc, located, sources)) from None
