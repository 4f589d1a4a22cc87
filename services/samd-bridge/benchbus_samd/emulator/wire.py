"""The half-duplex RS-485 line's timing and what the emulator logs of it: every byte takes 10 bit times at the baud
rate, a board waits `reply_delay_s` before replying and holds the line `hold_s` after (stir: `stir_hold_s`)."""
from __future__ import annotations

from dataclasses import dataclass

OUT_TERMINATOR = b"_!"  # ends a host frame (`<param><r|i|a>,<v1>,...,_!`)
IN_TERMINATOR = "end"  # ends a board's reply (`<param><b|e>,<v1>,...,end`, no newline)
INPUT_LIMIT = 2000  # the firmware clears its input buffer when it grows past this


@dataclass
class LineTiming:
    """Physical timing of the line; the bridge's floor and the benchmark's limit are computed from the same one."""

    baudrate: int = 9600
    reply_delay_s: float = 0.1  # driver enabled, delay(100), then the reply
    hold_s: float = 0.1  # delay(100) after the reply before the driver is released
    stir_hold_s: float = 0.3  # the stir board waits 300 ms
    bits_per_char: int = 10  # 8N1

    @property
    def char_s(self) -> float:
        return self.bits_per_char / self.baudrate

    @classmethod
    def fast(cls) -> LineTiming:
        """For tests: the same protocol, 24x the baud rate and 2-5 ms turnarounds."""
        return cls(baudrate=230400, reply_delay_s=0.002, hold_s=0.002, stir_hold_s=0.005)

    def hold_for(self, param: str) -> float:
        return self.stir_hold_s if param == "stir" else self.hold_s

    def wire_s(self, nbytes: int) -> float:
        return nbytes * self.char_s


@dataclass
class ReceivedFrame:
    t: float
    param: str
    type: str
    values: list[str]
    text: str


@dataclass
class WireEvent:
    """One run of bytes on the line: who drove it, when it started and ended, what it was."""

    start: float
    end: float
    source: str  # "host" or "board"
    param: str | None
    data: bytes
    corrupted: bool = False
