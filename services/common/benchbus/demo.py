"""`benchbus-demo`: the smallest service, exercising the runtime (used by the runtime's tests and bench/bus_rtt.py)."""
from __future__ import annotations

import sys
import threading
import time

from benchbus_schemas.demo import Counter, EchoRequest, EchoResult, FailRequest, SleepRequest
from benchbus_schemas.envelope import Empty

from .runner import run_service
from .service import RequestContext, Service, handler
from .settings import ServiceSettings


class DemoSettings(ServiceSettings):
    start_value: int = 0


class DemoService(Service[DemoSettings]):
    segment = "demo"

    def __init__(self, settings: DemoSettings):
        super().__init__(settings)
        self.counter = Counter(value=settings.start_value)
        self._lock = threading.Lock()
        self.set_state("counter", self.counter)

    @handler("echo")
    def echo(self, request: EchoRequest, _ctx: RequestContext) -> EchoResult:
        return EchoResult(text=request.text, count=request.count)

    @handler("fail")
    def fail(self, request: FailRequest, _ctx: RequestContext) -> None:
        raise RuntimeError(request.message)

    @handler("sleep")
    def sleep(self, request: SleepRequest, _ctx: RequestContext) -> None:
        self.emit("sleeping", request)
        time.sleep(request.seconds)

    @handler("increment")
    def increment(self, _request: Empty, _ctx: RequestContext) -> Counter:
        with self._lock:
            self.counter = Counter(value=self.counter.value + 1)
            self.set_state("counter", self.counter)
            self.emit("ticked", {"value": self.counter.value})
        return self.counter


def main(argv: list[str] | None = None) -> int:
    return run_service(DemoService, argv)


if __name__ == "__main__":
    sys.exit(main())
