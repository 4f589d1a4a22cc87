"""The conversation on the eVOLVER's shared SAMD21 line: one transaction at a time, no MQTT.

A transaction: write `<param><r|i>,<v1>,...,<vn>,_!`; read until the reply's `end` (never readline with a timeout:
the board sends no newline); validate the whole reply; wait until the board has released the half-duplex line;
then write `<param>a,<empty fields>,_!`, which makes the board apply what it staged. A reply that fails validation
gets no `a`, so nothing was applied and the transaction may be repeated safely.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Sequence

import serial

TERMINATOR = b",end"
VALUE_WIDTH_GUESS = 6  # a data reply's value: up to 5 digits and its comma


class TransactionFailed(Exception):
    """The reply did not validate (nothing was applied). `kind` is one of the bus's error kinds."""

    def __init__(self, kind: str, message: str, raw: bytes = b"", sent: bytes = b""):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.raw = raw
        self.sent = sent


class PortLost(Exception):
    """The serial port is gone or cannot be opened."""


@dataclass
class LineSettings:
    url: str
    baudrate: int = 9600
    reply_delay_s: float = 0.1  # the board waits this long with its driver on before replying
    hold_s: float = 0.1  # ... and this long after its reply before releasing the line
    hold_overrides: dict[str, float] = field(default_factory=lambda: {"stir": 0.3})
    guard_s: float = 0.001  # extra margin on every turnaround
    timeout_margin_s: float = 0.1  # added to the computed deadline of one attempt
    reply_gap_s: float = 0.03  # silence that ends a reply which started but never sent its `end`
    read_tick_s: float = 0.01
    # A board may release the line later than its nominal hold (firmware, UART latency): an `a` sent into that
    # collides and the command is silently not applied. So an `a` that changes something waits this much longer.
    release_margin_s: float = 0.021
    action_params: tuple[str, ...] = ("pump",)  # an `a` here always acts (a pump run), so it always waits

    @property
    def char_s(self) -> float:
        return 10.0 / self.baudrate

    def hold_for(self, param: str) -> float:
        return self.hold_overrides.get(param, self.hold_s)


@dataclass
class Reply:
    param: str
    kind: str  # "data" (a `b` reply) or "echo" (an `e` reply)
    values: list[str]
    duration_s: float
    raw: bytes


def build_frame(param: str, type_char: str, values: Sequence[str]) -> bytes:
    return (f"{param}{type_char}," + "".join(f"{v}," for v in values) + "_!").encode("ascii")


def build_ack(param: str, fields_out: int) -> bytes:
    """The `a` frame has the same comma count as the request (the board checks it)."""
    return (f"{param}a," + "," * (fields_out - 1) + "_!").encode("ascii")


def escape(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data)


def parse_reply(raw: bytes, param: str, sent: Sequence[str], fields_out: int, fields_in: int) -> tuple[str, list[str]]:
    """Validate a reply completely; return (kind, values) or raise TransactionFailed naming what is wrong."""
    if not raw:
        raise TransactionFailed("timeout", f"no reply from {param}", raw)
    if any(b < 0x20 or b > 0x7E for b in raw):
        raise TransactionFailed("garbled", "the reply holds bytes that are not printable ASCII", raw)
    text = raw.decode("ascii")
    end = text.find(TERMINATOR.decode())
    if end < 0:
        raise TransactionFailed("no_terminator", f"the reply never sent its 'end' ({len(raw)} bytes)", raw)
    if text[end + len(TERMINATOR):]:
        raise TransactionFailed("garbled", "bytes follow the reply's 'end'", raw)
    fields = text[:end].split(",")
    head = fields[0]
    if not head.startswith(param):
        raise TransactionFailed("wrong_address", f"expected a reply from {param}, got {head!r}", raw)
    response = head[len(param):]
    if response not in ("b", "e"):
        raise TransactionFailed("bad_response_char", f"response type {response!r} is neither 'b' nor 'e'", raw)
    if len(fields) != fields_in:
        raise TransactionFailed("field_count_in", f"{len(fields)} fields in the reply, expected {fields_in}", raw)
    values = fields[1:]
    if response == "e":
        if len(fields) != fields_out:
            raise TransactionFailed("field_count_out", f"the echo has {len(fields)} fields, {fields_out} were sent",
                                    raw)
        if values != list(sent):
            first = next(i for i, (a, b) in enumerate(zip(values, sent, strict=False)) if a != b)
            raise TransactionFailed("echo_mismatch", f"value {first} echoed as {values[first]!r}, "
                                    f"sent {sent[first]!r}", raw)
    return ("data" if response == "b" else "echo"), values


class FifoLock:
    """The line serves waiting transactions in arrival order (threading.Lock makes no such promise)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0

    def __enter__(self) -> FifoLock:
        with self._cond:
            ticket = self._next
            self._next += 1
            self._cond.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *_exc) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()

    def busy(self) -> bool:
        with self._cond:
            return self._next != self._serving


def _sleep_until(when: float) -> None:
    remaining = when - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


class SamdLine:
    def __init__(self, settings: LineSettings):
        self.settings = settings
        self._port: serial.SerialBase | None = None
        self._bus = FifoLock()
        # What each board was last told to apply: an `a` repeating it changes nothing, so it may go at the nominal
        # turnaround (the default cycle repeats its values; this keeps it at the line's physical limit).
        self._applied: dict[str, tuple[str, ...]] = {}
        # Learned when a frame sent right after an unmargined `a` got no good reply: the boards release late.
        self.late_margin_s = 0.0
        self._last_ack_unmargined_at: float | None = None

    # -- the port ------------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Open the port (a device path or a pyserial URL such as socket://host:port); PortLost if impossible."""
        try:
            port = serial.serial_for_url(self.settings.url, baudrate=self.settings.baudrate,
                                         timeout=self.settings.read_tick_s, write_timeout=5.0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortLost(f"cannot open {self.settings.url}: {exc}") from None
        self._applied.clear()  # the boards may have been reset while the port was away
        sock = getattr(port, "_socket", None)  # socket:// : send each frame at once, not after Nagle's delay
        if sock is not None:
            import socket as _socket
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self._port = port

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def _lost(self, exc: Exception) -> PortLost:
        self.close()
        return PortLost(f"{self.settings.url}: {exc}")

    def probe(self) -> bool:
        """While idle: is the port still there? (A vanished socket or pty reads as an error.) Stray bytes are
        dropped."""
        if self._port is None:
            return False
        if self._bus.busy():
            return True  # a transaction is using it right now
        with self._bus:
            if self._port is None:
                return False
            try:
                self._port.timeout = 0  # look, do not wait: a request may be right behind us
                self._port.read(256)
                self._port.timeout = self.settings.read_tick_s
            except (serial.SerialException, OSError) as exc:
                self._lost(exc)
                return False
        return True

    # -- transactions --------------------------------------------------------------------------------------------

    def default_timeout(self, param: str, frame: bytes, fields_in: int, sent: Sequence[str]) -> float:
        """Write the frame, the board's delay, the longest plausible reply at the baud rate (x1.5), a margin."""
        s = self.settings
        echo_guess = len(param) + 2 + sum(len(v) + 1 for v in sent) + len(TERMINATOR)
        data_guess = len(param) + 2 + (fields_in - 1) * VALUE_WIDTH_GUESS + len(TERMINATOR)
        reply_bytes = max(echo_guess, data_guess)
        return (len(frame) + 1.5 * reply_bytes) * s.char_s + s.reply_delay_s + s.timeout_margin_s

    def transact(self, param: str, type_char: str, values: Sequence[str], fields_out: int, fields_in: int,
                 timeout_s: float | None = None) -> Reply:
        """One attempt. Raises TransactionFailed (nothing applied; safe to repeat) or PortLost."""
        frame = build_frame(param, type_char, values)
        deadline_s = timeout_s or self.default_timeout(param, frame, fields_in, values)
        with self._bus:
            port = self._port
            if port is None:
                raise PortLost(f"{self.settings.url} is not open")
            try:
                port.reset_input_buffer()  # type: ignore[attr-defined]  # types-pyserial: not on SerialBase, on every port
                started = time.monotonic()
                port.write(frame)
                raw, last_byte_at = self._read_reply(port, started + deadline_s)
            except (serial.SerialException, OSError) as exc:
                raise self._lost(exc) from None
            try:
                kind, reply_values = parse_reply(raw, param, values, fields_out, fields_in)
            except TransactionFailed as failure:
                failure.sent = frame
                self._learn_late_release(started)
                self._wait_quiet(port, param)
                raise
            try:
                self._acknowledge(port, param, fields_out, last_byte_at, self._margin_for(param, values))
            except (serial.SerialException, OSError) as exc:
                raise self._lost(exc) from None
            self._applied[param] = tuple(values)
            return Reply(param, kind, reply_values, time.monotonic() - started, raw)

    def _margin_for(self, param: str, values: Sequence[str]) -> float:
        """The extra wait before this `a`: the release margin unless the `a` only repeats what the board has."""
        repeats = param not in self.settings.action_params and self._applied.get(param) == tuple(values)
        return self.late_margin_s if repeats else max(self.late_margin_s, self.settings.release_margin_s)

    def _learn_late_release(self, frame_started: float) -> None:
        """A frame that failed right behind an unmargined `a` most likely hit a board still holding the line:
        from now on every `a` waits the release margin."""
        last = self._last_ack_unmargined_at
        if last is not None and frame_started - last < self.settings.release_margin_s + 0.05:
            self.late_margin_s = self.settings.release_margin_s
            self._applied.clear()  # that `a` may have been lost too

    def _read_reply(self, port: serial.SerialBase, deadline: float) -> tuple[bytes, float]:
        """Read until the terminator; stop at the deadline, or when a started reply goes quiet without it.

        The line counts as quiet only from what a read saw, never from the clock alone: a reader descheduled for
        longer than the reply gap (a loaded machine) finds the rest of the reply waiting, and must read it before
        judging the reply unfinished or late."""
        received = bytearray()
        last_byte_at = time.monotonic()
        while TERMINATOR not in received:
            looked_at = time.monotonic()  # an empty read proves the line was quiet at least until here
            chunk = port.read(max(1, port.in_waiting))  # type: ignore[attr-defined]  # as above
            if chunk:
                received += chunk
                last_byte_at = time.monotonic()
                continue
            if looked_at >= deadline:
                break
            if received and looked_at - last_byte_at >= self.settings.reply_gap_s:
                break
        return bytes(received), last_byte_at

    def _acknowledge(self, port: serial.SerialBase, param: str, fields_out: int, last_byte_at: float,
                     margin_s: float) -> None:
        """The board still drives the line for its hold time after the reply; an `a` sent into that collides."""
        s = self.settings
        _sleep_until(last_byte_at + s.hold_for(param) + s.guard_s + margin_s)
        ack = build_ack(param, fields_out)
        written = time.monotonic()
        port.write(ack)
        port.flush()
        # The board applies when the `a` has been received: return only once it is on the wire.
        _sleep_until(written + len(ack) * s.char_s + s.guard_s)
        self._still_there(port)
        self._last_ack_unmargined_at = time.monotonic() if margin_s < s.release_margin_s else None

    def _still_there(self, port: serial.SerialBase) -> None:
        """Raise (SerialException/OSError) if the port vanished around the `a`: a write into a socket whose peer has
        just closed still succeeds, so without this look an `a` that no board received would be reported applied.
        The board sends nothing after an `a`; anything read here is stray and dropped (the next transaction would).
        Only what is waiting is read, without touching the port's timeout (on a tty that would mean a tcsetattr)."""
        # a socket whose peer closed reads as ready: the read then raises (in_waiting: pyserial's stub lacks it)
        waiting = port.in_waiting  # type: ignore[attr-defined]
        if waiting:
            port.read(waiting)

    def _wait_quiet(self, port: serial.SerialBase, param: str) -> None:
        """After a failed reply, let the board finish and release the line before anyone sends again."""
        quiet_needed = self.settings.hold_for(param) + self.settings.guard_s + self.settings.char_s
        give_up = time.monotonic() + 2.0 + quiet_needed
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < give_up and time.monotonic() - quiet_since < quiet_needed:
                if port.read(max(1, port.in_waiting)):  # type: ignore[attr-defined]  # as above
                    quiet_since = time.monotonic()
        except (serial.SerialException, OSError):
            pass  # the next transaction (or the probe) reports the port
