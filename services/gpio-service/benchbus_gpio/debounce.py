"""Debouncing by edge timestamps, and the button's press/release/long-press logic. Pure: no clock of its own,
no threads; the input loop feeds edges and asks what is due at a given monotonic time.

A line's new level is accepted once it has stayed unchanged for the whole window after its last edge; a train of
bounces shorter than the window therefore yields one change, stamped with the train's first edge (when the
hand moved). With a window of 0 every edge that changes the level is a change.
"""
from __future__ import annotations

from dataclasses import dataclass

from .backend import Edge


@dataclass(frozen=True)
class Change:
    offset: int
    level: int
    started_ns: int  # the first edge of the train that led here


@dataclass
class _Unsettled:
    level: int
    first_ns: int
    last_ns: int


class Debouncer:
    def __init__(self, window_s: float, levels: dict[int, int]):
        self.window_ns = int(window_s * 1e9)
        self.stable: dict[int, int] = dict(levels)
        self._unsettled: dict[int, _Unsettled] = {}
        self._settled: list[Change] = []  # settled by the edges' own timestamps, not yet handed out

    def feed(self, edge: Edge) -> None:
        if edge.offset not in self.stable:
            return
        current = self._unsettled.get(edge.offset)
        if current is not None and edge.timestamp_ns - current.last_ns >= self.window_ns:
            # the level before this edge was quiet for a whole window: it counts, even if we read both late
            self._settle(edge.offset, current)
            current = None
        if current is None:
            self._unsettled[edge.offset] = _Unsettled(edge.level, edge.timestamp_ns, edge.timestamp_ns)
        else:
            current.level = edge.level
            current.last_ns = max(current.last_ns, edge.timestamp_ns)

    def due(self, now_ns: int) -> list[Change]:
        """The changes that have settled by `now_ns`, oldest first; bounces that came back to the old level vanish."""
        for offset, pending in list(self._unsettled.items()):
            if pending.last_ns + self.window_ns <= now_ns:
                del self._unsettled[offset]
                self._settle(offset, pending, remove=False)
        changes, self._settled = self._settled, []
        return sorted(changes, key=lambda c: c.started_ns)

    def _settle(self, offset: int, pending: _Unsettled, remove: bool = True) -> None:
        if remove:
            del self._unsettled[offset]
        if pending.level != self.stable[offset]:
            self.stable[offset] = pending.level
            self._settled.append(Change(offset, pending.level, pending.first_ns))

    def next_deadline(self) -> int | None:
        deadlines = [p.last_ns + self.window_ns for p in self._unsettled.values()]
        return min(deadlines) if deadlines else None


@dataclass(frozen=True)
class ButtonAction:
    action: str  # pressed | released | long_press
    at_ns: int
    held_s: float | None = None


class Button:
    """Turns debounced pressed/released levels into pressed, released and (once per hold) long_press."""

    def __init__(self, long_press_s: float):
        self.long_press_ns = int(long_press_s * 1e9)
        self._pressed_at: int | None = None
        self._long_sent = False

    @property
    def pressed(self) -> bool:
        return self._pressed_at is not None

    def change(self, pressed: bool, at_ns: int) -> list[ButtonAction]:
        if pressed and self._pressed_at is None:
            self._pressed_at, self._long_sent = at_ns, False
            return [ButtonAction("pressed", at_ns)]
        if not pressed and self._pressed_at is not None:
            held = (at_ns - self._pressed_at) / 1e9
            self._pressed_at = None
            return [ButtonAction("released", at_ns, round(held, 3))]
        return []

    def due(self, now_ns: int) -> list[ButtonAction]:
        deadline = self.next_deadline()
        if deadline is not None and now_ns >= deadline:
            self._long_sent = True
            return [ButtonAction("long_press", deadline, round(self.long_press_ns / 1e9, 3))]
        return []

    def next_deadline(self) -> int | None:
        if self._pressed_at is None or self._long_sent:
            return None
        return self._pressed_at + self.long_press_ns
