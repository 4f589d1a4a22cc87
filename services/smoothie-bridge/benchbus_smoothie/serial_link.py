"""One request/ack exchange at a time with the board over pyserial (any URL: /dev/ttyAMA0, socket://host:port, a
pty): the input cleared before each write, close-reopen-resend retries on silence."""
from __future__ import annotations

import contextlib
import logging
import threading
import time

import serial

from .gcode import ACK, NoResponse, frame

log = logging.getLogger("benchbus.smoothie.driver")


class SerialLink:
    """One request/ack exchange at a time over a pyserial URL."""

    def __init__(self, url: str, baudrate: int = 115200, reopen_delay_s: float = 0.1):
        self.url = url
        self.baudrate = baudrate
        self.reopen_delay_s = reopen_delay_s
        self._port: serial.SerialBase | None = None
        self._write_lock = threading.Lock()  # the emergency-stop write may come from another thread
        self._unsolicited = bytearray()  # what the board printed between acks (an `ALARM:` raised mid-move)
        self.printed_before_write = b""  # that text, as it stood when the last exchange wrote its line

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._port.is_open

    def open(self) -> None:
        if self.is_open:
            return
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, bytesize=8, parity="N",
                                               stopbits=1, timeout=1.0, write_timeout=5.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._port = None
            raise NoResponse(f"cannot open {self.url}: {exc} (is another process using it?)") from None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def reopen(self) -> None:
        self.close()
        time.sleep(self.reopen_delay_s)
        self.open()

    def write_unframed(self, data: bytes) -> None:
        """Write bytes without clearing the input or waiting (the emergency stop while another command waits)."""
        with self._write_lock:
            if self._port is None:
                raise NoResponse("port is closed")
            self._port.write(data)
            self._port.flush()

    def exchange(self, command: str, ack_timeout: float, retries: int) -> bytes:
        """Send one framed line; the bytes up to and including its ack. Silence -> close, reopen, resend."""
        last_error = ""
        for attempt in range(retries + 1):
            if attempt:
                log.warning("retry %d/%d of %r after %s", attempt, retries, command, last_error)
                try:
                    self.reopen()
                except NoResponse as exc:
                    last_error = exc.message
                    continue
            try:
                self.open()
                port = self._port
                if port is None:
                    raise serial.SerialException("the port is not open")
                with self._write_lock:
                    self._drain_between_acks(port)
                    self.printed_before_write, self._unsolicited = bytes(self._unsolicited), bytearray()
                    port.write(frame(command))
                return self._read_reply(port, ack_timeout)
            except NoResponse as exc:
                last_error = exc.message
                partial = exc.raw
            except (serial.SerialException, OSError) as exc:
                last_error = f"port error: {exc}"
                partial = ""
                self.close()
        raise NoResponse(f"no ack to {command or '(ping)'!r} after {retries + 1} tries: {last_error}",
                         locals().get("partial", ""), command)

    def _drain_between_acks(self, port: serial.SerialBase) -> None:
        """Empty the input before a write without losing it: besides leftover oks it may hold the `ALARM:` line the
        board printed on its own when a limit switch tripped mid-move (a reset of the input would drop it)."""
        port.timeout = 0
        while chunk := port.read(4096):
            self._unsolicited += chunk

    def _read_reply(self, port: serial.SerialBase, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        buffer = bytearray()
        while True:
            if ACK in buffer:
                end = buffer.index(ACK) + len(ACK)
                self._unsolicited += buffer[end:]  # read along with the ack; the next exchange reports it
                return bytes(buffer[:end])
            if _complete_error(buffer):
                return bytes(buffer)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoResponse(f"no ack within {timeout:g} s", bytes(buffer).decode("ascii", "replace"))
            port.timeout = remaining
            first = port.read(1)
            if not first:
                continue
            buffer += first
            port.timeout = 0
            buffer += port.read(4096)


def _complete_error(buffer: bytearray) -> bool:
    """A read with no ack but a whole `error` line counts as complete (reference 1.4)."""
    lowered = bytes(buffer).lower()
    at = lowered.find(b"error")
    return at >= 0 and b"\n" in lowered[at:]
