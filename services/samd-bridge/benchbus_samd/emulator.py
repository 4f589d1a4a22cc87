"""A faithful stand-in for the eVOLVER's chain of SAMD21 boards on one half-duplex RS-485 line.

It speaks the real bytes (`<param><r|i|a>,<v1>,...,_!` in; `<param><b|e>,<v1>,...,end` out, no newline) on a TCP
port (pyserial opens `socket://127.0.0.1:<port>`) or a pty, with the real timing: every byte takes 10 bit times at
the baud rate, a board enables its driver, waits `reply_delay_s` (100 ms), sends, and holds the line `hold_s` (100 ms;
stir 300 ms) after its reply. Host bytes that reach the line while a board drives it are corrupted (half duplex).
Boards stage values on `r`/`i` and apply them only on `a`. Unknown addresses get no answer (like `lxml`).

API for tests of any service (in-process):

    from benchbus_samd.emulator import SamdEmulator, LineTiming
    emu = SamdEmulator(LineTiming(baudrate=230400, reply_delay_s=0.002, hold_s=0.002, stir_hold_s=0.004))
    port = emu.start_tcp(port=0)              # -> TCP port; the bridge's URL is f"socket://127.0.0.1:{port}"
    path = emu.start_pty(link=tmp / "ttySAMD")  # or a pty; the link survives drop_port() (a new pty each time)
    emu.staged("stir"), emu.applied("stir")   # list[str] (applied starts at the firmware defaults)
    emu.acks("stir")                          # `a` frames the stir board accepted
    emu.wait_applied("stir", values, timeout=2)  # True once applied == values (no sleeps in tests)
    emu.frames("stir")                        # ReceivedFrame(t, param, type, values, text) the boards understood
    emu.wire                                  # WireEvent log: every byte run on the line, both directions
    LineTiming.fast(), DEFAULT_PARAMS         # fast test timing; param -> (default values, fields_out, fields_in)
    emu.physical_limit_s(events)              # bytes on the wire at the baud rate + turnaround delays
    emu.first_byte_times                      # monotonic time of each host frame's first byte (latency benches)
    emu.inject("od_90", "garbled", probability=1.0, count=1)   # kinds: FAULT_KINDS; count=None: until cleared
    emu.inject_random(0.05)                   # any reply fault on any param, 5 % of transactions
    emu.clear_faults()
    emu.drop_port(down_s=0.5)                 # the port closes and comes back
    emu.pumps_running(), emu.pump_programs()  # which of the 48 pumps runs now, and their programs
    emu.late_release_s = 0.02                 # boards release the line 20 ms after their nominal hold
    emu.close()

Growing cultures (benchbus_samd.culture): `SamdEmulator(timing, rig=Rig(RigCalibration.from_evolver(cal_json)),
time_scale=1440)` (a day in a minute); `emu.culture()` (each vial's true od, volume, temperature, growth rate),
`emu.pump_events()` (every pump program applied), `emu.model_time()`.

As a program: `benchbus-samd-emulator --tcp PORT` or `--pty [--link PATH]` (options: --baud, --reply-delay,
--hold, --stir-hold, --fault PARAM:KIND[:PROB], --control-port PORT for a small JSON HTTP interface:
GET /state, GET /frames?param=P, GET /culture, POST /fault {param, kind, probability, count}, POST /clear,
POST /drop {down_s}), --late-release S, --calibrations FILE (cultures grow) with --time-scale X, --mu-max, --od0.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import itertools
import json
import math
import os
import random
import select
import socket
import sys
import termios
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Callable

from benchbus.control import run_until_signalled, serve_json_control

from .culture import CultureParams, Rig, RigCalibration

if TYPE_CHECKING:
    from .culture_boards import PumpEvent, RigClock

VIALS = 16
PUMPS = 48
OUT_TERMINATOR = b"_!"
IN_TERMINATOR = "end"
INPUT_LIMIT = 2000  # the firmware clears its input buffer when it grows past this

# The default eVOLVER conf's params: values the DPU sends by default, fields out and in (conf.yml's counts).
DEFAULT_PARAMS: dict[str, tuple[list[str], int, int]] = {
    "od_90": (["1000"], 2, 17),
    "od_135": (["1000"], 2, 17),
    "od_led": (["4095"] * VIALS, 17, 17),
    "temp": (["4095"] * VIALS, 17, 17),
    "stir": (["8"] * VIALS, 17, 17),
    "pump": (["--"] * PUMPS, 49, 49),
}

FAULT_KINDS = ("garbled", "truncated", "no_end", "field_count", "wrong_address", "silence", "stray_burst",
               "bad_char", "echo_mismatch", "port_close")
# What the bridge should call each fault (for tests).
FAULT_ERROR_KIND = {
    "garbled": "garbled", "truncated": "no_terminator", "no_end": "no_terminator", "field_count": "field_count_in",
    "wrong_address": "wrong_address", "silence": "timeout", "stray_burst": "garbled",
    "bad_char": "bad_response_char", "echo_mismatch": "echo_mismatch",
}


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


@dataclass
class _Fault:
    kind: str
    probability: float
    count: int | None


def escape(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data)


# -- boards --------------------------------------------------------------------------------------------------------


class Board:
    """One address on the line. `fields` counts the frame's comma-separated fields including `<param><type>`."""

    kind = "echo"  # "echo" replies `e` with the values, "data" replies `b` with readings

    def __init__(self, address: str, fields: int, default: list[str]):
        self.address = address
        self.fields = fields
        self.staged: list[str] | None = None
        self.applied: list[str] = list(default)
        self.acks = 0

    def stage(self, values: list[str], now: float) -> None:
        self.staged = list(values)

    def apply(self, now: float) -> None:
        if self.staged is not None:
            self.applied = list(self.staged)
            self.on_applied(now)
        self.acks += 1

    def on_applied(self, now: float) -> None:
        pass

    def reply_values(self, now: float) -> list[str]:
        return list(self.staged or [])


class OdBoard(Board):
    """Samples its 16 photodiodes continuously, one vial at a time, averaging N reads; answers from the last
    completed averages (so the values have different ages, up to one sweep)."""

    kind = "data"

    def __init__(self, address: str, rng: random.Random, adc_sample_s: float, started: float):
        super().__init__(address, 2, ["1000"])
        self.adc_sample_s = adc_sample_s
        self.base = [rng.randint(30000, 62000) for _ in range(VIALS)]
        self.seed = rng.randint(0, 2**31)
        self.sweep_start = started

    def samples(self) -> int:
        try:
            return max(1, int(float(self.applied[0])))
        except ValueError:
            return 1000

    def on_applied(self, now: float) -> None:
        self.sweep_start = now  # a new N restarts the round robin

    def reply_values(self, now: float) -> list[str]:
        per_vial = self.samples() * self.adc_sample_s
        done = int((now - self.sweep_start) / per_vial)  # vial averages completed since the sweep start
        values = []
        for vial in range(VIALS):
            sweep = (done - vial - 1) // VIALS  # the last sweep in which this vial completed (-1: before start)
            noise = random.Random(self.seed * 1_000_003 + sweep * 131 + vial).randint(-150, 150)
            values.append(str(max(0, min(65535, self.base[vial] + noise))))
        return values


class TempBoard(Board):
    """Setpoints are raw thermistor ADC counts (4095 ~ heater off; lower = hotter). Readings follow a first-order
    model towards the setpoint; the heater can only heat, so the target never goes above the ambient reading."""

    kind = "data"

    def __init__(self, rng: random.Random, tau_s: float, started: float, ambient_raw: int = 2070):
        super().__init__("temp", 17, ["4095"] * VIALS)
        self.tau_s = tau_s
        self.ambient_raw = ambient_raw
        self.start = [float(ambient_raw + rng.randint(-10, 10)) for _ in range(VIALS)]
        self.since = started
        self.rng = rng

    def _target(self, vial: int) -> float:
        try:
            setpoint = float(self.applied[vial])
        except (ValueError, IndexError):
            setpoint = 4095.0
        return min(setpoint, float(self.ambient_raw))

    def readings(self, now: float) -> list[float]:
        decay = math.exp(-max(0.0, now - self.since) / self.tau_s)
        return [self._target(v) + (self.start[v] - self._target(v)) * decay for v in range(VIALS)]

    def apply(self, now: float) -> None:
        self.start = self.readings(now)  # continue the curve from where it is
        self.since = now
        super().apply(now)

    def reply_values(self, now: float) -> list[str]:
        return [str(int(round(r)) + self.rng.randint(-2, 2)) for r in self.readings(now)]


@dataclass
class PumpProgram:
    kind: str  # "once", "chemostat", "ipp"
    start: float
    on_s: float = 0.0
    period_s: float = 0.0
    hz: float = 0.0
    ipp: int = 0
    solenoid: int = 0
    spec: str = ""

    def running(self, at: float) -> bool:
        if at < self.start:
            return False
        if self.kind == "once":
            return at < self.start + self.on_s
        if self.kind == "chemostat":
            return (at - self.start) % self.period_s < self.on_s
        return self.hz > 0


class PumpBoard(Board):
    """48 pumps: 0-15 IN1, 16-31 efflux, 32-47 IN2. Each field: `--` (leave), `t` (run once t s; 0 stops),
    `t|p` (run t s every p s; an identical re-sent `t|p` is ignored), `hz|n|s` (IPP n, solenoid s at hz)."""

    def __init__(self):
        super().__init__("pump", PUMPS + 1, ["--"] * PUMPS)
        self.programs: list[PumpProgram | None] = [None] * PUMPS
        self.rejected: list[tuple[int, str]] = []

    def on_applied(self, now: float) -> None:
        for index, spec in enumerate(self.applied[:PUMPS]):
            try:
                self._program(index, spec, now)
            except ValueError:
                self.rejected.append((index, spec))  # the firmware ignores what it cannot parse

    def _program(self, index: int, spec: str, now: float) -> None:
        if spec == "--":
            return
        parts = spec.split("|")
        current = self.programs[index]
        if len(parts) == 1:
            seconds = float(parts[0])
            self.programs[index] = PumpProgram("once", now, on_s=seconds, spec=spec) if seconds > 0 else None
        elif len(parts) == 2:
            if current is not None and current.kind == "chemostat" and current.spec == spec:
                return  # re-sent identical chemostat program: keep its phase
            on_s, period_s = float(parts[0]), float(parts[1])
            if period_s < 0:
                raise ValueError(spec)
            if period_s == 0:  # the firmware's interval 0: no repeat, so `t|0` runs once and `0|0` stops
                self.programs[index] = PumpProgram("once", now, on_s=on_s, spec=spec) if on_s > 0 else None
                return
            self.programs[index] = PumpProgram("chemostat", now, on_s=on_s, period_s=period_s, spec=spec)
        elif len(parts) == 3:
            hz, ipp, solenoid = float(parts[0]), int(parts[1]), int(parts[2])
            self.programs[index] = (PumpProgram("ipp", now, hz=hz, ipp=ipp, solenoid=solenoid, spec=spec)
                                    if hz > 0 else None)
        else:
            raise ValueError(spec)


def default_boards(rng: random.Random, now: float, adc_sample_s: float, temp_tau_s: float) -> dict[str, Board]:
    """The default eVOLVER: od_90, od_135 + od_led (one board), temp, stir, pump."""
    boards: list[Board] = [
        OdBoard("od_90", rng, adc_sample_s, now),
        OdBoard("od_135", rng, adc_sample_s, now),
        Board("od_led", 17, ["4095"] * VIALS),
        TempBoard(rng, temp_tau_s, now),
        Board("stir", 17, ["8"] * VIALS),
        PumpBoard(),
    ]
    return {b.address: b for b in boards}


# -- timed actions -------------------------------------------------------------------------------------------------


class _Timeline:
    """Runs callables at monotonic times on one thread (byte pacing, port coming back)."""

    def __init__(self):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="samd-emulator-timeline", daemon=True)
        self._thread.start()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(None if not self._heap else self._heap[0][0] - now)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception as exc:  # a failing action must not stop the line
                print(f"samd emulator: timed action failed: {exc!r}", file=sys.stderr)


# -- transports ----------------------------------------------------------------------------------------------------


class _TcpTransport:
    """A TCP port on which every connected client is on the same bus (a probe connecting and leaving is harmless)."""

    def __init__(self, host: str, port: int, on_bytes: Callable[[bytes], None]):
        self.host = host
        self.port = port
        self.on_bytes = on_bytes
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.generation = 0

    def open(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self.generation += 1
        threading.Thread(target=self._accept, args=(listener,), name="samd-emulator-accept", daemon=True).start()
        return self.port

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._clients.add(client)
            threading.Thread(target=self._read, args=(client,), name="samd-emulator-read", daemon=True).start()

    def _read(self, client: socket.socket) -> None:
        while True:
            try:
                data = client.recv(4096)
            except OSError:
                data = b""
            if not data:
                with self._lock:
                    self._clients.discard(client)
                client.close()
                return
            self.on_bytes(data)

    def write(self, data: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.sendall(data)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            clients, self._clients = list(self._clients), set()
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def describe(self) -> str:
        return f"socket://{self.host}:{self.port}"


class _PtyTransport:
    """A pty; with `link`, a stable symlink to the current slave (a new pty each time the port comes back)."""

    def __init__(self, link: Path | None, on_bytes: Callable[[bytes], None]):
        self.link = Path(link) if link else None
        self.on_bytes = on_bytes
        self.master = self.slave = -1
        self.path = ""
        self._stop_r = self._stop_w = -1
        self.generation = 0

    def open(self) -> str:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        attrs = termios.tcgetattr(self.slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.path = os.ttyname(self.slave)
        if self.link is not None:
            temporary = self.link.with_name(self.link.name + ".new")
            temporary.unlink(missing_ok=True)
            os.symlink(self.path, temporary)
            os.replace(temporary, self.link)
        self._stop_r, self._stop_w = os.pipe()
        self.generation += 1
        threading.Thread(target=self._read, args=(self.master, self._stop_r), name="samd-emulator-pty",
                         daemon=True).start()
        return str(self.link or self.path)

    def _read(self, master: int, stop: int) -> None:
        while True:
            ready, _, _ = select.select([master, stop], [], [])
            if stop in ready:
                return
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if data:
                self.on_bytes(data)

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.master, data)

    def close(self) -> None:
        if self.master < 0:
            return
        os.write(self._stop_w, b"x")
        for fd in (self.master, self.slave, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self.slave = -1
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.link or self.path)


# -- the line ------------------------------------------------------------------------------------------------------


class SamdEmulator:
    def __init__(self, timing: LineTiming | None = None, seed: int = 1, adc_sample_s: float = 0.43e-3,
                 temp_tau_s: float = 600.0, boards: dict[str, Board] | None = None, rig: Rig | None = None,
                 time_scale: float = 1.0, late_release_s: float = 0.0):
        self.timing = timing or LineTiming()
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed + 1)
        self._lock = threading.RLock()
        # a board that releases the line this much later than its nominal hold (firmware and UART latency vary)
        self.late_release_s = late_release_s
        self.rig = rig  # cultures that grow (benchbus_samd.culture); None: the static readings
        self.rig_clock: RigClock | None = None
        if rig is not None and boards is None:
            from .culture_boards import culture_boards  # it builds on this module's boards
            boards, self.rig_clock = culture_boards(rig, time.monotonic(), time_scale)
        self.boards = boards or default_boards(self._rng, time.monotonic(), adc_sample_s, temp_tau_s)
        self._faults: dict[str, list[_Fault]] = {}
        self._random_fault: tuple[float, tuple[str, ...]] | None = None
        self._input = bytearray()
        self._frame_started: float | None = None
        self._host_wire_until = 0.0
        self._board_windows: list[tuple[float, float]] = []  # when a board drives the line
        self._received: list[ReceivedFrame] = []
        self.wire: list[WireEvent] = []
        self.first_byte_times: list[float] = []
        self.faults_fired: list[tuple[str, str]] = []
        self.ignored: list[bytes] = []  # frames no board accepted (unknown address, wrong field count, corrupted)
        self._timeline = _Timeline()
        self._transport: _TcpTransport | _PtyTransport | None = None
        self._generation = 0
        self._closed = False

    # -- starting ------------------------------------------------------------------------------------------------

    def start_tcp(self, port: int = 0, host: str = "127.0.0.1") -> int:
        transport = _TcpTransport(host, port, self._on_bytes)
        self._transport = transport
        return transport.open()

    def start_pty(self, link: str | Path | None = None) -> str:
        transport = _PtyTransport(Path(link) if link else None, self._on_bytes)
        self._transport = transport
        return transport.open()

    @property
    def url(self) -> str:
        return self._transport.describe() if self._transport else ""

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()
        self._timeline.close()

    def __enter__(self) -> SamdEmulator:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- what tests look at --------------------------------------------------------------------------------------

    def staged(self, param: str) -> list[str] | None:
        with self._lock:
            staged = self.boards[param].staged
            return list(staged) if staged is not None else None

    def applied(self, param: str) -> list[str]:
        with self._lock:
            return list(self.boards[param].applied)

    def acks(self, param: str) -> int:
        with self._lock:
            return self.boards[param].acks

    def wait_applied(self, param: str, values: list, timeout: float = 2.0) -> bool:
        wanted = [str(v) for v in values]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.applied(param) == wanted:
                return True
            time.sleep(0.005)
        return self.applied(param) == wanted

    def frames(self, param: str | None = None, type: str | None = None) -> list[ReceivedFrame]:
        with self._lock:
            return [f for f in self._received if (param is None or f.param == param)
                    and (type is None or f.type == type)]

    def pump_programs(self) -> list[PumpProgram | None]:
        with self._lock:
            return list(self.boards["pump"].programs)  # type: ignore[attr-defined]

    def pumps_running(self, at: float | None = None) -> list[int]:
        at = time.monotonic() if at is None else at
        return [i for i, p in enumerate(self.pump_programs()) if p is not None and p.running(at)]

    def culture(self) -> list[dict]:
        """Each vial's true state now (od, volume_ml, temp_c, influx_ml, efflux_ml, max_volume_ml, overflowed,
        growth_rate_per_h); empty without a rig."""
        with self._lock:
            if self.rig is None or self.rig_clock is None:
                return []
            self.rig_clock.sync(time.monotonic())
            return self.rig.snapshot()

    def model_time(self) -> float:
        """Model seconds since the start (monotonic time through the time scale)."""
        return self.rig_clock.model_time(time.monotonic()) if self.rig_clock is not None else time.monotonic()

    def pump_events(self) -> list[PumpEvent]:
        """Every pump program the culture pump board applied (real and model time, pump, spec)."""
        with self._lock:
            return list(getattr(self.boards["pump"], "events", []))

    def physical_limit_s(self, events: list[WireEvent] | None = None) -> float:
        """Every byte of `events` at the baud rate, plus each reply's turnaround (delay before, hold after)."""
        events = self.wire if events is None else events
        total = 0.0
        for event in events:
            total += self.timing.wire_s(len(event.data))
            if event.source == "board" and event.param is not None:
                total += self.timing.reply_delay_s + self.timing.hold_for(event.param) + self.late_release_s
        return total

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "url": self.url,
                "boards": {name: {"staged": b.staged, "applied": b.applied, "acks": b.acks}
                           for name, b in self.boards.items()},
                "pumps_running": self.pumps_running(),
                "frames": len(self._received),
                "faults_fired": len(self.faults_fired),
                "ignored": len(self.ignored),
            }

    # -- fault injection -----------------------------------------------------------------------------------------

    def inject(self, param: str, kind: str, probability: float = 1.0, count: int | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
        if param not in self.boards:
            raise ValueError(f"no board answers {param!r}")
        if kind == "echo_mismatch" and self.boards[param].kind != "echo":
            raise ValueError(f"{param} replies with data, it has no echo to corrupt")
        with self._lock:
            self._faults.setdefault(param, []).append(_Fault(kind, probability, count))

    def inject_random(self, probability: float, kinds: tuple[str, ...] | None = None) -> None:
        """Every transaction on any board fails with `probability`, with a kind drawn from `kinds`."""
        chosen = kinds or tuple(k for k in FAULT_KINDS if k not in ("port_close", "echo_mismatch"))
        with self._lock:
            self._random_fault = (probability, chosen)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random_fault = None

    def _draw_fault(self, board: Board) -> str | None:
        for fault in self._faults.get(board.address, []):
            if self._fault_rng.random() < fault.probability:
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults[board.address].remove(fault)
                return fault.kind
        if self._random_fault is not None:
            probability, kinds = self._random_fault
            if self._fault_rng.random() < probability:
                return self._fault_rng.choice(kinds)
        return None

    def drop_port(self, down_s: float = 0.5) -> None:
        """The port closes (clients see it vanish) and comes back after `down_s`."""
        transport = self._transport
        if transport is None:
            return
        with self._lock:
            self._generation += 1
            self._input.clear()
            self._frame_started = None
        transport.close()
        self._timeline.at(time.monotonic() + down_s, self._reopen)

    def _reopen(self) -> None:
        if not self._closed and self._transport is not None:
            self._transport.open()

    # -- the line: bytes from the host ---------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self._trim_logs()
            start = max(now, self._host_wire_until)
            end = start + self.timing.wire_s(len(data))
            self._host_wire_until = end
            received, corrupted = self._through_line(data, start)
            self.wire.append(WireEvent(start, end, "host", None, bytes(data), corrupted))
            char_s = self.timing.char_s
            for offset, byte in enumerate(received):
                if self._frame_started is None:
                    self._frame_started = start + offset * char_s
                    self.first_byte_times.append(now)
                self._input.append(byte)
                if byte == ord("!"):
                    frame_end = start + (offset + 1) * char_s
                    self._on_frame(bytes(self._input), frame_end)
                    self._input.clear()
                    self._frame_started = None
                elif len(self._input) > INPUT_LIMIT:
                    self.ignored.append(bytes(self._input))
                    self._input.clear()
                    self._frame_started = None

    def _trim_logs(self, keep: int = 50_000) -> None:
        """A long-running emulator keeps only the recent history."""
        for log in (self.wire, self._received, self.first_byte_times, self.ignored, self.faults_fired):
            if len(log) > 2 * keep:
                del log[:-keep]

    def _through_line(self, data: bytes, start: float) -> tuple[bytes, bool]:
        """A host byte sent while a board drives the line collides and arrives corrupted."""
        char_s = self.timing.char_s
        self._board_windows = [w for w in self._board_windows if w[1] > start - 1.0]
        out = bytearray(data)
        corrupted = False
        for index in range(len(out)):
            byte_start = start + index * char_s
            byte_end = byte_start + char_s
            if any(a < byte_end and byte_start < b for a, b in self._board_windows):
                out[index] = out[index] ^ 0xA5 | 0x80
                corrupted = True
        return bytes(out), corrupted

    def _on_frame(self, raw: bytes, frame_end: float) -> None:
        text = raw.decode("latin-1")
        board, head_at = self._addressed_board(text)
        if board is None:
            self.ignored.append(raw)
            return
        body = text[head_at:]
        kind = body[len(board.address)]
        if body.count(",") != board.fields or not body.endswith(",_!"):
            self.ignored.append(raw)  # evolver_si: the comma count must be the board's own
            return
        values = body[:-3].split(",")[1:]
        self._received.append(ReceivedFrame(frame_end, board.address, kind, values, body))
        if kind == "a":
            board.apply(frame_end)
            return
        board.stage(values, frame_end)
        self._reply(board, frame_end, kind)

    def _addressed_board(self, text: str) -> tuple[Board | None, int]:
        for address in sorted(self.boards, key=len, reverse=True):
            at = text.find(address)
            while at >= 0:
                after = at + len(address)
                if after + 1 < len(text) and text[after] in "ria" and text[after + 1] == ",":
                    return self.boards[address], at
                at = text.find(address, at + 1)
        return None, -1

    # -- the line: bytes from a board ----------------------------------------------------------------------------

    def _reply(self, board: Board, frame_end: float, request_kind: str) -> None:
        fault = self._draw_fault(board)
        if fault is not None:
            self.faults_fired.append((board.address, fault))
        if fault == "port_close":
            self._timeline.at(frame_end, lambda: self.drop_port(0.3))
            return
        if fault == "silence":
            return
        values = board.reply_values(frame_end)
        response = "b" if board.kind == "data" else "e"
        address = board.address
        if fault == "wrong_address":
            address = next(a for a in self.boards if a != board.address)
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
        start = frame_end + self.timing.reply_delay_s
        if fault == "stray_burst":
            burst = bytes(self._fault_rng.randrange(256) for _ in range(6)) + b"\x00\xff"
            self._send(burst, frame_end + self.timing.reply_delay_s / 2, None)
            start = max(start, frame_end + self.timing.reply_delay_s / 2 + self.timing.wire_s(len(burst)))
        end = self._send(reply, start, board.address)
        self._board_windows.append((frame_end, end + self.timing.hold_for(board.address) + self.late_release_s))

    def _send(self, data: bytes, start: float, param: str | None) -> float:
        """Put `data` on the line from `start` on, each byte delivered when its last bit has been sent."""
        char_s = self.timing.char_s
        end = start + self.timing.wire_s(len(data))
        self.wire.append(WireEvent(start, end, "board", param, data))
        generation = self._generation
        per_slice = max(1, int(0.002 / char_s))  # deliver in ~2 ms slices
        for first in range(0, len(data), per_slice):
            piece = data[first:first + per_slice]
            due = start + (first + len(piece)) * char_s
            self._timeline.at(due, functools.partial(self._deliver, piece, generation))
        return end

    def _deliver(self, piece: bytes, generation: int) -> None:
        if generation == self._generation and self._transport is not None:
            self._transport.write(piece)


# -- the program ---------------------------------------------------------------------------------------------------


def _control_server(emulator: SamdEmulator, port: int):
    def frames(query: dict) -> dict:  # ?param=stir: every frame that board understood, oldest first
        return {"frames": [{"t": f.t, "param": f.param, "type": f.type, "values": f.values}
                           for f in emulator.frames(query.get("param"))]}

    post = {
        "/fault": lambda body: emulator.inject(body["param"], body["kind"], float(body.get("probability", 1.0)),
                                               body.get("count")),
        "/clear": lambda _body: emulator.clear_faults(),
        "/drop": lambda body: emulator.drop_port(float(body.get("down_s", 0.5))),
    }
    return serve_json_control("samd-emulator", "127.0.0.1", port,
                              get={"/state": lambda _query: emulator.snapshot(), "/frames": frames,
                                   "/culture": lambda _query: {"model_s": emulator.model_time(),
                                                               "vials": emulator.culture()}},
                              post=post)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchbus-samd-emulator", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on 127.0.0.1:PORT (0 = any free port)")
    where.add_argument("--pty", action="store_true", help="open a pty (its path is printed)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--link", type=Path, help="with --pty: keep a symlink to the pty here")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--reply-delay", type=float, default=0.1)
    parser.add_argument("--hold", type=float, default=0.1)
    parser.add_argument("--stir-hold", type=float, default=0.3)
    parser.add_argument("--temp-tau", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault", action="append", default=[], metavar="PARAM:KIND[:PROB]")
    parser.add_argument("--control-port", type=int, help="a JSON HTTP interface on 127.0.0.1:PORT")
    parser.add_argument("--late-release", type=float, default=0.0, metavar="S",
                        help="boards release the line this long after their nominal hold")
    parser.add_argument("--calibrations", type=Path, metavar="FILE",
                        help="an eVOLVER calibrations.json: cultures grow, and the boards report the raw values its "
                             "active fits map to the true OD and degrees C")
    parser.add_argument("--time-scale", type=float, default=1.0, help="model seconds per real second (cultures)")
    parser.add_argument("--mu-max", type=float, default=CultureParams.mu_max_per_h, help="growth rate, 1/h")
    parser.add_argument("--od0", type=float, default=CultureParams.od0, help="the inoculum's OD")
    args = parser.parse_args(argv)
    timing = LineTiming(args.baud, args.reply_delay, args.hold, args.stir_hold)
    rig = None
    if args.calibrations is not None:
        try:
            calibration = RigCalibration.from_evolver(json.loads(args.calibrations.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--calibrations {args.calibrations}: {exc}")
        rig = Rig(calibration, CultureParams(mu_max_per_h=args.mu_max, od0=args.od0), temp_tau_s=args.temp_tau,
                  seed=args.seed)
    emulator = SamdEmulator(timing, seed=args.seed, temp_tau_s=args.temp_tau, rig=rig, time_scale=args.time_scale,
                            late_release_s=args.late_release)
    try:
        for spec in args.fault:
            param, kind, *probability = spec.split(":")
            emulator.inject(param, kind, float(probability[0]) if probability else 1.0)
    except ValueError as exc:
        parser.error(str(exc))
    if args.tcp is not None:
        port = emulator.start_tcp(args.tcp, args.host)
        print(f"samd emulator on socket://{args.host}:{port} at {args.baud} baud", flush=True)
    else:
        path = emulator.start_pty(args.link)
        print(f"samd emulator on {path} at {args.baud} baud", flush=True)
    if args.control_port is not None:
        _control_server(emulator, args.control_port)
        print(f"control on http://127.0.0.1:{args.control_port}/state", flush=True)
    return run_until_signalled(emulator.close)


if __name__ == "__main__":
    sys.exit(main())
