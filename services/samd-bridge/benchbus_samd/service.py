"""samd-bridge: the only process that opens the eVOLVER's serial line; `cmd/transact` is one validated transaction.

Bus: `cmd/transact`, retained `state/bus` (port, connected, counters), `event/error` (every failed attempt).
A lost port makes the service `degraded`, answers every request `unavailable` and reopens it with backoff.
"""
from __future__ import annotations

import sys
import threading
import time

from benchbus import BusError, RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler, now_iso
from benchbus_schemas.samd import KNOWN_BOARDS, BusState, LastError, ParamCounters, TransactError, \
    TransactRequest, TransactResult, value_text

from .driver import LineSettings, PortLost, SamdLine, TransactionFailed, escape
from .settings import SamdSettings

def line_settings(settings: SamdSettings) -> LineSettings:
    return LineSettings(url=settings.port, baudrate=settings.baudrate, reply_delay_s=settings.reply_delay_s,
                        hold_s=settings.hold_s, hold_overrides=dict(settings.hold_overrides),
                        guard_s=settings.guard_s, timeout_margin_s=settings.timeout_margin_s,
                        reply_gap_s=settings.reply_gap_s, release_margin_s=settings.release_margin_s,
                        action_params=tuple(settings.action_params))


class Counters:
    """What state/bus shows; changed by handler threads, published by the main loop when it changed."""

    def __init__(self, settings: SamdSettings):
        self._lock = threading.Lock()
        self.state = BusState(port=settings.port, connected=False, baudrate=settings.baudrate)
        self.dirty = True

    def _param(self, param: str) -> ParamCounters:
        return self.state.params.setdefault(param, ParamCounters())

    def connected(self, value: bool, reopened: bool = False) -> None:
        with self._lock:
            self.state.connected = value
            self.state.reopened += 1 if reopened else 0
            self.dirty = True

    def attempt_failed(self, param: str, kind: str, message: str) -> None:
        with self._lock:
            counters = self._param(param)
            counters.attempts += 1
            counters.errors[kind] = counters.errors.get(kind, 0) + 1
            self.state.last_error = LastError(param=param, kind=kind, message=message, at=now_iso())
            self.dirty = True

    def finished(self, param: str, outcome: str) -> None:
        """outcome: ok (one more successful attempt too), failed, or unavailable."""
        with self._lock:
            counters = self._param(param)
            counters.requests += 1
            if outcome == "ok":
                counters.ok += 1
                counters.attempts += 1
                self.state.ok += 1
                self.state.transactions += 1
            elif outcome == "failed":
                counters.failed += 1
                self.state.failed += 1
                self.state.transactions += 1
            else:
                counters.unavailable += 1
                self.state.unavailable += 1
            self.dirty = True

    def take(self) -> BusState | None:
        with self._lock:
            if not self.dirty:
                return None
            self.dirty = False
            return self.state.model_copy(deep=True)


class SamdService(Service[SamdSettings]):
    segment = "samd"

    def __init__(self, settings: SamdSettings, line: SamdLine | None = None):
        super().__init__(settings)
        self.line = line or SamdLine(line_settings(settings))
        self.counters = Counters(settings)
        self._reopening = threading.Lock()
        self._reopen_thread: threading.Thread | None = None
        self.every(settings.probe_interval_s, self.probe)
        self.every(settings.state_interval_s, self.publish_state)

    # -- the port ------------------------------------------------------------------------------------------------

    def on_start(self) -> None:
        try:
            self.line.open()
        except PortLost as exc:
            self._port_lost(str(exc))
        else:
            self.counters.connected(True)
        self.publish_state()

    def _port_lost(self, reason: str) -> None:
        self.counters.connected(False)
        self.degraded(f"serial port unavailable: {reason}")
        self.publish_state()
        with self._reopening:
            if self._reopen_thread is None or not self._reopen_thread.is_alive():
                self._reopen_thread = threading.Thread(target=self._reopen_loop, name="samd-reopen", daemon=True)
                self._reopen_thread.start()

    def _reopen_loop(self) -> None:
        delay = self.settings.reopen_min_s
        while self.state not in ("stopping", "offline"):
            time.sleep(delay)
            try:
                self.line.open()
            except PortLost as exc:
                self.log.debug("reopen failed: %s", exc)
                delay = min(delay * 2, self.settings.reopen_max_s)
                continue
            self.log.info("serial port %s is back", self.settings.port)
            self.counters.connected(True, reopened=True)
            self.ready()
            self.publish_state()
            return

    def probe(self) -> None:
        if self.line.connected and not self.line.probe():
            self._port_lost("the port vanished while idle")

    def publish_state(self) -> None:
        state = self.counters.take()
        if state is not None:
            self.set_state("bus", state)

    # -- transactions --------------------------------------------------------------------------------------------

    @handler("transact")
    def transact(self, request: TransactRequest, _ctx: RequestContext) -> TransactResult:
        param = request.param
        if param not in KNOWN_BOARDS and param not in self.settings.extra_boards:
            raise BusError("invalid_request", f"field 'param': no limits are known for board '{param}' (known: "
                           f"{', '.join(KNOWN_BOARDS)}; a rig with other boards names them in the setting "
                           "extra_boards)", {"field": "param"})
        if not self.line.connected:
            self.counters.finished(param, "unavailable")
            raise BusError("unavailable", f"the serial port {self.settings.port} is not open; it is being reopened",
                           {"port": self.settings.port})
        values = [value_text(v) for v in request.values]
        tries = 1 + (self.settings.retries if request.retries is None else request.retries)
        failure: TransactionFailed | None = None
        for attempt in range(1, tries + 1):
            try:
                reply = self.line.transact(param, request.type, values, request.fields_out, request.fields_in,
                                           request.timeout_s)
            except TransactionFailed as exc:
                failure = exc
                self._report(request, exc, attempt, final=attempt == tries)
                continue
            except PortLost as exc:
                self._report(request, TransactionFailed("port_error", str(exc)), attempt, final=True)
                self.counters.finished(param, "unavailable")
                self._port_lost(str(exc))
                raise BusError("unavailable", f"the serial port failed during the transaction: {exc}",
                               {"kind": "port_error", "attempts": attempt, "port": self.settings.port}) from None
            self.counters.finished(param, "ok")
            return TransactResult(param=param, kind=reply.kind, values=reply.values, attempts=attempt,
                                  duration_ms=round(reply.duration_s * 1000, 3))
        assert failure is not None
        self.counters.finished(param, "failed")
        raise BusError("hardware_error", f"{param}: {failure.message} ({tries} attempts; nothing was applied)",
                       {"kind": failure.kind, "attempts": tries, "raw": escape(failure.raw)})

    def _report(self, request: TransactRequest, failure: TransactionFailed, attempt: int, final: bool) -> None:
        self.counters.attempt_failed(request.param, failure.kind, failure.message)
        self.emit("error", TransactError(
            param=request.param, type=request.type, kind=failure.kind, message=failure.message,
            sent=escape(failure.sent), raw=escape(failure.raw), attempt=attempt, final=final, at=now_iso()))


def main(argv: list[str] | None = None) -> int:
    return run_service(SamdService, argv)


if __name__ == "__main__":
    sys.exit(main())
