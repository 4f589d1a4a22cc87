"""When the robot may move: the motion lease, the door/pause gate and the alarm state. No MQTT, no serial.

Every refusal is a BusError the service passes on as the reply, so a client learns why (and who holds the lease).
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, UTC
from collections.abc import Callable

from benchbus import BusError


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MotionLease:
    """One client at a time may hold the lease; while it is held, only the holder's motion commands run."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.holder: str | None = None
        self.lease_id: str | None = None
        self._expires = 0.0
        self._ttl = 0.0

    def _lapse_if_due(self) -> bool:
        if self.holder is not None and self._clock() >= self._expires:
            self.holder, self.lease_id = None, None
            return True
        return False

    def expire(self) -> bool:
        """Drop a lease whose time to live ran out; True when one was dropped."""
        with self._lock:
            return self._lapse_if_due()

    def acquire(self, client: str | None, ttl_s: float) -> dict:
        if not client:
            raise BusError("invalid_request", "acquire_motion needs a client name (the MQTT 5 user property "
                           "'client'); anonymous callers cannot hold the lease")
        with self._lock:
            self._lapse_if_due()
            if self.holder is not None and self.holder != client:
                raise self._conflict()
            if self.holder is None:
                self.holder, self.lease_id = client, uuid.uuid4().hex
            self._ttl = ttl_s
            self._expires = self._clock() + ttl_s
            return {"lease_id": self.lease_id, "holder": self.holder, "ttl_s": ttl_s}

    def release(self, client: str | None, lease_id: str | None = None) -> None:
        with self._lock:
            self._lapse_if_due()
            if self.holder is None:
                return
            if self.holder != client:
                raise self._conflict("release")
            if lease_id is not None and lease_id != self.lease_id:
                raise BusError("conflict", f"lease {lease_id} is not the current lease of {client}",
                               {"holder": self.holder})
            self.holder, self.lease_id = None, None

    def check(self, client: str | None, renew: bool = True) -> None:
        """Raise conflict when someone else holds the lease; a holder's motion command renews it."""
        with self._lock:
            self._lapse_if_due()
            if self.holder is None:
                return
            if self.holder != client:
                raise self._conflict()
            if renew:
                self._expires = self._clock() + self._ttl

    def held_by_other(self, client: str | None) -> bool:
        with self._lock:
            self._lapse_if_due()
            return self.holder is not None and self.holder != client

    def info(self) -> dict:
        with self._lock:
            self._lapse_if_due()
            if self.holder is None:
                return {"holder": None, "lease_id": None, "ttl_s": None}
            return {"holder": self.holder, "lease_id": self.lease_id,
                    "ttl_s": round(max(0.0, self._expires - self._clock()), 3)}

    def _conflict(self, what: str = "motion") -> BusError:
        left = max(0.0, self._expires - self._clock())
        return BusError("conflict", f"the motion lease is held by {self.holder}; {what} refused",
                        {"holder": self.holder, "ttl_s": round(left, 3)})


@dataclass
class Transition:
    """What a change of the gate means for the bus: events to emit (name, payload)."""

    events: list[tuple[str, dict]]


class MotionGate:
    """Door, pause and alarm: motion runs only with the door closed (when door safety is on), not paused, no alarm.

    A door state the bridge does not know (none from gpio-service yet, gpio offline, a payload that is not a door
    state) is an open door: there is no setting that makes unknown safe. A robot without door switches turns
    `door_safety` off, plainly, in its settings."""

    def __init__(self, door_safety: bool):
        self.door_safety = door_safety
        self._lock = threading.Lock()
        self.door: str = "unknown"
        self.paused = False
        self.pause_reason: str | None = None
        self.alarm_message: str | None = None
        self.alarm_since: str | None = None

    # -- door and pause ------------------------------------------------------------------------------------------

    def door_open(self) -> bool:
        return self.door != "closed"

    def door_changed(self, door: str) -> list[tuple[str, dict]]:
        """A new door state; opening it (with door safety) pauses. Closing it does not resume by itself."""
        with self._lock:
            self.door = door
            if self.door_safety and self.door_open() and not (self.paused and self.pause_reason == "door"):
                self.paused, self.pause_reason = True, "door"
                return [("paused", {"reason": "door"})]
            return []

    def pause(self) -> list[tuple[str, dict]]:
        with self._lock:
            if self.paused:
                return []
            self.paused, self.pause_reason = True, "client"
            return [("paused", {"reason": "client"})]

    def resume(self, client: str | None) -> list[tuple[str, dict]]:
        with self._lock:
            if self.door_safety and self.door_open():
                raise BusError("conflict", f"door {self.door}: close the door (gpio-service must report it closed), "
                               "then resume", {"door": self.door})
            if not self.paused:
                return []
            self.paused, self.pause_reason = False, None
            return [("resumed", {"by": client})]

    def pause_info(self) -> dict:
        with self._lock:
            return {"paused": self.paused, "reason": self.pause_reason, "door": self.door}

    # -- alarm ---------------------------------------------------------------------------------------------------

    def raise_alarm(self, message: str) -> None:
        with self._lock:
            self.alarm_message, self.alarm_since = message, now_iso()

    def clear_alarm(self) -> None:
        with self._lock:
            self.alarm_message, self.alarm_since = None, None

    @property
    def alarm_active(self) -> bool:
        return self.alarm_message is not None

    def alarm_info(self) -> dict:
        with self._lock:
            return {"active": self.alarm_message is not None, "message": self.alarm_message, "since": self.alarm_since}

    # -- the check -----------------------------------------------------------------------------------------------

    def check(self, command: str, allow_alarm: bool = False) -> None:
        """Raise conflict when motion must not run now."""
        with self._lock:
            if self.door_safety and self.door_open():
                raise BusError("conflict", f"door {self.door}: {command} refused; close the door and send resume"
                               + ("" if self.door == "open" else " (an unknown door counts as open)"),
                               {"door": self.door})
            if self.paused:
                raise BusError("conflict", f"paused ({self.pause_reason}): {command} refused until resume",
                               {"reason": self.pause_reason})
            if self.alarm_message is not None and not allow_alarm:
                raise BusError("conflict", f"alarm ({self.alarm_message}): {command} refused until the robot is "
                               "homed", {"alarm": self.alarm_message})
