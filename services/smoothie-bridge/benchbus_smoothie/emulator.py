"""A Smoothieboard (OT-2 build, grbl mode) stand-in speaking the real bytes over TCP or a pty.

Faithful where the real board and the simple Opentrons stand-in differ (opentrons-ot2.md sections 1.2, 1.5-1.7):
- CR becomes LF, and every line (empty ones too) is answered with `ok`, so `G0 X1 \\r\\n\\r\\n` gets four;
- `G90`/`G91` and `F` are honoured; moves take the time their distance, max speed and acceleration imply, run on a
  motion queue (acked at once), and `M400` acks only when the queue is empty; `G28.2`, `G4` and `G38.2` block;
- homing runs to the max switch and backs off by the retract distance; `G28.6` flags; `M119` switch states;
- HALT: a limit-enabled axis reaching its switch while it moves raises `ALARM: Hard limit +<axis>`, the queue is
  flushed, and until `M999` everything but the allowed M-codes answers `error:Alarm lock`; homing without a switch
  is `ALARM: Homing fail`; a probe that touches nothing is `ALARM: Probe fail`; `kill()` is the kill input;
- pipette EEPROM (`M369`-`M372`) with configurable pipettes;
- fault injection: silence, garbled replies, a dropped ack, a spurious limit alarm mid-move, the port closing.

In tests: `emu = SmoothieEmulator(speedup=200); url = emu.start_tcp()` (`socket://127.0.0.1:<port>` for pyserial),
then `emu.lines` (the G-code log), `emu.position`, `emu.homed`, `emu.inject("silence")`, `emu.drop_port(0.5)`,
`emu.stop()`. From a shell: `benchbus-smoothie-emulator --tcp 9996` or `--pty` (prints the device path);
`--control-port PORT` adds the JSON HTTP interface of `emulator_control.py` for tests in another process.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import math
import os
import queue
import re
import socket
import sys
import threading
import time
import tty
from dataclasses import dataclass

from benchbus.control import run_until_signalled

log = logging.getLogger("benchbus.smoothie.emulator")

AXES = ("X", "Y", "Z", "A", "B", "C")
DEFAULT_VERSION = ("Build version: edge-66ec883NOMSD, Build date: Jan 28 2018 15:26:57, MCU: LPC1769, "
                   "System Clock: 120MHz\r\n  CNC Build   NOMSD Build\r\n6 axis")
ALLOWED_WHILE_HALTED = {2, 5, 9, 30, 80, 81, 105, 106, 107, 114, 119, 503, 911, 999, 112}
FAULTS = ("silence", "garble", "drop_ok", "limit_alarm", "close")
KILL_MESSAGE = "ALARM: Kill button pressed - reset or M999 to continue"
DEFAULT_PIPETTES = {"left": ("p300_single_v2.1", "P3HSV2120200101"), "right": ("p20_multi_v2.0", "P20MV2020200101")}


@dataclass
class AxisConfig:
    """Firmware config of one axis (opentrons-ot2.md 1.9, [S3] config.default)."""

    homing_position: float
    max_travel: float
    retract: float
    fast_mm_s: float
    slow_mm_s: float
    limit_enable: bool


def default_axes() -> dict[str, AxisConfig]:
    return {
        "X": AxisConfig(421, 430, 3, 100, 8, True),
        "Y": AxisConfig(353, 370, 0, 100, 5, False),  # Y has no hard limit in the OT config
        "Z": AxisConfig(220, 230, 2, 60, 5, True),
        "A": AxisConfig(220, 230, 2, 60, 5, True),
        "B": AxisConfig(20, 30, 2, 25, 2, True),
        "C": AxisConfig(20, 30, 2, 25, 2, True),
    }


def trapezoid_time(distance: float, speed: float, acceleration: float) -> float:
    """Seconds to travel `distance` from rest to rest with a speed limit and an acceleration."""
    if distance <= 0 or speed <= 0:
        return 0.0
    if acceleration <= 0:
        return distance / speed
    ramp = speed * speed / acceleration  # the distance spent speeding up and slowing down
    if distance >= ramp:
        return distance / speed + speed / acceleration
    return 2 * math.sqrt(distance / acceleration)


@dataclass
class Segment:
    start: dict[str, float]
    end: dict[str, float]
    duration: float
    alarm: str | None = None  # raised when the segment reaches `alarm_at` (fraction of it)
    alarm_at: float = 1.0
    on_done: object = None  # called with True when finished, False when halted


class Motion:
    """The motion queue: segments run in real time on a thread of their own; the position is interpolated."""

    def __init__(self, on_alarm):
        self._on_alarm = on_alarm
        self._cond = threading.Condition()
        self._queue: collections.deque[Segment] = collections.deque()
        self._current: Segment | None = None
        self._current_started = 0.0
        self._position = {axis: 0.0 for axis in AXES}
        self._closed = False
        self.moved_s = 0.0  # wall time spent moving so far (motion time / speedup): the floor of a client's run
        threading.Thread(target=self._run, name="smoothie-emu-motion", daemon=True).start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def enqueue(self, segment: Segment) -> None:
        with self._cond:
            self._queue.append(segment)
            self._cond.notify_all()

    def planned_end(self) -> dict[str, float]:
        """Where the queue will leave the machine (the start of the next queued move)."""
        with self._cond:
            if self._queue:
                return dict(self._queue[-1].end)
            if self._current is not None:
                return dict(self._current.end)
            return dict(self._position)

    def position(self) -> dict[str, float]:
        with self._cond:
            return self._now_position()

    def _now_position(self) -> dict[str, float]:
        if self._current is None:
            return dict(self._position)
        segment = self._current
        elapsed = time.monotonic() - self._current_started
        fraction = 1.0 if segment.duration <= 0 else min(1.0, elapsed / segment.duration)
        return {a: segment.start[a] + (segment.end[a] - segment.start[a]) * fraction for a in AXES}

    def set_position(self, values: dict[str, float]) -> None:
        with self._cond:
            self._position.update(values)

    def busy(self) -> bool:
        with self._cond:
            return self._current is not None or bool(self._queue)

    def wait_idle(self, halted: threading.Event) -> None:
        with self._cond:
            while (self._current is not None or self._queue) and not self._closed:
                self._cond.wait(0.05)

    def flush(self) -> None:
        """HALT: stop where the machine is now, drop the queue."""
        with self._cond:
            self._position = self._now_position()
            for segment in [self._current, *self._queue]:
                if segment is not None and callable(segment.on_done):
                    segment.on_done(False)
            self._current = None
            self._queue.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._queue:
                    self._cond.wait(0.2)
                    continue
                segment = self._queue.popleft()
                segment.start = dict(self._position)  # the segment starts where the last one ended
                self._current, self._current_started = segment, time.monotonic()
                stop_at = segment.alarm_at if segment.alarm else 1.0
                deadline = self._current_started + segment.duration * stop_at
                while self._current is segment and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._current is not segment:
                    continue  # flushed by a halt
                self._position = {a: segment.start[a] + (segment.end[a] - segment.start[a]) * stop_at for a in AXES}
                self.moved_s += segment.duration * stop_at
                self._current = None
                self._cond.notify_all()
                if segment.alarm:
                    self._queue.clear()
                    alarm = segment.alarm
                    self._cond.release()
                    try:
                        if callable(segment.on_done):
                            segment.on_done(False)
                        self._on_alarm(alarm)
                    finally:
                        self._cond.acquire()
                elif callable(segment.on_done):
                    segment.on_done(True)


class SmoothieEmulator:
    def __init__(self, speedup: float = 1.0, echo: bool = False, baud: int | None = None,
                 pipettes: dict[str, tuple[str, str] | None] | None = None, version: str = DEFAULT_VERSION,
                 axes: dict[str, AxisConfig] | None = None):
        self.speedup = max(speedup, 1e-6)
        self.echo = echo
        self.baud = baud
        self.version = version
        self.axes = axes or default_axes()
        self.lines: list[str] = []  # every non-empty line received, as received (trimmed)
        self.halted = threading.Event()
        self.homed = {axis: False for axis in AXES}
        self.engaged = {axis: False for axis in AXES}
        self.absolute = True
        self.feed_mm_min = 24000.0
        self.max_speeds = {"X": 600.0, "Y": 400.0, "Z": 125.0, "A": 125.0, "B": 40.0, "C": 40.0}
        self.acceleration = {"X": 3000.0, "Y": 2000.0, "Z": 1500.0, "A": 1500.0, "B": 200.0, "C": 200.0}
        self.steps_per_mm = {"X": 80.0, "Y": 80.0, "Z": 400.0, "A": 400.0, "B": 768.0, "C": 768.0}
        self.currents = {axis: 0.0 for axis in AXES}
        self.pressed: dict[str, bool] = {}  # switches held by hand (tests)
        self.disconnected_switches: set[str] = set()
        self.probe_surfaces: dict[str, float] = {}  # axis -> coordinate where the probe touches
        self.eeprom: dict[str, dict[str, bytes]] = {"L": {}, "R": {}}
        for mount, entry in (DEFAULT_PIPETTES if pipettes is None else pipettes).items():
            self.set_pipette(mount, entry)
        self._faults: dict[str, int] = {}
        self._mute_empty_lines = False
        self._motion = Motion(self._raise_alarm)
        self._lines_in: queue.Queue = queue.Queue()
        self._out_lock = threading.Lock()
        self._out_buffer = bytearray()
        self._conn: _SocketConnection | _PtyConnection | None = None  # the connection replies go to
        self._conn_lock = threading.Lock()
        self._server: socket.socket | None = None
        self._pty: tuple[int, int] | None = None
        self._stopped = threading.Event()
        self.port: int | None = None
        self.pty_path: str | None = None
        threading.Thread(target=self._process_loop, name="smoothie-emu-process", daemon=True).start()

    # -- test-facing state ---------------------------------------------------------------------------------------

    @property
    def position(self) -> dict[str, float]:
        return {axis: round(value, 4) for axis, value in self._motion.position().items()}

    @property
    def moved_s(self) -> float:
        """Wall seconds the axes have spent moving (the motion time at this speedup)."""
        return self._motion.moved_s

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"socket://127.0.0.1:{self.port}"
        if self.pty_path is not None:
            return self.pty_path
        raise RuntimeError("the emulator is not started")

    def codes(self) -> list[str]:
        """Every G/M code received, one per entry (a line may carry several)."""
        return [code for line in self.lines for code in split_codes(line)]

    def clear_log(self) -> None:
        self.lines.clear()

    def inject(self, kind: str, count: int = 1) -> None:
        """Arm a fault for the next `count` lines it applies to: silence, garble, drop_ok, limit_alarm, close."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        self._faults[kind] = self._faults.get(kind, 0) + count

    def clear_faults(self) -> None:
        self._faults.clear()
        self._mute_empty_lines = False

    def set_pipette(self, mount: str, entry: tuple[str, str] | None) -> None:
        letter = {"left": "L", "right": "R"}[mount]
        self.eeprom[letter] = {} if entry is None else {"model": entry[0].encode(), "id": entry[1].encode()}

    def kill(self) -> None:
        """The kill (halt) input asserted."""
        self._halt(KILL_MESSAGE)

    def reset(self) -> None:
        """The reset line: the board reboots; positions and flags are lost."""
        self._motion.flush()
        self._motion.set_position({axis: 0.0 for axis in AXES})
        self.halted.clear()
        self.homed = {axis: False for axis in AXES}
        self.engaged = {axis: False for axis in AXES}
        self.absolute = True

    # -- transports ----------------------------------------------------------------------------------------------

    def start_tcp(self, port: int = 0, host: str = "127.0.0.1") -> str:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(4)
        self._server = server
        self.port = server.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="smoothie-emu-accept", daemon=True).start()
        return self.url

    def start_pty(self, link: str | None = None) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are, like a UART
        self._pty = (master, slave)  # keeping the slave open: reads of the master never see EIO between clients
        self.pty_path = os.ttyname(slave)
        if link:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(self.pty_path, link)
        conn = _PtyConnection(master)
        with self._conn_lock:
            self._conn = conn
        threading.Thread(target=self._read_loop, args=(conn,), name="smoothie-emu-pty", daemon=True).start()
        return self.pty_path

    def drop_port(self, down_s: float = 0.5) -> None:
        """The TCP port closes, the open connection with it (a cable pulled), and listens again after `down_s`."""
        server, self._server = self._server, None
        if server is None:
            return
        host, port = server.getsockname()[:2]
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept loop, which then ends
        server.close()
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        timer = threading.Timer(down_s, self._listen_again, args=(host, port))
        timer.daemon = True
        timer.start()

    def _listen_again(self, host: str, port: int) -> None:
        if not self._stopped.is_set():
            self.start_tcp(port, host)

    def stop(self) -> None:
        self._stopped.set()
        self._motion.close()
        self._lines_in.put(None)
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if self._pty is not None:
            for fd in self._pty:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> SmoothieEmulator:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            server = self._server
            if server is None:  # stopped
                return
            try:
                sock, _ = server.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _SocketConnection(sock)
            with self._conn_lock:
                old, self._conn = self._conn, conn  # one UART: a new opener takes it over
            if old is not None:
                old.close()
            threading.Thread(target=self._read_loop, args=(conn,), name="smoothie-emu-conn", daemon=True).start()

    def _read_loop(self, conn) -> None:
        pending = ""
        while not self._stopped.is_set():
            data = conn.read()
            if not data:
                return
            for char in data.decode("ascii", errors="replace"):
                if char == "\x18":  # Ctrl-X: immediate halt, handled as it arrives
                    self._halt("ALARM: Abort during cycle")
                elif char == "?":  # real-time status query
                    self._write_now(self._status_report())
                else:
                    pending += "\n" if char == "\r" else char  # the firmware turns every CR into LF
            *complete, pending = pending.split("\n")
            for line in complete:
                if line.strip().upper().startswith("M112"):
                    self._halt(None)  # emergency stop takes effect at once, before queued lines
                self._lines_in.put((conn, line))

    # -- output --------------------------------------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        with self._out_lock:
            self._out_buffer += text.encode("ascii", errors="replace")

    def _flush(self) -> None:
        with self._out_lock:
            data, self._out_buffer = bytes(self._out_buffer), bytearray()
            if not data:
                return
            if self.baud:
                time.sleep(len(data) * 10 / self.baud)  # the wire time of 8N1
            with self._conn_lock:
                conn = self._conn
            if conn is not None:
                conn.write(data)

    def _write_now(self, text: str) -> None:
        self._emit(text)
        self._flush()

    def _raise_alarm(self, message: str) -> None:
        self._halt(message)

    def _halt(self, message: str | None) -> None:
        self.halted.set()
        self._motion.flush()
        self.engaged = {axis: False for axis in AXES}
        if message:
            self._write_now(message + "\r\n")

    def _status_report(self) -> str:
        p = self.position
        state = "Alarm" if self.halted.is_set() else ("Run" if self._motion.busy() else "Idle")
        return f"<{state}|MPos:{p['X']:.4f},{p['Y']:.4f},{p['Z']:.4f}|WPos:{p['X']:.4f},{p['Y']:.4f},{p['Z']:.4f}>\r\n"

    # -- line processing -----------------------------------------------------------------------------------------

    def _process_loop(self) -> None:
        while True:
            item = self._lines_in.get()
            if item is None:
                return
            conn, line = item
            with self._conn_lock:
                current = self._conn
            if conn is not current:
                continue  # left over from a connection that was replaced
            try:
                self._process_line(line)
            except Exception as exc:  # a stand-in must never die of its input
                log.exception("emulator failed on %r", line)
                self._emit(f"error:{exc}\r\n")
            if self._lines_in.empty():
                self._flush()  # one write per burst: the leftover oks travel with the ack, as on the wire

    def _take_fault(self, kind: str) -> bool:
        if self._faults.get(kind, 0) > 0:
            self._faults[kind] -= 1
            return True
        return False

    def _process_line(self, line: str) -> None:
        text = line.strip()
        if not text:
            if not self._mute_empty_lines:
                self._emit("ok\r\n")
            return
        self.lines.append(text)
        self._mute_empty_lines = False
        if self._take_fault("close"):
            with self._conn_lock:
                conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
            return
        if self._take_fault("silence"):
            self._mute_empty_lines = True
            return
        if self.echo:
            self._emit(text + "\r\n")
        reply, acked = self._execute_line(text)
        if reply is not None and self._take_fault("garble"):
            reply = garbled(reply)
        if self._take_fault("drop_ok"):
            self._mute_empty_lines = True
            if reply is not None:
                self._emit(reply + "\r\n")
            return
        if reply is not None and reply.startswith("ok "):
            self._emit(reply + "\r\n")  # M114.2, M112: the text rides on the line's own ok
        elif reply is not None:
            self._emit(reply + "\r\n")
            if acked:
                self._emit("ok\r\n")
        elif acked:
            self._emit("ok\r\n")

    def _execute_line(self, text: str) -> tuple[str | None, bool]:
        """(reply text or None, whether the line gets its ok)."""
        if text[0].islower():
            return self._shell(text)
        replies = []
        for code in split_codes(text):
            word = code.split()[0].upper()
            if self.halted.is_set() and not self._allowed_while_halted(word):
                return "error:Alarm lock", False
            reply = self._execute(word, code)
            if reply is not None:
                if reply.startswith("error") or reply.startswith("ALARM"):
                    return reply, reply.startswith("ALARM")
                replies.append(reply)
        return (" ".join(replies) if replies else None), True

    @staticmethod
    def _allowed_while_halted(word: str) -> bool:
        if not word.startswith("M"):
            return False
        try:
            return int(float(word[1:])) in ALLOWED_WHILE_HALTED
        except ValueError:
            return False

    def _shell(self, text: str) -> tuple[str | None, bool]:
        command = text.split()[0]
        if command == "version":
            return self.version, True
        return f"error:Unsupported command - {command}", False

    def _execute(self, word: str, code: str) -> str | None:
        args = parse_words(code)
        handler = {
            "G0": self._g0, "G1": self._g0, "G4": self._g4, "G28.2": self._g28_2, "G28.6": self._g28_6,
            "G38.2": self._g38_2, "G90": self._g90, "G91": self._g91, "M18": self._m18, "M84": self._m18,
            "M92": self._m92, "M112": self._m112, "M114": self._m114, "M114.1": self._m114, "M114.2": self._m114,
            "M119": self._m119, "M203.1": self._m203_1, "M204": self._m204, "M907": self._m907,
            "M365.0": self._m365, "M365.1": self._m365, "M365.2": self._m365, "M365.3": self._m365,
            "M369": self._m369, "M371": self._m371, "M370": self._m370, "M372": self._m372, "M400": self._m400,
            "M999": self._m999,
        }.get(word)
        if handler is not None:
            return handler(code, args)
        if word.startswith("G28"):
            return "error:Unsupported command"
        return None  # the firmware acks codes it does not know

    # motion -------------------------------------------------------------------------------------------------------

    def _axis_time(self, axis: str, distance: float, speed: float | None = None) -> float:
        limit = self.max_speeds[axis]
        if axis in ("X", "Y", "Z"):
            limit = min(limit, self.feed_mm_min / 60)
        if speed is not None:
            limit = min(limit, speed)
        return trapezoid_time(abs(distance), limit, self.acceleration[axis]) / self.speedup

    def _limit_crossing(self, start: dict[str, float], end: dict[str, float]) -> tuple[float, str] | None:
        """The first switch a limit-enabled axis would reach while moving toward max (fraction, alarm)."""
        hits = []
        for axis in AXES:
            config = self.axes[axis]
            delta = end[axis] - start[axis]
            if config.limit_enable and delta > 0 and end[axis] >= config.homing_position > start[axis] - 1e-9:
                hits.append(((config.homing_position - start[axis]) / delta, f"ALARM: Hard limit +{axis}"))
        return min(hits) if hits else None

    def _g0(self, _code: str, args: dict[str, float]) -> None:
        if "F" in args:
            self.feed_mm_min = args["F"]
        moves = {axis: args[axis] for axis in AXES if axis in args}
        if not moves:
            return None
        start = self._motion.planned_end()
        end = dict(start)
        for axis, value in moves.items():
            end[axis] = value if self.absolute else start[axis] + value
        duration = max(self._axis_time(axis, end[axis] - start[axis]) for axis in moves)
        segment = Segment(start, end, duration)
        crossing = self._limit_crossing(start, end)
        if crossing is not None:
            segment.alarm_at, segment.alarm = crossing
        elif self._take_fault("limit_alarm"):
            axis = next(iter(moves))
            sign = "+" if end[axis] >= start[axis] else "-"
            segment.alarm_at, segment.alarm = 0.5, f"ALARM: Hard limit {sign}{axis}"
        for axis in moves:
            self.engaged[axis] = True
        self._motion.enqueue(segment)
        return None

    def _wait_idle(self) -> None:
        self._flush()  # what came before is on the wire while the board blocks
        self._motion.wait_idle(self.halted)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.halted.is_set() and not self._stopped.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.02))

    def _g4(self, _code: str, args: dict[str, float]) -> None:
        self._wait_idle()
        self._sleep(args.get("P", 0.0) / self.speedup)  # grbl mode: P is seconds
        return None

    def _m400(self, _code: str, _args) -> None:
        self._wait_idle()
        return None

    def _g28_2(self, code: str, _args) -> str | None:
        letters = [c for c in "".join(code.split()[1:]).upper() if c in AXES] or list(AXES)
        self._wait_idle()
        start = self._motion.position()
        end, duration, failed = dict(start), 0.0, False
        for axis in letters:
            config = self.axes[axis]
            if axis in self.disconnected_switches:
                end[axis] = start[axis] + config.max_travel  # runs the whole max travel, never triggers
                failed = True
                seconds = config.max_travel / config.fast_mm_s
            else:
                end[axis] = config.homing_position - config.retract
                seconds = (abs(config.homing_position - start[axis]) / config.fast_mm_s
                           + config.retract / config.fast_mm_s + 2 * config.retract / config.slow_mm_s)
            duration = max(duration, seconds / self.speedup)
            self.engaged[axis] = True
        done = threading.Event()
        outcome: list[bool] = []

        def finished(ok: bool) -> None:
            outcome.append(ok)
            done.set()
        segment = Segment(start, end, duration, on_done=finished)
        if failed:
            segment.alarm = "ALARM: Homing fail"
        self._motion.enqueue(segment)
        self._wait_idle()
        if failed or not (outcome and outcome[0]):
            if failed:
                self.homed = {axis: False for axis in AXES}  # a homing failure clears the flags
            return None
        for axis in letters:
            self.homed[axis] = True
        return None

    def _g28_6(self, _code: str, _args) -> str:
        return " ".join(f"{axis}:{int(self.homed[axis])}" for axis in AXES) + " "

    def _g38_2(self, code: str, args: dict[str, float]) -> str | None:
        axis = next((a for a in ("X", "Y", "Z", "A") if a in args), None)
        if axis is None:
            return "error:probe needs an X, Y, Z or A target"
        self._wait_idle()
        start = self._motion.position()
        target = args[axis] if self.absolute else start[axis] + args[axis]
        end = dict(start, **{axis: target})
        speed = args.get("F", 420.0) / 60
        duration = self._axis_time(axis, target - start[axis], speed)
        surface = self.probe_surfaces.get(axis)
        touches = surface is not None and min(start[axis], target) <= surface <= max(start[axis], target)
        if touches and surface is not None:
            fraction = 0.0 if target == start[axis] else (surface - start[axis]) / (target - start[axis])
            end[axis] = surface
            duration *= fraction
        segment = Segment(start, end, duration)
        if not touches:
            segment.alarm = "ALARM: Probe fail"
        self.engaged[axis] = True
        self._motion.enqueue(segment)
        self._wait_idle()
        if not touches:
            self.homed = {a: False for a in AXES}  # a probing failure clears the flags
            return None
        p = self._motion.position()
        return f"[PRB:{p['X']:.3f},{p['Y']:.3f},{p['Z']:.3f}:1]"

    def _g90(self, _code, _args) -> None:
        self.absolute = True

    def _g91(self, _code, _args) -> None:
        self.absolute = False

    # settings -----------------------------------------------------------------------------------------------------

    def _m18(self, code: str, _args) -> None:
        letters = [c for c in "".join(code.split()[1:]).upper() if c in AXES] or list(AXES)
        for axis in letters:
            self.engaged[axis] = False

    def _m92(self, _code, args: dict[str, float]) -> str:
        for axis in AXES:
            if axis in args:
                self.steps_per_mm[axis] = args[axis]
        return " ".join(f"{axis}:{self.steps_per_mm[axis]:.6f}" for axis in AXES) + " "

    def _m203_1(self, _code, args) -> None:
        for axis in AXES:
            if axis in args:
                self.max_speeds[axis] = args[axis]

    def _m204(self, _code, args) -> None:
        for axis in AXES:
            if axis in args:
                self.acceleration[axis] = args[axis]

    def _m907(self, _code, args) -> None:
        for axis in AXES:
            if axis in args:
                self.currents[axis] = args[axis]

    def _m365(self, code: str, args: dict[str, float]) -> str:
        sub = code.split()[0].split(".")[1]
        if sub == "2":
            return f"E updated {args.get('O', 0):.2f}" if "O" in args else "Error, no value specified"
        given = [axis for axis in AXES if axis in args]
        if not given:
            return "Error, no axis specified"
        words = []
        for axis in given:
            field = {"0": "homing_position", "1": "max_travel", "3": "retract"}[sub]
            setattr(self.axes[axis], field, args[axis])
            words.append(f"{axis} updated {args[axis]:.2f}")
        return " ".join(words)

    def _m112(self, _code, _args) -> str:
        self._halt(None)
        return "ok Emergency Stop Requested - reset or M999 required"

    def _m114(self, _code, _args) -> str:
        p = self._motion.position()
        return "ok MCS: " + " ".join(f"{axis}:{p[axis]:.4f}" for axis in AXES)

    def _m119(self, _code, _args) -> str:
        position = self._motion.position()
        states = {axis: int(self._switch_pressed(axis, position)) for axis in AXES}
        probe = any(abs(position[a] - s) < 1e-3 for a, s in self.probe_surfaces.items())
        return (" ".join(f"{axis}_max:{states[axis]}" for axis in AXES)
                + " pins- (XL)P1.24:{X} (YL)P1.26:{Y} (ZL)P1.28:{Z} (AL)P1.25:{A} (BL)P1.27:{B} (CL)P1.29:{C}"
                .format(**states)
                + f" Probe: {int(probe)}")

    def _switch_pressed(self, axis: str, position: dict[str, float]) -> bool:
        if axis in self.pressed:
            return self.pressed[axis]
        return axis not in self.disconnected_switches and position[axis] >= self.axes[axis].homing_position - 1e-6

    def _eeprom_read(self, code: str, field: str) -> str:
        letter = (code.split()[1:] or [""])[0].upper()
        if letter not in self.eeprom:
            return "error:no instrument found"
        memory = self.eeprom[letter]
        if not memory:
            return f"error:no {letter} instrument found"
        data = memory.get(field)
        if not data:
            return f"error:no data found on {letter} instrument"
        return f"{letter}:" + data.ljust(32, b"\x00")[:32].hex()

    def _eeprom_write(self, code: str, field: str) -> str | None:
        words = code.split()
        if len(words) < 3 or words[1].upper() not in self.eeprom:
            return "error:wrong number of bytes"
        letter = words[1].upper()
        if not self.eeprom[letter]:
            return f"error:no {letter} instrument found"
        try:
            self.eeprom[letter][field] = bytes.fromhex(words[2])
        except ValueError:
            return "error:wrong number of bytes"
        return None

    def _m369(self, code, _args) -> str:
        return self._eeprom_read(code, "id")

    def _m371(self, code, _args) -> str:
        return self._eeprom_read(code, "model")

    def _m370(self, code, _args) -> str | None:
        return self._eeprom_write(code, "id")

    def _m372(self, code, _args) -> str | None:
        return self._eeprom_write(code, "model")

    def _m999(self, _code, _args) -> str | None:
        if self.halted.is_set():
            self.halted.clear()
            return "WARNING: After HALT you should HOME as position is currently unknown"
        return None


# -- helpers ----------------------------------------------------------------------------------------------------------

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


def garbled(text: str) -> str:
    """Line noise in place of a reply: no ack, no `error`/`alarm` word, never parses as data."""
    noise = "".join(chr(0x21 + (ord(c) * 7) % 60) for c in text[:24])
    return noise.replace("ok", "0k").replace(":", "#") or "#~#"


class _SocketConnection:
    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._lock = threading.Lock()

    def read(self) -> bytes:
        try:
            return self._sock.recv(4096)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class _PtyConnection:
    def __init__(self, master: int):
        self._master = master

    def read(self) -> bytes:
        try:
            return os.read(self._master, 4096)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def close(self) -> None:
        pass  # a UART does not close; the pty lives as long as the emulator


def _pipette_arg(text: str) -> tuple[str, str] | None:
    if text.lower() == "none":
        return None
    model, _, serial_id = text.partition(":")
    if not model or not serial_id:
        raise argparse.ArgumentTypeError("expected MODEL:ID (e.g. p300_single_v2.1:P3HSV2120200101) or none")
    return model, serial_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchbus-smoothie-emulator", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on this TCP port (pyserial socket://)")
    where.add_argument("--pty", action="store_true", help="open a pseudo-terminal and print its path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--link", help="with --pty: make a symlink to the pty here")
    parser.add_argument("--speedup", type=float, default=1.0, help="motion runs this many times faster")
    parser.add_argument("--baud", type=int, default=115200, help="pace replies at this baud rate (0: no pacing)")
    parser.add_argument("--echo", action="store_true", help="echo each command line back, as some boards do")
    parser.add_argument("--left", type=_pipette_arg, default=DEFAULT_PIPETTES["left"], help="MODEL:ID or none")
    parser.add_argument("--right", type=_pipette_arg, default=DEFAULT_PIPETTES["right"], help="MODEL:ID or none")
    parser.add_argument("--control-port", type=int, help="a JSON HTTP interface on 127.0.0.1:PORT (state, faults)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    emulator = SmoothieEmulator(speedup=args.speedup, echo=args.echo, baud=args.baud or None,
                                pipettes={"left": args.left, "right": args.right})
    if args.pty:
        print(emulator.start_pty(args.link), flush=True)
    else:
        print(emulator.start_tcp(args.tcp, args.host), flush=True)
    if args.control_port is not None:
        from .emulator_control import serve_control
        serve_control(emulator, args.control_port)
        print(f"control on http://127.0.0.1:{args.control_port}/state", flush=True)
    return run_until_signalled(emulator.stop)


if __name__ == "__main__":
    sys.exit(main())
