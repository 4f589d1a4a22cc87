"""The bounded in-memory ring of recent scheduler broadcasts behind `GET /api/history` (the dashboard's curves).

Bounded twice: by age (`history_max_age_s`, 24 h by default) and by count (`history_size`), whichever bites first,
so memory stays bounded at any broadcast rate. Entries are kept as the JSON text that arrived from the bus (a
16-vial broadcast is ~4 KB of text, several times that as Python objects), and the HTTP body is joined from those
texts without decoding them again. Long-term storage is not the gateway's job: a recorder on the bus keeps that.
"""
from __future__ import annotations

import json
import time
from collections import deque
from typing import Any
from collections.abc import Iterator


class BroadcastHistory:
    def __init__(self, max_count: int, max_age_s: float | None = None):
        self._entries: deque[tuple[float, str]] = deque(maxlen=max_count)  # (received, entry JSON text)
        self.max_age_s = max_age_s

    @property
    def maxlen(self) -> int:
        return self._entries.maxlen or 0

    def add_raw(self, broadcast_text: str, received: float | None = None) -> None:
        """Keep one broadcast as it came from the bus (text that is already valid JSON)."""
        received = time.time() if received is None else received
        entry = '{"received":' + repr(float(received)) + ',"broadcast":' + broadcast_text + "}"
        self._entries.append((received, entry))
        self._forget_old(received)

    def append(self, entry: dict) -> None:
        """Keep one `{"received": ..., "broadcast": {...}}` entry (the dict form the gateway first used)."""
        received = float(entry.get("received") or time.time())
        self.add_raw(json.dumps(entry.get("broadcast"), separators=(",", ":")), received)

    def _forget_old(self, now: float) -> None:
        if self.max_age_s is None:
            return
        oldest_kept = now - self.max_age_s
        while self._entries and self._entries[0][0] < oldest_kept:
            self._entries.popleft()

    def render(self, limit: int | None = None) -> str:
        """The body of GET /api/history: {"size", "max_age_s", "broadcasts": [oldest ... newest]}."""
        self._forget_old(time.time())
        kept = list(self._entries)
        if limit is not None:
            kept = kept[-limit:] if limit else []
        return ('{"size":' + str(self.maxlen) + ',"max_age_s":' + json.dumps(self.max_age_s)
                + ',"broadcasts":[' + ",".join(text for _received, text in kept) + "]}")

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _received, text in list(self._entries):
            yield json.loads(text)
