"""Fault injection: what a test arms, and how a reply is garbled. The line protocol consults the plan line by line;
the motion code takes `limit_alarm` for the next move."""
from __future__ import annotations

FAULTS = ("silence", "garble", "drop_ok", "limit_alarm", "close")


class FaultPlan:
    """Faults armed for the next lines they apply to, each with a count."""

    def __init__(self) -> None:
        self._armed: dict[str, int] = {}
        # after a line left unanswered (silence, a dropped ok), the empty lines that follow get no ok either
        self.mute_empty_lines = False

    def inject(self, kind: str, count: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        self._armed[kind] = self._armed.get(kind, 0) + count

    def clear(self) -> None:
        self._armed.clear()
        self.mute_empty_lines = False

    def take(self, kind: str) -> bool:
        """True (and one fewer armed) when a fault of this kind is armed."""
        if self._armed.get(kind, 0) > 0:
            self._armed[kind] -= 1
            return True
        return False


def garbled(text: str) -> str:
    """Line noise in place of a reply: no ack, no `error`/`alarm` word, never parses as data."""
    noise = "".join(chr(0x21 + (ord(c) * 7) % 60) for c in text[:24])
    return noise.replace("ok", "0k").replace(":", "#") or "#~#"
