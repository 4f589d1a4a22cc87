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


class Empty(Payload):
    """A request or result with no fields."""
