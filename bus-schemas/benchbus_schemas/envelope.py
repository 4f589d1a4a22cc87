"""The envelopes every service shares: `$state`, replies and errors (DESIGN.md, "The bus contract")."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LifecycleState = Literal["starting", "ready", "degraded", "stopping", "offline"]

ErrorCode = Literal[
    "invalid_request",
    "not_found",
    "conflict",
    "busy",
    "hardware_error",
    "timeout",
    "unauthorized",
    "unavailable",
    "internal",
]
ERROR_CODES: tuple[str, ...] = ErrorCode.__args__  # type: ignore[attr-defined]


class Payload(BaseModel):
    """Base of every bus payload: unknown keys are refused so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class ServiceState(Payload):
    """Retained at `benchbus/<device>/<service>/$state`; the broker publishes `offline` as the last will."""

    state: LifecycleState
    version: str | None = None
    pid: int | None = None
    since: str | None = Field(None, description="ISO 8601 UTC time the service entered this state")
    reason: str | None = Field(None, description="why the service is degraded or stopping")


class ErrorBody(Payload):
    code: ErrorCode
    message: str
    detail: Any = None


class OkReply(Payload):
    ok: Literal[True] = True
    result: Any = None


class ErrorReply(Payload):
    ok: Literal[False] = False
    error: ErrorBody


class AuditError(Payload):
    code: ErrorCode
    message: str


class AuditRecord(Payload):
    """One handled (or refused) command, at `benchbus/<device>/<service>/$audit`: who did what, and how it ended."""

    time: str = Field(description="ISO 8601 UTC time the reply was sent")
    service: str
    command: str
    principal: str = Field(description="the caller as the broker authenticated it (the command topic's last level)")
    on_behalf_of: str | None = Field(None, description="whom the caller acts for (the gateway's attribution)")
    ok: bool
    error: AuditError | None = None
    request: Any = Field(None, description="the request payload as JSON (null when it was not JSON)")
    duration_ms: float


class AuditBatch(Payload):
    """What `$audit` carries: the records of the requests a service finished within one short window (one
    publish for many requests, so auditing costs the request path nothing measurable)."""

    records: list[AuditRecord] = Field(..., min_length=1)


class Empty(Payload):
    """A request or result with no fields."""
