"""`benchbus-demo`: the smallest service, exercising the runtime (used by the runtime's tests and bench/bus_rtt.py)."""
from __future__ import annotations

import sys
import threading
import time

from benchbus_schemas.demo import Counter, EchoRequest, EchoResult, FailRequest, SleepRequest
from benchbus_schemas.envelope import Empty

from .runner import run_service
from .service import RequestContext, Service
from .settings import ServiceSettings

SEGMENT = "demo"


class DemoSettings(ServiceSettings):
    start_value: int = 0


def build(settings: DemoSettings) -> tuple[Service, None]:
    service = Service(SEGMENT, settings)
    counter = Counter(value=settings.start_value)
    lock = threading.Lock()

    @service.handles("echo")
    def echo(request: EchoRequest, _ctx: RequestContext) -> EchoResult:
        return EchoResult(text=request.text, count=request.count)

    @service.handles("fail")
    def fail(request: FailRequest, _ctx: RequestContext) -> None:
        raise RuntimeError(request.message)

    @service.handles("sleep")
    def sleep(request: SleepRequest, _ctx: RequestContext) -> None:
        service.emit("sleeping", request)
        time.sleep(request.seconds)

    @service.handles("increment")
    def increment(_request: Empty, _ctx: RequestContext) -> Counter:
        nonlocal counter
        with lock:
            counter = Counter(value=counter.value + 1)
            service.set_state("counter", counter)
            service.emit("ticked", {"value": counter.value})
        return counter

    service.set_state("counter", counter)
    return service, None


def main(argv: list[str] | None = None) -> int:
    return run_service(SEGMENT, DemoSettings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
