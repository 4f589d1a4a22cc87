"""Fault injection on the line: what a test arms per board (or at random on any), the draw for each transaction,
and what each kind does to a board's reply."""
from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from .boards import Board
from .wire import IN_TERMINATOR

FAULT_KINDS = ("garbled", "truncated", "no_end", "field_count", "wrong_address", "silence", "stray_burst",
               "bad_char", "echo_mismatch", "port_close")
# What the bridge should call each fault (for tests).
FAULT_ERROR_KIND = {
    "garbled": "garbled", "truncated": "no_terminator", "no_end": "no_terminator", "field_count": "field_count_in",
    "wrong_address": "wrong_address", "silence": "timeout", "stray_burst": "garbled",
    "bad_char": "bad_response_char", "echo_mismatch": "echo_mismatch",
}


@dataclass
class _Fault:
    kind: str
    probability: float
    count: int | None


class FaultPlan:
    """The armed faults. Not locked: the emulator calls it under its own lock."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self._faults: dict[str, list[_Fault]] = {}
        self._random_fault: tuple[float, tuple[str, ...]] | None = None

    def inject(self, boards: dict[str, Board], param: str, kind: str, probability: float = 1.0,
               count: int | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
        if param not in boards:
            raise ValueError(f"no board answers {param!r}")
        if kind == "echo_mismatch" and boards[param].kind != "echo":
            raise ValueError(f"{param} replies with data, it has no echo to corrupt")
        self._faults.setdefault(param, []).append(_Fault(kind, probability, count))

    def inject_random(self, probability: float, kinds: tuple[str, ...] | None = None) -> None:
        """Every transaction on any board fails with `probability`, with a kind drawn from `kinds`."""
        chosen = kinds or tuple(k for k in FAULT_KINDS if k not in ("port_close", "echo_mismatch"))
        self._random_fault = (probability, chosen)

    def clear(self) -> None:
        self._faults.clear()
        self._random_fault = None

    def draw(self, board: Board) -> str | None:
        """The fault this transaction of `board` suffers, if any (an armed count goes down by one)."""
        for fault in self._faults.get(board.address, []):
            if self.rng.random() < fault.probability:
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults[board.address].remove(fault)
                return fault.kind
        if self._random_fault is not None:
            probability, kinds = self._random_fault
            if self.rng.random() < probability:
                return self.rng.choice(kinds)
        return None

    def stray_burst(self) -> bytes:
        """Line noise before a reply."""
        return bytes(self.rng.randrange(256) for _ in range(6)) + b"\x00\xff"


def reply_frame(fault: str | None, board: Board, values: list[str], addresses: Iterable[str]) -> bytes:
    """The reply `board` puts on the line for `values`, bent by `fault` (a wrong address is another of `addresses`)."""
    response = "b" if board.kind == "data" else "e"
    address = board.address
    if fault == "wrong_address":
        address = next(a for a in addresses if a != board.address)
    elif fault == "bad_char":
        response = "x"
    elif fault == "field_count":
        values = values[:-1] if len(values) > 1 else values + values
    elif fault == "echo_mismatch":
        values = list(values)
        values[0] = "1" + values[0].replace("-", "")
    reply = f"{address}{response},{','.join(values)},{IN_TERMINATOR}".encode()
    if fault == "garbled":
        middle = len(reply) // 2
        reply = reply[:middle - 2] + b"\xff\x00\xfe" + reply[middle + 1:]
    elif fault == "truncated":
        reply = reply[: len(reply) // 2]
    elif fault == "no_end":
        reply = reply[: -len(IN_TERMINATOR)]
    return reply
