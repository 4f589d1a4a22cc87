"""The `demo` service: a tiny service of the runtime itself, used by tests and bench/bus_rtt.py."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from .envelope import Empty, Payload
from .registry import command, event, state

SERVICE = "demo"


class EchoRequest(Payload):
    text: str = Field(..., max_length=65536)
    count: int = Field(1, ge=1, le=1000)


class EchoResult(Payload):
    text: str
    count: int


class FailRequest(Payload):
    message: str = "boom"


class SleepRequest(Payload):
    seconds: float = Field(..., ge=0, le=30)


class Counter(Payload):
    value: int


class Ticked(Payload):
    value: int
    extra: dict[str, Any] = {}


command(SERVICE, "echo", EchoRequest, EchoResult, "Echo the text back, with the count.")
command(SERVICE, "fail", FailRequest, Empty, "Raise inside the handler (tests the `internal` reply).")
command(SERVICE, "sleep", SleepRequest, Empty, "Sleep, then reply (tests in-flight requests at shutdown).",
        timeout_s=35)
command(SERVICE, "increment", Empty, Counter, "Add one to the retained counter.")
state(SERVICE, "counter", Counter, "The counter, retained.")
event(SERVICE, "ticked", Ticked, "The counter moved.")
event(SERVICE, "sleeping", SleepRequest, "A sleep request began (so a test knows it is in flight).")
