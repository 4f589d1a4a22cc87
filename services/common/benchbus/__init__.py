"""benchbus service runtime: settings, the MQTT 5 connection, services, the bus client.

The names below are imported on first use (PEP 562), so `benchbus status` does not pay for the service runtime.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import BusClient
    from .errors import BusError, CallTimeout
    from .service import RequestContext, Service, handler
    from .settings import ServiceSettings, load_settings

_HOMES = {"BusClient": "client", "BusError": "errors", "CallTimeout": "errors", "RequestContext": "service",
          "Service": "service", "handler": "service", "ServiceSettings": "settings", "load_settings": "settings"}

__all__ = ["BusClient", "BusError", "CallTimeout", "RequestContext", "Service", "ServiceSettings", "handler",
           "load_settings"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
