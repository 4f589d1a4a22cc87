"""benchbus service runtime: settings, the MQTT 5 connection, services, the bus client."""
from .client import BusClient
from .errors import BusError, CallTimeout
from .service import RequestContext, Service
from .settings import ServiceSettings, load_settings

__all__ = ["BusClient", "BusError", "CallTimeout", "RequestContext", "Service", "ServiceSettings", "load_settings"]
