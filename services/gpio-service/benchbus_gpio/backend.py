"""The interface both backends offer: a chip whose lines are requested by one consumer at a time, outputs set,
inputs read, and input edges delivered as events with kernel-style monotonic timestamps (no polling).

- `SimChip` (sim.py): a simulated chip in this process, for laptops, CI, compose and every test.
- `GpiodChip` (gpiod_backend.py): the Linux GPIO character device through the gpiod 2.x bindings (the robot).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Edge:
    offset: int
    rising: bool
    timestamp_ns: int  # CLOCK_MONOTONIC, comparable with time.monotonic_ns()

    @property
    def level(self) -> int:
        """The line's level right after this edge."""
        return 1 if self.rising else 0


class GpioError(Exception):
    """The chip could not do what was asked (no such chip, no such line, the request was released)."""


class LineBusy(GpioError):
    """A line is held by another consumer (another process, or the boot-time blinker)."""

    def __init__(self, offset: int, consumer: str | None, name: str | None = None):
        self.offset = offset
        self.consumer = consumer
        self.name = name
        held_by = f" by '{consumer}'" if consumer else " by another process (the kernel does not say which)"
        label = f"{name} (line {offset})" if name else f"line {offset}"
        super().__init__(f"{label} is held{held_by}")

    def named(self, name: str) -> LineBusy:
        return LineBusy(self.offset, self.consumer, name)


class LineRequest(ABC):
    """Lines held by one consumer until release()."""

    @abstractmethod
    def get(self, offset: int) -> int: ...

    @abstractmethod
    def set(self, offset: int, level: int) -> None: ...

    @abstractmethod
    def fileno(self) -> int:
        """A file descriptor that is readable while edge events wait to be read (for select/poll)."""

    @abstractmethod
    def wait_edges(self, timeout: float) -> bool:
        """Block until an edge event can be read or `timeout` seconds pass; True when one can."""

    @abstractmethod
    def read_edges(self) -> list[Edge]:
        """Every edge event waiting now, oldest first (never blocks)."""

    @abstractmethod
    def release(self) -> None: ...


class Chip(ABC):
    kind: str  # "sim" or "gpiod"
    name: str

    @abstractmethod
    def request(self, consumer: str, outputs: dict[int, int], inputs: list[int]) -> LineRequest:
        """Hold `outputs` (offset -> initial level) and `inputs` (with both-edge events). Raises LineBusy."""

    @abstractmethod
    def read_levels(self, consumer: str, offsets: list[int]) -> dict[int, int]:
        """Read inputs once and let them go (the board-revision bits). Raises LineBusy."""

    @abstractmethod
    def revision_bits_wired(self) -> bool:
        """Whether this board has the revision bits (else it is an OG board)."""

    def close(self) -> None:  # noqa: B027 - optional: a chip that holds no file descriptor has nothing to close
        pass
