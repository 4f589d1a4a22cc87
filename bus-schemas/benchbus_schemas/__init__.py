"""benchbus bus contract. Each service's topics live in a module of their own (samd.py, smoothie.py, ...)."""
from .envelope import (
    ERROR_CODES,
    AuditBatch,
    AuditRecord,
    Empty,
    ErrorBody,
    ErrorReply,
    OkReply,
    Payload,
    ServiceState,
)
from .registry import TopicSpec, command, event, lookup, specs, state

__all__ = [
    "ERROR_CODES",
    "AuditBatch",
    "AuditRecord",
    "Empty",
    "ErrorBody",
    "ErrorReply",
    "OkReply",
    "Payload",
    "ServiceState",
    "TopicSpec",
    "command",
    "event",
    "lookup",
    "specs",
    "state",
]
