"""What the front button's LED shows, decided without a screen (pure logic; the service feeds it, the driver shows it).

Three layers, highest first:
- identify: a blink for N seconds (`identify`), then gone;
- manual: what a client chose with `set_button_light`, until it hands the LED back (`auto`);
- status: the device's health: blinking blue while any service of the device is not `ready` (starting, degraded,
  offline), solid blue when every one is `ready`, solid red while the smoothie-bridge reports an alarm, off while
  this service stops.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

STATUS_BLINK_PERIOD_S = 1.0  # the OT-2 blinks 0.5 s on, 0.5 s off while it starts


@dataclass(frozen=True)
class Look:
    color: str
    pattern: str = "solid"  # solid | blink
    period_s: float = 1.0

    def lit(self, elapsed_s: float) -> bool:
        """Whether the LED is on `elapsed_s` after this look began (blinks start with the LED on)."""
        if self.color == "off":
            return False
        if self.pattern == "solid":
            return True
        return (elapsed_s % self.period_s) < self.period_s / 2


OFF = Look("off")


class Health:
    """The device's health, from the services' `$state` and the smoothie-bridge's alarm."""

    def __init__(self, ignore: tuple[str, ...] = (), blink_period_s: float = STATUS_BLINK_PERIOD_S):
        self.ignore = set(ignore)
        self.blink_period_s = blink_period_s
        self.states: dict[str, str] = {}
        self.alarm = False
        self.stopping = False

    def service_state(self, segment: str, state: str | None) -> None:
        if segment in self.ignore:
            return
        if state is None:
            self.states.pop(segment, None)  # retained $state cleared: the service is gone for good
        else:
            self.states[segment] = state

    def look(self) -> Look:
        if self.stopping:
            return OFF
        if self.alarm:
            return Look("red")
        if self.states and all(state == "ready" for state in self.states.values()):
            return Look("blue")
        return Look("blue", "blink", self.blink_period_s)

    def not_ready(self) -> dict[str, str]:
        return {segment: state for segment, state in self.states.items() if state != "ready"}


def alarm_active(data: Any) -> bool | None:
    """Read the smoothie-bridge's retained `state/alarm` ({"active": bool, ...}); None when it says nothing usable."""
    if data is None:
        return False  # the retained alarm was cleared
    if isinstance(data, bool):
        return data
    if isinstance(data, dict):
        for key in ("active", "alarm"):
            if key not in data:
                continue
            value = data[key]
            if isinstance(value, bool):
                return value
            if key == "alarm" and (value is None or isinstance(value, str)):
                return bool(value)
    return None


class ButtonLightLayers:
    """Arbitrates the three layers; thread-safe. `current()` is what the LED should show and which layer chose it."""

    def __init__(self, status: Look):
        self._lock = threading.Lock()
        self._status = status
        self._manual: Look | None = None
        self._identify: tuple[Look, float] | None = None  # (look, until monotonic seconds)

    def set_status(self, look: Look) -> None:
        with self._lock:
            self._status = look

    def set_manual(self, look: Look | None) -> None:
        with self._lock:
            self._manual = look

    def start_identify(self, look: Look, until: float) -> None:
        with self._lock:
            self._identify = (look, until)

    def clear_overrides(self) -> None:
        with self._lock:
            self._manual = None
            self._identify = None

    def identify_until(self) -> float | None:
        with self._lock:
            return self._identify[1] if self._identify else None

    def current(self, now: float) -> tuple[Look, str]:
        with self._lock:
            if self._identify is not None and now >= self._identify[1]:
                self._identify = None
            if self._identify is not None:
                return self._identify[0], "identify"
            if self._manual is not None:
                return self._manual, "manual"
            return self._status, "status"
