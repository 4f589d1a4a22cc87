"""The robot as the protocol sees it through the bus: the smoothie-bridge (motion, lease, pause), the
calibration-store (deck attitude, pipette offsets, tip lengths) and gpio-service (the front button).

Every motion request goes through `motion()`: while the bridge refuses it because the door is open or the robot is
paused, the protocol waits (the refused request did nothing, so sending it again later is safe) until it is resumed
(the front button, or `request_resume()` from another thread such as a notebook widget), then sends it again.
Everything else the bridge says becomes one of the errors in errors.py, with the bridge's words in the message.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any
from collections.abc import Callable

from benchbus import BusClient, BusError, CallTimeout
from benchbus.settings import BrokerSettings

from .errors import DoorOpen, LeaseLost, MotionError, RobotAlarm, RobotUnavailable

log = logging.getLogger("benchbus.ot2")

MOTION_TIMEOUT_S = 180.0  # a full home at real speed takes well under a minute; a long plunger move a few seconds
READ_TIMEOUT_S = 10.0


def parse_broker(broker: str | BrokerSettings | None) -> BrokerSettings:
    """'host', 'host:port' or BrokerSettings; None = $BENCHBUS_BROKER_HOST/PORT or localhost:1883."""
    if isinstance(broker, BrokerSettings):
        return broker
    if broker is None:
        return BrokerSettings(host=os.environ.get("BENCHBUS_BROKER_HOST", "localhost"),
                              port=int(os.environ.get("BENCHBUS_BROKER_PORT", "1883")))
    host, _, port = broker.rpartition(":") if ":" in broker else (broker, "", "1883")
    return BrokerSettings(host=host or "localhost", port=int(port))


def client_name() -> str:
    """The lease holder's name: recognisable in `benchbus status` and the bridge's conflict messages."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:24]
    return f"ot2-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Robot:
    def __init__(self, device: str, broker: str | BrokerSettings | None = None, *, bus: BusClient | None = None,
                 name: str | None = None,
                 lease_ttl_s: float = 30.0, pause_timeout_s: float | None = None,
                 on_pause: Callable[[str], None] | None = None, on_resume: Callable[[], None] | None = None):
        self.device = device
        # a service (the protocol runner) hands its own started client in; otherwise this robot has its own
        self._owns_bus = bus is None
        self.bus = bus or BusClient(device, parse_broker(broker), name=name or client_name())
        self.lease_ttl_s = lease_ttl_s
        self.pause_timeout_s = pause_timeout_s
        self.on_pause = on_pause or (lambda message: log.warning("%s", message))
        self.on_resume = on_resume or (lambda: log.warning("resumed"))
        self.lease_id: str | None = None
        self.lease_problem: str | None = None
        self.paused_reason: str | None = None  # set while a motion waits for a resume
        self._resume_wanted = threading.Event()
        self._bridge_paused: dict | None = None
        self._state_changed = threading.Condition()
        self._renewer: threading.Thread | None = None
        self._closing = threading.Event()
        self._subscriptions: list[tuple[str, Any]] = []

    @property
    def name(self) -> str:
        return self.bus.name

    # -- connection and lease --------------------------------------------------------------------------------------

    def open(self, timeout: float = 10.0) -> None:
        if self._owns_bus:
            try:
                self.bus.start(timeout)
            except CallTimeout as exc:
                raise RobotUnavailable(f"cannot reach the broker: {exc.message}") from None
        for topic, callback in ((self.bus.topic("smoothie", "state", "paused"), self._on_paused_state),
                                (self.bus.topic("gpio", "event", "button"), self._on_button)):
            self._subscriptions.append((topic, self.bus.subscribe(topic, callback)))

    def acquire_lease(self) -> None:
        """Take the motion lease (refused when another client holds it) and keep it renewed in the background."""
        lease = self._call("smoothie", "acquire_motion", {"ttl_s": self.lease_ttl_s})
        self.lease_id = lease["lease_id"]
        self.lease_problem = None
        self._renewer = threading.Thread(target=self._keep_lease, name="protocol-lease", daemon=True)
        self._renewer.start()

    def _keep_lease(self) -> None:
        while not self._closing.wait(self.lease_ttl_s / 3):
            try:
                lease = self.bus.call("smoothie", "acquire_motion", {"ttl_s": self.lease_ttl_s}, timeout=5)
                if lease["lease_id"] != self.lease_id:
                    self.lease_problem = ("the motion lease lapsed and was taken again: another client may have moved "
                                          "the robot")
                    self.lease_id = lease["lease_id"]
            except BusError as exc:
                self.lease_problem = f"renewing the motion lease failed: {exc.message}"
                log.warning("%s", self.lease_problem)

    def close(self) -> None:
        """Give the lease back (whatever happened before) and disconnect."""
        self._closing.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if self.lease_id is not None:
            try:
                self.bus.call("smoothie", "release_motion", {"lease_id": self.lease_id}, timeout=5)
            except BusError as exc:
                log.warning("releasing the motion lease failed: %s (it lapses after %.0f s)", exc.message,
                            self.lease_ttl_s)
            self.lease_id = None
        for topic, handle in self._subscriptions:
            self.bus.unsubscribe(topic, handle)
        self._subscriptions.clear()
        if self._owns_bus:
            self.bus.close()

    # -- calls -----------------------------------------------------------------------------------------------------

    def _call(self, service: str, command: str, payload: Any = None, timeout: float = READ_TIMEOUT_S) -> Any:
        try:
            return self.bus.call(service, command, payload or {}, timeout=timeout)
        except CallTimeout:
            raise RobotUnavailable(f"{service} did not answer {command} within {timeout:.0f} s: is the "
                                   f"{service} service running on device {self.device!r}?", "timeout") from None
        except BusError as exc:
            raise translate(service, command, exc) from None

    def read(self, service: str, command: str, payload: Any = None, timeout: float = READ_TIMEOUT_S) -> Any:
        return self._call(service, command, payload, timeout)

    def motion(self, command: str, payload: Any = None, timeout: float = MOTION_TIMEOUT_S) -> Any:
        """A smoothie motion command; waits out a door/pause (then sends it again), raises the rest."""
        while True:
            try:
                return self._call("smoothie", command, payload, timeout)
            except DoorOpen as exc:
                self.wait_for_resume(str(exc))

    # -- pause and resume ------------------------------------------------------------------------------------------

    def _on_paused_state(self, _topic: str, data: Any, _message) -> None:
        with self._state_changed:
            self._bridge_paused = data if isinstance(data, dict) else None
            self._state_changed.notify_all()

    def _on_button(self, _topic: str, data: Any, _message) -> None:
        if isinstance(data, dict) and data.get("action") == "pressed" and self.paused_reason is not None:
            self.request_resume()

    def request_resume(self) -> None:
        """Ask to continue (thread-safe): the waiting motion sends `resume` to the bridge, then carries on."""
        with self._state_changed:
            self._resume_wanted.set()
            self._state_changed.notify_all()

    def wait_for_resume(self, why: str) -> None:
        self.paused_reason = why
        self._resume_wanted.clear()
        self.on_pause(f"paused: {why}. Close the door, then press the robot's button (or call benchbus_ot2.resume()).")
        deadline = None if self.pause_timeout_s is None else time.monotonic() + self.pause_timeout_s
        try:
            while True:
                if self._resume_wanted.is_set():
                    self._resume_wanted.clear()
                    if self._try_resume():
                        break
                with self._state_changed:
                    # only the lease holder (this protocol) may resume, so nobody else ends this wait
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise DoorOpen(f"{why}; no resume within {self.pause_timeout_s:.0f} s", "conflict")
                    self._state_changed.wait(0.5 if left is None else min(0.5, left))
        finally:
            self.paused_reason = None
        self.on_resume()

    def _try_resume(self) -> bool:
        try:
            info = self.bus.call("smoothie", "resume", {}, timeout=READ_TIMEOUT_S)
        except BusError as exc:
            self.on_pause(f"still paused: {exc.message}")
            return False
        return not info.get("paused")


def translate(service: str, command: str, exc: BusError) -> Exception:
    """A bridge refusal or failure as the protocol error that explains it."""
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    text = f"{service}/{command}: {exc.message}"
    if exc.code == "conflict":
        if "holder" in detail:
            return LeaseLost(f"{text}. Another client ({detail['holder']}) is using the robot; wait for it to "
                             "finish or ask it to release the motion lease.", exc.code, detail)
        if "door" in detail or detail.get("reason") in ("door", "client"):
            return DoorOpen(text, exc.code, detail)
        if "alarm" in detail:
            return RobotAlarm(f"{text}. Home the robot once the cause is fixed.", exc.code, detail)
        return MotionError(text, exc.code, detail)
    if exc.code == "hardware_error" and ("alarm" in exc.message.lower() or "halt" in exc.message.lower()):
        return RobotAlarm(f"{text}. Home the robot once the cause is fixed.", exc.code, detail)
    if exc.code in ("unavailable", "timeout"):
        return RobotUnavailable(text, exc.code, detail)
    if exc.code == "invalid_request" and "travel" in detail:
        return MotionError(f"{text}: the location is out of the robot's reach", exc.code, detail)
    return MotionError(text, exc.code, detail)
