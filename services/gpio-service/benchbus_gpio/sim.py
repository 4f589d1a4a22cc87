"""A simulated GPIO chip: lines with levels and owners, outputs that keep a history, and inputs whose changes
reach the requests watching them as timestamped edge events through a selectable file descriptor.

Input changes are scheduled on a timeline (`drive`, with an optional contact-bounce train). A wire thread makes
each edge happen at its time and stamps it with that time, and every read first brings the timeline up to now,
so a reader that wakes late still sees each edge with its true timestamp, as with the kernel's event buffer.
Every line reads 1 until driven (pull-ups, as the OT-2's own simulator assumes: door closed, button released).
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import select
import threading
import time
from collections import deque

from .backend import Chip, Edge, GpioError, LineBusy, LineRequest

HISTORY = 1000  # output changes kept per line


class SimChip(Chip):
    kind = "sim"

    def __init__(self, name: str = "sim-gpiochip0", num_lines: int = 54, initial: dict[int, int] | None = None,
                 revision_bits_wired: bool = True):
        self.name = name
        self.num_lines = num_lines
        self._revision_bits_wired = revision_bits_wired
        self._lock = threading.Condition()
        self._levels = {offset: 1 for offset in range(num_lines)}
        self._levels.update(initial or {})
        self._owners: dict[int, tuple[str, SimRequest]] = {}
        self._history: dict[int, deque] = {}
        self._timeline: list[tuple[int, int, int, int]] = []  # (due_ns, seq, offset, level)
        self._projected: dict[int, tuple[int, int]] = {}  # offset -> (level, due_ns) after what is scheduled
        self._seq = itertools.count()
        self._closed = False
        self._wire = threading.Thread(target=self._wire_loop, name=f"{name}-wire", daemon=True)
        self._wire.start()

    # -- the Chip interface ----------------------------------------------------------------------------------------

    def request(self, consumer: str, outputs: dict[int, int], inputs: list[int]) -> SimRequest:
        with self._lock:
            wanted = list(outputs) + [o for o in inputs if o not in outputs]
            for offset in wanted:
                self._check_offset(offset)
                if offset in self._owners:
                    raise LineBusy(offset, self._owners[offset][0])
            request = SimRequest(self, consumer, set(outputs), set(inputs))
            for offset in wanted:
                self._owners[offset] = (consumer, request)
            for offset, level in outputs.items():
                self._drive_output(offset, level)
            return request

    def read_levels(self, consumer: str, offsets: list[int]) -> dict[int, int]:
        with self._lock:
            self._advance(time.monotonic_ns())
            for offset in offsets:
                self._check_offset(offset)
                if offset in self._owners:
                    raise LineBusy(offset, self._owners[offset][0])
            return {offset: self._levels[offset] for offset in offsets}

    def revision_bits_wired(self) -> bool:
        return self._revision_bits_wired

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    # -- the world's side: what a hand on the robot, or a test, does ----------------------------------------------

    def drive(self, offset: int, level: int, bounces: int = 0, gap_s: float = 0.001) -> int:
        """Move an input to `level`, through `bounces` extra edge pairs `gap_s` apart first. Returns the edge count.

        The edges are laid on the timeline right after what is already scheduled for the line."""
        self._check_offset(offset)
        if level not in (0, 1):
            raise ValueError("level must be 0 or 1")
        gap_ns = max(1, int(gap_s * 1e9))
        with self._lock:
            now = time.monotonic_ns()
            self._advance(now)
            current, last_due = self._projected.get(offset, (self._levels[offset], now))
            start = max(now, last_due + gap_ns) if offset in self._projected else now
            levels = [level, 1 - level] * bounces + [level]
            if current == level:
                levels = levels[1:] if bounces else []  # a blip train that ends where it began
            for index, value in enumerate(levels):
                due = start + index * gap_ns
                heapq.heappush(self._timeline, (due, next(self._seq), offset, value))
                self._projected[offset] = (value, due)
            self._lock.notify_all()
            return len(levels)

    def level(self, offset: int) -> int:
        with self._lock:
            self._advance(time.monotonic_ns())
            return self._levels[offset]

    def history(self, offset: int) -> list[tuple[int, int]]:
        """(timestamp_ns, level) of every change the owner made to an output, oldest first."""
        with self._lock:
            return list(self._history.get(offset, ()))

    def consumer_of(self, offset: int) -> str | None:
        with self._lock:
            owner = self._owners.get(offset)
            return owner[0] if owner else None

    def settled(self) -> bool:
        """Whether every scheduled input change has happened."""
        with self._lock:
            self._advance(time.monotonic_ns())
            return not self._timeline

    # -- inside ----------------------------------------------------------------------------------------------------

    def _check_offset(self, offset: int) -> None:
        if not 0 <= offset < self.num_lines:
            raise GpioError(f"{self.name} has no line {offset} (it has {self.num_lines})")

    def _drive_output(self, offset: int, level: int) -> None:
        if self._levels[offset] != level or offset not in self._history:
            self._levels[offset] = level
            self._history.setdefault(offset, deque(maxlen=HISTORY)).append((time.monotonic_ns(), level))

    def _set_from_owner(self, request: SimRequest, offset: int, level: int) -> None:
        with self._lock:
            owner = self._owners.get(offset)
            if owner is None or owner[1] is not request:
                raise GpioError(f"line {offset} is not held by this request")
            if offset not in request.outputs:
                raise GpioError(f"line {offset} is an input")
            self._drive_output(offset, 1 if level else 0)

    def _get_from_owner(self, offset: int) -> int:
        with self._lock:
            self._advance(time.monotonic_ns())
            return self._levels[offset]

    def _release(self, request: SimRequest) -> None:
        with self._lock:
            for offset in [o for o, (_c, r) in self._owners.items() if r is request]:
                del self._owners[offset]

    def _advance(self, now_ns: int) -> None:
        """Make every scheduled edge due by `now_ns` happen, stamped with its own time. Lock held."""
        while self._timeline and self._timeline[0][0] <= now_ns:
            due, _seq, offset, level = heapq.heappop(self._timeline)
            if self._projected.get(offset, (None, None))[1] == due:
                del self._projected[offset]
            if self._levels[offset] == level:
                continue
            self._levels[offset] = level
            owner = self._owners.get(offset)
            if owner is not None and offset in owner[1].inputs:
                owner[1]._deliver(Edge(offset, level == 1, due))

    def _wire_loop(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.monotonic_ns()
                self._advance(now)
                wait = (self._timeline[0][0] - now) / 1e9 if self._timeline else None
                self._lock.wait(wait)


class SimRequest(LineRequest):
    def __init__(self, chip: SimChip, consumer: str, outputs: set[int], inputs: set[int]):
        self.chip = chip
        self.consumer = consumer
        self.outputs = outputs
        self.inputs = inputs
        self._events: deque[Edge] = deque()
        self._events_lock = threading.Lock()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._released = False

    def get(self, offset: int) -> int:
        self._check_held(offset)
        return self.chip._get_from_owner(offset)

    def set(self, offset: int, level: int) -> None:
        self._check_held(offset)
        self.chip._set_from_owner(self, offset, level)

    def fileno(self) -> int:
        return self._read_fd

    def wait_edges(self, timeout: float) -> bool:
        if self._pending():
            return True
        if self._released:
            raise GpioError("the request was released")
        select.select([self._read_fd], [], [], max(0.0, timeout))
        return self._pending()

    def read_edges(self) -> list[Edge]:
        with self.chip._lock:
            self.chip._advance(time.monotonic_ns())
        with self._events_lock:
            edges = list(self._events)
            self._events.clear()
            self._drain_pipe()
        return edges

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.chip._release(self)
        os.write(self._write_fd, b"x")  # wake a reader so it sees the release

    def _pending(self) -> bool:
        with self.chip._lock:
            self.chip._advance(time.monotonic_ns())
        with self._events_lock:
            return bool(self._events)

    def _deliver(self, edge: Edge) -> None:
        with self._events_lock:
            was_empty = not self._events
            self._events.append(edge)
            if was_empty:
                with contextlib.suppress(BlockingIOError):  # the pipe already says "readable"
                    os.write(self._write_fd, b"e")

    def _drain_pipe(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def _check_held(self, offset: int) -> None:
        if self._released:
            raise GpioError("the request was released")
        if offset not in self.outputs and offset not in self.inputs:
            raise GpioError(f"line {offset} is not part of this request")

    def __del__(self):
        for fd in (getattr(self, "_read_fd", None), getattr(self, "_write_fd", None)):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
