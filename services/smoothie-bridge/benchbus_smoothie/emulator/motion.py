"""The board's axes in motion: per-axis firmware config, trapezoid move times, and the motion queue whose segments
run in real time (scaled by the speedup) on a thread of their own while the position is interpolated."""
from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

AXES = ("X", "Y", "Z", "A", "B", "C")


@dataclass
class AxisConfig:
    """Firmware config of one axis (opentrons-ot2.md 1.9, [S3] config.default)."""

    homing_position: float
    max_travel: float
    retract: float
    fast_mm_s: float
    slow_mm_s: float
    limit_enable: bool


def default_axes() -> dict[str, AxisConfig]:
    return {
        "X": AxisConfig(421, 430, 3, 100, 8, True),
        "Y": AxisConfig(353, 370, 0, 100, 5, False),  # Y has no hard limit in the OT config
        "Z": AxisConfig(220, 230, 2, 60, 5, True),
        "A": AxisConfig(220, 230, 2, 60, 5, True),
        "B": AxisConfig(20, 30, 2, 25, 2, True),
        "C": AxisConfig(20, 30, 2, 25, 2, True),
    }


def trapezoid_time(distance: float, speed: float, acceleration: float) -> float:
    """Seconds to travel `distance` from rest to rest with a speed limit and an acceleration."""
    if distance <= 0 or speed <= 0:
        return 0.0
    if acceleration <= 0:
        return distance / speed
    ramp = speed * speed / acceleration  # the distance spent speeding up and slowing down
    if distance >= ramp:
        return distance / speed + speed / acceleration
    return 2 * math.sqrt(distance / acceleration)


@dataclass
class Segment:
    start: dict[str, float]
    end: dict[str, float]
    duration: float
    alarm: str | None = None  # raised when the segment reaches `alarm_at` (fraction of it)
    alarm_at: float = 1.0
    on_done: Callable[[bool], None] | None = None  # called with True when finished, False when halted


class Motion:
    """The motion queue: segments run in real time on a thread of their own; the position is interpolated."""

    def __init__(self, on_alarm: Callable[[str], None]):
        self._on_alarm = on_alarm
        self._cond = threading.Condition()
        self._queue: collections.deque[Segment] = collections.deque()
        self._current: Segment | None = None
        self._current_started = 0.0
        self._position = {axis: 0.0 for axis in AXES}
        self._closed = False
        self.moved_s = 0.0  # wall time spent moving so far (motion time / speedup): the floor of a client's run
        threading.Thread(target=self._run, name="smoothie-emu-motion", daemon=True).start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def enqueue(self, segment: Segment) -> None:
        with self._cond:
            self._queue.append(segment)
            self._cond.notify_all()

    def planned_end(self) -> dict[str, float]:
        """Where the queue will leave the machine (the start of the next queued move)."""
        with self._cond:
            if self._queue:
                return dict(self._queue[-1].end)
            if self._current is not None:
                return dict(self._current.end)
            return dict(self._position)

    def position(self) -> dict[str, float]:
        with self._cond:
            return self._now_position()

    def _now_position(self) -> dict[str, float]:
        if self._current is None:
            return dict(self._position)
        segment = self._current
        elapsed = time.monotonic() - self._current_started
        fraction = 1.0 if segment.duration <= 0 else min(1.0, elapsed / segment.duration)
        return {a: segment.start[a] + (segment.end[a] - segment.start[a]) * fraction for a in AXES}

    def set_position(self, values: dict[str, float]) -> None:
        with self._cond:
            self._position.update(values)

    def busy(self) -> bool:
        with self._cond:
            return self._current is not None or bool(self._queue)

    def wait_idle(self, halted: threading.Event) -> None:
        with self._cond:
            while (self._current is not None or self._queue) and not self._closed:
                self._cond.wait(0.05)

    def flush(self) -> None:
        """HALT: stop where the machine is now, drop the queue."""
        with self._cond:
            self._position = self._now_position()
            for segment in [self._current, *self._queue]:
                if segment is not None and callable(segment.on_done):
                    segment.on_done(False)
            self._current = None
            self._queue.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._queue:
                    self._cond.wait(0.2)
                    continue
                segment = self._queue.popleft()
                segment.start = dict(self._position)  # the segment starts where the last one ended
                stop_at = segment.alarm_at if segment.alarm else 1.0
                if self._play(segment, stop_at):
                    self._finish(segment, stop_at)

    def _play(self, segment: Segment, stop_at: float) -> bool:
        """Wait (the lock released) while the segment runs to `stop_at`; False when a halt flushed it first."""
        self._current, self._current_started = segment, time.monotonic()
        deadline = self._current_started + segment.duration * stop_at
        while self._current is segment and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        return self._current is segment

    def _finish(self, segment: Segment, stop_at: float) -> None:
        self._position = {a: segment.start[a] + (segment.end[a] - segment.start[a]) * stop_at for a in AXES}
        self.moved_s += segment.duration * stop_at
        self._current = None
        self._cond.notify_all()
        if not segment.alarm:
            if callable(segment.on_done):
                segment.on_done(True)
            return
        self._queue.clear()
        self._cond.release()  # the alarm halts the board, which flushes this queue: not under its lock
        try:
            if callable(segment.on_done):
                segment.on_done(False)
            self._on_alarm(segment.alarm)
        finally:
            self._cond.acquire()
