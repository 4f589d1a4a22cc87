"""The line protocol: each line from the UART, in order on one thread, split into its codes and run on the machine,
answered as the firmware answers (every line, empty ones too, gets its `ok`; an error or alarm ends the line; while
halted only a few M-codes run), with the armed faults bending what goes back."""
from __future__ import annotations

import logging
import queue
import re
import threading
from typing import TYPE_CHECKING

from .faults import FaultPlan, garbled
from .transport import Connection, Uart

if TYPE_CHECKING:
    from .machine import Machine

log = logging.getLogger("benchbus.smoothie.emulator")

ALLOWED_WHILE_HALTED = {2, 5, 9, 30, 80, 81, 105, 106, 107, 114, 119, 503, 911, 999, 112}
_CODE_START = re.compile(r"(?<=\s)(?=[GM]\d)")


def split_codes(line: str) -> list[str]:
    """The firmware splits a line at each G or M after position 2 (hex data is lower case, so it never splits)."""
    parts = [part.strip() for part in _CODE_START.split(line.strip())]
    return [part for part in parts if part]


def parse_words(code: str) -> dict[str, float]:
    """`G0 X100 Y-3.5 F24000` -> {X: 100.0, Y: -3.5, F: 24000.0}; letters without a number are skipped."""
    values: dict[str, float] = {}
    for word in code.split()[1:]:
        letter, number = word[:1].upper(), word[1:]
        try:
            values[letter] = float(number)
        except ValueError:
            continue
    return values


def allowed_while_halted(word: str) -> bool:
    if not word.startswith("M"):
        return False
    try:
        return int(float(word[1:])) in ALLOWED_WHILE_HALTED
    except ValueError:
        return False


class LineProtocol:
    def __init__(self, machine: Machine, uart: Uart, faults: FaultPlan, echo: bool = False):
        self.machine = machine
        self.uart = uart
        self.faults = faults
        self.echo = echo
        self.lines: list[str] = []  # every non-empty line received, as received (trimmed)
        self._lines_in: queue.Queue[tuple[Connection, str] | None] = queue.Queue()
        threading.Thread(target=self._process_loop, name="smoothie-emu-process", daemon=True).start()

    def submit(self, conn: Connection, line: str) -> None:
        self._lines_in.put((conn, line))

    def stop(self) -> None:
        self._lines_in.put(None)

    def _process_loop(self) -> None:
        while True:
            item = self._lines_in.get()
            if item is None:
                return
            conn, line = item
            if conn is not self.uart.current():
                continue  # left over from a connection that was replaced
            try:
                self._process_line(line)
            except Exception as exc:  # a stand-in must never die of its input
                log.exception("emulator failed on %r", line)
                self.uart.emit(f"error:{exc}\r\n")
            if self._lines_in.empty():
                self.uart.flush()  # one write per burst: the leftover oks travel with the ack, as on the wire

    def _process_line(self, line: str) -> None:
        text = line.strip()
        if not text:
            if not self.faults.mute_empty_lines:
                self.uart.emit("ok\r\n")
            return
        self.lines.append(text)
        self.faults.mute_empty_lines = False
        if self.faults.take("close"):
            self.uart.drop_connection()
            return
        if self.faults.take("silence"):
            self.faults.mute_empty_lines = True
            return
        if self.echo:
            self.uart.emit(text + "\r\n")
        reply, acked = self._execute_line(text)
        if reply is not None and self.faults.take("garble"):
            reply = garbled(reply)
        if self.faults.take("drop_ok"):
            self.faults.mute_empty_lines = True
            acked = False
        self._answer(reply, acked)

    def _answer(self, reply: str | None, acked: bool) -> None:
        if reply is not None:
            self.uart.emit(reply + "\r\n")
        if acked and not (reply is not None and reply.startswith("ok ")):  # M114.2, M112: the text rides on its ok
            self.uart.emit("ok\r\n")

    def _execute_line(self, text: str) -> tuple[str | None, bool]:
        """(reply text or None, whether the line gets its ok)."""
        if text[0].islower():
            return self._shell(text)
        replies = []
        for code in split_codes(text):
            word = code.split()[0].upper()
            if self.machine.halted.is_set() and not allowed_while_halted(word):
                return "error:Alarm lock", False
            reply = self.machine.execute(word, code, parse_words(code))
            if reply is not None:
                if reply.startswith("error") or reply.startswith("ALARM"):
                    return reply, reply.startswith("ALARM")
                replies.append(reply)
        return (" ".join(replies) if replies else None), True

    def _shell(self, text: str) -> tuple[str | None, bool]:
        command = text.split()[0]
        if command == "version":
            return self.machine.version, True
        return f"error:Unsupported command - {command}", False
