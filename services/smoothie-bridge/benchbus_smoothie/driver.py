"""The Smoothieboard conversation of the OT-2 (reference: opentrons-ot2.md section 1). No MQTT here.

Three layers, bottom up:
- pure helpers: line framing, response stripping, error classification and the reply parsers;
- `SerialLink`: one request/ack exchange over pyserial (any URL: /dev/ttyAMA0, socket://host:port, a pty), with
  the input cleared before each write and close-reopen-resend retries;
- `SmoothieDriver`: the OT-2's use of the board: boot setup, currents around moves, plunger backlash, the homing
  sequence, `M400` after every motion command, and the alarm recovery. It keeps the position, homed, engaged and
  current tables as the board last reported them; every public method holds one lock, so exchanges never interleave.
"""
from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable

import serial

log = logging.getLogger("benchbus.smoothie.driver")

AXES: tuple[str, ...] = ("X", "Y", "Z", "A", "B", "C")
ALPHABETICAL: tuple[str, ...] = ("A", "B", "C", "X", "Y", "Z")  # the order the OT-2 driver writes axis letters in
PLUNGERS = ("B", "C")
MOUNT_LETTER = {"left": "L", "right": "R"}
MOUNT_AXIS = {"left": "Z", "right": "A"}
PLUNGER_AXIS = {"left": "B", "right": "C"}
# Firmware defaults (reference 1.9): the mount backs off 2 mm after homing, the plunger homes at 20 mm.
MOUNT_RETRACT_MM = 2.0
PLUNGER_HOMING_POSITION_MM = 20.0
ACK = b"ok\r\nok\r\n"
TERMINATOR = "\r\n\r\n"
BACKLASH_MM = 0.3
CURRENT_SETTLE = "G4 P0.005"

# Homing timeouts (reference 1.3): G28.2 acks only when homing ends, so its ack timeout is long and its M400 short.
HOME_ACK_TIMEOUT_S = {"X": 418 / 80 * 2, "Y": 353 / 80 * 2, "Y_slow": 3 / 8 * 2}
HOME_ACK_TIMEOUT_LONG_S = 12000.0
HOME_M400_TIMEOUT_S = 5.0

CURRENT_TABLES = {
    # board revision "2.1" (OG) and UNKNOWN: (active, dwelling)
    "2.1": ({"X": 1.25, "Y": 1.25, "Z": 0.8, "A": 0.8, "B": 0.05, "C": 0.05},
            {"X": 0.3, "Y": 0.3, "Z": 0.1, "A": 0.1, "B": 0.05, "C": 0.05}),
    # refresh boards (rev A/B/C)
    "default": ({"X": 1.25, "Y": 1.25, "Z": 0.5, "A": 0.5, "B": 0.05, "C": 0.05},
                {"X": 0.7, "Y": 0.7, "Z": 0.1, "A": 0.1, "B": 0.05, "C": 0.05}),
}
DEFAULT_STEPS_PER_MM = {"X": 80.0, "Y": 80.0, "Z": 400.0, "A": 400.0, "B": 768.0, "C": 768.0}
DEFAULT_MAX_SPEEDS = {"X": 600.0, "Y": 400.0, "Z": 125.0, "A": 125.0, "B": 40.0, "C": 40.0}
DEFAULT_ACCELERATION = {"X": 3000.0, "Y": 2000.0, "Z": 1500.0, "A": 1500.0, "B": 200.0, "C": 200.0}
DEFAULT_ACCELERATION_S = 10000.0
DEFAULT_SPEED = 400.0  # mm/s, sent as G0 F24000


# -- errors ---------------------------------------------------------------------------------------------------------

class SmoothieError(Exception):
    """The board said something other than a plain ack. `raw` is its text, for the reply's detail."""

    def __init__(self, message: str, raw: str = "", command: str = ""):
        super().__init__(message)
        self.message = message
        self.raw = raw
        self.command = command


class AlarmResponse(SmoothieError):
    """The reply contains `alarm` (e.g. `ALARM: Hard limit +X`): the board is halted."""


class ErrorResponse(SmoothieError):
    """The reply contains `error`."""


class AlarmLock(ErrorResponse):
    """`error:Alarm lock`: the board was already halted, so the command did not run."""


class NoResponse(SmoothieError):
    """No ack within the timeout after every retry (the board is silent, or the port is gone)."""


class ParseError(SmoothieError):
    """A reply that does not have the expected shape; `raw` holds it."""


class Halted(SmoothieError):
    """A halt (the kill input) interrupted this command."""


class MotionAlarm(SmoothieError):
    """An alarm during a move or probe; the recovery (M999, G28.6, home the named axis) has run."""

    def __init__(self, message: str, raw: str, command: str, axis: str | None, homed_axes: list[str]):
        super().__init__(message, raw, command)
        self.axis = axis
        self.homed_axes = homed_axes


# -- framing and parsing (pure) ---------------------------------------------------------------------------------------

def fmt(value: float) -> str:
    """A number as the OT-2 driver writes it: rounded to 3 decimals, no trailing zeros (100, 100.3, 0.005)."""
    text = f"{round(float(value), 3):.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def axes_words(values: dict[str, float]) -> str:
    return " ".join(f"{axis}{fmt(values[axis])}" for axis in ALPHABETICAL if axis in values)


def frame(command: str) -> bytes:
    """`G28.2 X` -> b'G28.2 X \\r\\n\\r\\n'; the empty command (the boot ping) -> b'\\r\\n\\r\\n'."""
    return ((command + " ") if command else "").encode("ascii") + TERMINATOR.encode("ascii")


def strip_response(raw: bytes | str, command: str) -> str:
    """The board's text: acks removed, the echoed command removed, line breaks removed, trimmed (reference 1.2)."""
    text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else raw
    text = text.replace(ACK.decode(), "")
    if command:
        text = text.replace(command, "")
        for token in command.split():
            if len(token) > 1:  # single letters (L, R) prefix data and must stay
                text = text.replace(token, "")
    return text.replace("\r", "").replace("\n", "").strip()


def classify(text: str, command: str) -> SmoothieError | None:
    """The error a stripped reply carries, if any: alarm before error, case-insensitive (reference 1.4)."""
    if not text:
        return None
    first_of_reply, first_of_command = text.split()[0], (command.split() or [""])[0]
    if first_of_command and first_of_reply == first_of_command:
        return None  # an echo of the command is not an error
    lowered = text.lower()
    if "alarm lock" in lowered:
        return AlarmLock(text, text, command)
    if "alarm" in lowered:
        return AlarmResponse(text, text, command)
    if "error" in lowered:
        return ErrorResponse(text, text, command)
    return None


_PAIR = re.compile(r"(\S+):(\S+)")


def parse_position(text: str) -> dict[str, float]:
    """`ok MCS: X:418.0000 Y:353.0000 Z:218.0000 A:218.0000 B:19.0000 C:19.0000` -> {X: 418.0, ...}."""
    pairs = _PAIR.findall(text)
    values: dict[str, float] = {}
    for key, value in pairs:
        key = key.title()
        if key in AXES:
            try:
                values[key] = round(float(value), 3)
            except ValueError:
                raise ParseError(f"position value {key}:{value} is not a number", text) from None
    if len(pairs) < 6 or set(values) != set(AXES):
        raise ParseError("position reply does not list all six axes", text)
    return values


def parse_switches(text: str) -> dict[str, bool]:
    """`X_max:0 ... C_max:0 pins- (XL)P1.24:0 ... Probe: 0` -> {X: False, ..., Probe: False}."""
    found: dict[str, bool] = {}
    for key, value in _PAIR.findall(text.replace("Probe: ", "Probe:")):
        if "max" not in key and "Probe" not in key:
            continue
        name = key.split("_")[0]
        if value not in ("0", "1"):
            raise ParseError(f"switch {key}:{value} is neither 0 nor 1", text)
        found[name] = value == "1"
    if set(found) != set(AXES) | {"Probe"}:
        raise ParseError("switch reply does not list X, Y, Z, A, B, C and Probe", text)
    return found


def parse_homed(text: str) -> dict[str, bool]:
    """`X:1 Y:0 Z:0 A:0 B:0 C:0` -> {X: True, Y: False, ...}; all six keys are required."""
    found: dict[str, bool] = {}
    for key, value in _PAIR.findall(text):
        if key in AXES and value in ("0", "1"):
            found[key] = value == "1"
    if set(found) != set(AXES):
        raise ParseError("homing-status reply does not list all six axes as 0 or 1", text)
    return found


def parse_version(text: str) -> str:
    """`Build version: edge-66ec883NOMSD, Build date: ...` -> `edge-66ec883`."""
    if ":" not in text or "," not in text.split(":", 1)[1]:
        raise ParseError("version reply has no 'Build version: <version>,'", text)
    version = text.split(":", 1)[1].split(",", 1)[0].strip().replace("NOMSD", "")
    if not version:
        raise ParseError("version reply names no version", text)
    return version


def parse_pipette_memory(text: str, mount_letter: str) -> str:
    """`L:<64 hex>` -> the ASCII text stored, cut at the first 0x00 or 0xFF."""
    prefix = f"{mount_letter}:"
    if not text.startswith(prefix):
        raise ParseError(f"pipette memory reply does not start with {prefix}", text)
    digits = text[len(prefix):].strip()
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        raise ParseError("pipette memory reply is not hex", text) from None
    for stop in (b"\x00", b"\xff"):
        data = data.split(stop, 1)[0]
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ParseError("pipette memory is not ASCII", text) from None


def normalise_model(model: str) -> str:
    """The driver's fix-ups: no `_v` -> `_v1`; `_v13` -> `_v1.3`."""
    if "_v" not in model:
        return model + "_v1"
    if model.endswith("_v13"):
        return model[:-1] + ".3"
    return model


def unsafe_to_repeat(command: str) -> bool:
    """A line that must never be sent twice: a home (homing twice, PR #4553) or a relative move (moves twice)."""
    words = command.split()
    return "G28.2" in words or "G91" in words or "G38.2" in words


def travel_check(targets: dict[str, float], travel: dict[str, tuple[float, float]]) -> list[str]:
    """Problems with targets outside an axis's travel (empty when all are inside)."""
    problems = []
    for axis, value in targets.items():
        low, high = travel[axis]
        if not (low <= value <= high):
            problems.append(f"{axis}={fmt(value)} is outside {axis}'s travel {fmt(low)}..{fmt(high)} mm")
    return problems


# -- the serial link --------------------------------------------------------------------------------------------------

class SerialLink:
    """One request/ack exchange at a time over a pyserial URL."""

    def __init__(self, url: str, baudrate: int = 115200, reopen_delay_s: float = 0.1):
        self.url = url
        self.baudrate = baudrate
        self.reopen_delay_s = reopen_delay_s
        self._port: serial.SerialBase | None = None
        self._write_lock = threading.Lock()  # the emergency-stop write may come from another thread

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
                    # leftover oks of the last exchange (types-pyserial: not on SerialBase, on every port class)
                    port.reset_input_buffer()  # type: ignore[attr-defined]
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

    def _read_reply(self, port: serial.SerialBase, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        buffer = bytearray()
        while True:
            if ACK in buffer:
                return bytes(buffer[: buffer.index(ACK) + len(ACK)])
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


# -- the OT-2's use of the board --------------------------------------------------------------------------------------

@dataclass
class DriverConfig:
    ack_timeout_s: float = 5.0
    retries: int = 3
    execute_timeout_s: float = 12000.0
    boot_timeout_s: float = 3.0
    probe_timeout_s: float = 30.0
    current_table: str = "2.1"
    steps_per_mm: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STEPS_PER_MM))
    max_speeds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_SPEEDS))
    acceleration: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ACCELERATION))
    default_speed: float = DEFAULT_SPEED
    recovery_pause_s: float = 0.1
    home_ack_timeout_cap_s: float | None = None  # caps the homing ack timeouts below (a test or a known-fast robot)


def expand_home_axes(axes: Iterable[str]) -> list[str]:
    """Y needs X home first, X needs the mounts (Z, A) up first; in the homing order ZABC, X, Y."""
    wanted = set(axes)
    if "Y" in wanted:
        wanted.add("X")
    if "X" in wanted:
        wanted.update(("Z", "A"))
    return [axis for axis in ("Z", "A", "B", "C", "X", "Y") if axis in wanted]


class SmoothieDriver:
    def __init__(self, link: SerialLink, config: DriverConfig | None = None):
        self.link = link
        self.config = config or DriverConfig()
        self.lock = threading.RLock()
        self.active, self.dwelling = (dict(t) for t in CURRENT_TABLES[self.config.current_table])
        self.current_now: dict[str, float] | None = None  # unknown until the first M907
        self.max_speeds = dict(self.config.max_speeds)
        self.position: dict[str, float] = {axis: 0.0 for axis in AXES}
        self.homed: dict[str, bool] = {axis: False for axis in AXES}
        self.engaged: dict[str, bool] = {axis: False for axis in AXES}
        self.firmware_raw = ""
        self.firmware_version = ""
        self.sent: Callable[[str], None] | None = None  # observer of every line written (debug logging)
        self._halting = threading.Event()
        self.tolerate_alarm_lock = False

    # -- exchanges ---------------------------------------------------------------------------------------------------

    def send(self, command: str, *, motion: bool = False, ack_timeout: float | None = None,
             motion_timeout: float | None = None, retries: int | None = None) -> str:
        """One command (and `M400` after it when `motion`); the board's text. Raises on alarm/error/silence."""
        with self.lock:
            if retries is None:
                retries = 0 if unsafe_to_repeat(command) else self.config.retries
            text = self._exchange(command, ack_timeout or self.config.ack_timeout_s, retries)
            if motion:
                self._exchange("M400", motion_timeout or self.config.execute_timeout_s, 0)
            return text

    def _exchange(self, command: str, timeout: float, retries: int) -> str:
        if self.sent is not None:
            self.sent(command)
        raw = self.link.exchange(command, timeout, retries)
        text = strip_response(raw, command)
        problem = classify(text, command)
        if problem is None:
            return text
        if self._halting.is_set():
            raise Halted(f"halted: {text}", text, command)
        if "after halt you should home" in text.lower() and not isinstance(problem, AlarmResponse):
            return text  # the warning M999 prints; not a failure
        if isinstance(problem, AlarmLock) and self.tolerate_alarm_lock:
            log.info("ignored %r to %r while recovering from a halt", text, command)
            return text
        if isinstance(problem, ErrorResponse) and "instrument found" in text.lower():
            log.info("%s: %s", command, text)
        raise problem

    # -- reads -------------------------------------------------------------------------------------------------------

    def _parsed(self, command: str, parser: Callable[[str], dict], attempts: int = 3):
        """Read and parse, retrying a reply that does not parse (reference: up to 3 times, 0.1 s apart)."""
        with self.lock:
            for attempt in range(attempts):
                text = self.send(command)
                try:
                    return parser(text)
                except ParseError as exc:
                    if attempt == attempts - 1:
                        raise ParseError(f"{command}: {exc.message}", exc.raw, command) from None
                    log.warning("%s: %s (raw %r); reading again", command, exc.message, exc.raw)
                    time.sleep(0.1)

    def read_position(self) -> dict[str, float]:
        with self.lock:
            self.position = self._parsed("M114.2", parse_position)
            return dict(self.position)

    def read_switches(self) -> dict[str, bool]:
        return self._parsed("M119", parse_switches)

    def read_homed(self) -> dict[str, bool]:
        with self.lock:
            self.homed = self._parsed("G28.6", parse_homed)
            return dict(self.homed)

    def read_version(self) -> str:
        with self.lock:
            text = self.send("version")
            self.firmware_version = parse_version(text)
            self.firmware_raw = text
            return self.firmware_version

    def read_pipette(self, mount: str, quiet_motors: bool = True) -> dict | None:
        """{'id', 'model'} of the pipette on `mount`, or None when there is none."""
        letter = MOUNT_LETTER[mount]
        with self.lock:
            if quiet_motors:  # motor noise disturbs the EEPROM's I2C (reference 1.6)
                self.send("M18 ZABC", motion=True)
                for axis in "ZABC":
                    self.engaged[axis] = False
                self.send("G4 P0.1", motion=True)
            try:
                pipette_id = parse_pipette_memory(self.send(f"M369 {letter}"), letter)
            except ErrorResponse as exc:
                if "instrument found" in exc.raw.lower():
                    return None
                raise
            try:
                model = normalise_model(parse_pipette_memory(self.send(f"M371 {letter}"), letter))
            except ErrorResponse as exc:
                if "no data found" in exc.raw.lower():
                    model = None
                else:
                    raise
            return {"id": pipette_id or None, "model": model or None}

    # -- boot --------------------------------------------------------------------------------------------------------

    def ping(self) -> None:
        with self.lock:
            self.send("", ack_timeout=self.config.boot_timeout_s, retries=0)
            self.send("M400", ack_timeout=self.config.boot_timeout_s, retries=0)

    def setup(self) -> None:
        """The boot sequence after a successful ping (reference 1.10)."""
        c = self.config
        with self.lock:
            self.clear_halt()
            self.read_homed()
            self.send("M92 " + axes_words({a: c.steps_per_mm[a] for a in ("X", "Y", "Z", "A")}), motion=True)
            self.send("M92 " + axes_words({a: c.steps_per_mm[a] for a in ("B", "C")}), motion=True)
            self.send("G90", motion=True)
            self.read_position()
            self.send("M203.1 " + axes_words(self.max_speeds), motion=True)
            self.send(f"G0 F{fmt(c.default_speed * 60)}", motion=True)
            self.send(f"M204 S{fmt(DEFAULT_ACCELERATION_S)} " + axes_words(c.acceleration), motion=True)
            self.read_version()

    def configure_pipette(self, mount: str, steps_per_mm: float, home_position: float,
                          travel_distance: float) -> None:
        """A pipette's mount settings (reference 5.3): plunger steps/mm, mount homing position, plunger max travel
        when homing. The steps/mm are kept so a re-setup after a halt sends them again, not the defaults."""
        mount_axis, plunger = MOUNT_AXIS[mount], PLUNGER_AXIS[mount]
        with self.lock:
            self.send(f"M92 {plunger}{fmt(steps_per_mm)}", motion=True)
            self.config.steps_per_mm[plunger] = steps_per_mm
            self.send(f"M365.0 {mount_axis}{fmt(home_position)}", motion=True)
            self.send(f"M365.1 {plunger}{fmt(travel_distance)}", motion=True)

    def clear_halt(self) -> str:
        with self.lock:
            return self.send("M999", motion=True)

    # -- currents ----------------------------------------------------------------------------------------------------

    def currents_prefix(self, wanted: dict[str, float]) -> str:
        """`M907 <all six> G4 P0.005 ` when the currents must change, else ''."""
        if self.current_now == wanted:
            return ""
        self.current_now = dict(wanted)
        return f"M907 {axes_words(wanted)} {CURRENT_SETTLE} "

    def moving_currents(self, moving: Iterable[str]) -> dict[str, float]:
        moving = set(moving)
        return {axis: (self.active[axis] if axis in moving else self.dwelling[axis]) for axis in AXES}

    def settle_currents(self, axes: Iterable[str]) -> None:
        """Drop these axes to their dwelling current (sent only if it changes anything)."""
        wanted = dict(self.current_now or self.dwelling)
        for axis in axes:
            wanted[axis] = self.dwelling[axis]
        prefix = self.currents_prefix(wanted)
        if prefix:
            self.send(prefix.strip(), motion=True)

    def set_currents(self, active: dict[str, float] | None, dwelling: dict[str, float] | None) -> None:
        with self.lock:
            self.active.update(active or {})
            self.dwelling.update(dwelling or {})
            self.settle_currents(dwelling or {})

    def set_max_speeds(self, speeds: dict[str, float]) -> None:
        with self.lock:
            self.send("M203.1 " + axes_words(speeds), motion=True)
            self.max_speeds.update(speeds)

    # -- motion ------------------------------------------------------------------------------------------------------

    def move(self, targets: dict[str, float], speed: float | None = None) -> dict[str, float]:
        """Absolute move; axes already at their target are left out. The position read back after."""
        with self.lock:
            moving = {axis: value for axis, value in targets.items()
                      if not math.isclose(self.position[axis], value, rel_tol=1e-5, abs_tol=1e-8)}
            if not moving:
                return dict(self.position)
            first = dict(moving)
            backlash = {a: v for a, v in moving.items() if a in PLUNGERS and v > self.position[a]}
            for axis, value in backlash.items():
                first[axis] = value + BACKLASH_MM  # overshoot up, come back down: takes the slack out
            words = []
            if speed is not None:
                words.append(f"G0 F{fmt(speed * 60)}")
            words.append("G0 " + axes_words(first))
            if backlash:
                words.append("G0 " + axes_words(backlash))
            if speed is not None:
                words.append(f"G0 F{fmt(self.config.default_speed * 60)}")
            line = self.currents_prefix(self.moving_currents(moving)) + " ".join(words)
            self._run_motion(line, moving, hint_axis=None)
            if set(moving) & set(PLUNGERS):
                self.settle_currents(PLUNGERS)
            return self.read_position()

    def _run_motion(self, line: str, axes: Iterable[str], hint_axis: str | None,
                    ack_timeout: float | None = None) -> str:
        try:
            text = self.send(line, motion=True, ack_timeout=ack_timeout)
        except AlarmResponse as alarm:
            alarm.command = line  # the alarm arrives on the M400; name the motion that caused it
            self.recover_from_alarm(alarm, hint_axis)  # raises MotionAlarm
            raise
        for axis in axes:
            self.engaged[axis] = True
        return text

    def recover_from_alarm(self, alarm: SmoothieError, hint_axis: str | None) -> None:
        """M999, refresh homed flags, home the axis the alarm names (never a guess), raise MotionAlarm."""
        log.warning("alarm during %r: %s; recovering", alarm.command, alarm.raw)
        time.sleep(self.config.recovery_pause_s)
        self.current_now = None  # the board dropped the motors at HALT
        self.tolerate_alarm_lock = True
        try:
            self.clear_halt()
        finally:
            self.tolerate_alarm_lock = False
        self.read_homed()
        named = alarm.raw.strip()[-1:].upper()
        axis = named if named in AXES else hint_axis
        homed_axes: list[str] = []
        if axis is not None:
            homed_axes = self.home([axis])
        else:
            self.read_position()
        raise MotionAlarm(alarm.raw, alarm.raw, alarm.command, axis, homed_axes)

    def home(self, axes: Iterable[str] | None = None) -> list[str]:
        """The OT-2 homing sequence (reference 1.11); the axes homed, in order."""
        with self.lock:
            order = expand_home_axes(axes if axes is not None else AXES)
            mounts_and_plungers = [a for a in order if a in ("Z", "A", "B", "C")]
            try:
                if mounts_and_plungers:
                    letters = "".join(a for a in ALPHABETICAL if a in mounts_and_plungers)
                    prefix = self.currents_prefix(self.moving_currents(mounts_and_plungers))
                    self._home_line(prefix + f"G28.2 {letters}", HOME_ACK_TIMEOUT_LONG_S, mounts_and_plungers)
                    self.settle_currents(mounts_and_plungers)
                if "X" in order:
                    self._home_x()
                if "Y" in order:
                    self._home_y()
            except AlarmResponse as alarm:
                self._clear_after_failed_home(alarm)
            self.read_position()
            self.read_homed()
            return order

    def _clear_after_failed_home(self, alarm: AlarmResponse) -> None:
        """A home that alarms (`ALARM: Homing fail`): clear the halt, refresh flags, never retry it here."""
        log.warning("alarm while homing (%r): %s", alarm.command, alarm.raw)
        self.current_now = None
        self.tolerate_alarm_lock = True
        try:
            self.clear_halt()
        finally:
            self.tolerate_alarm_lock = False
        self.read_homed()
        self.read_position()
        raise MotionAlarm(alarm.raw, alarm.raw, alarm.command, None, [])

    def _home_line(self, line: str, ack_timeout: float, axes: Iterable[str]) -> None:
        if self.config.home_ack_timeout_cap_s is not None:
            ack_timeout = min(ack_timeout, self.config.home_ack_timeout_cap_s)
        self.send(line, motion=True, ack_timeout=ack_timeout, motion_timeout=HOME_M400_TIMEOUT_S)
        for axis in axes:
            self.engaged[axis] = True

    def _home_x(self) -> None:
        self.send("M203.1 Y50", motion=True)
        backoff = dict(self.current_now or self.dwelling, Y=0.8)
        self.send(self.currents_prefix(backoff) + "G91 G0 Y-28 G0 Y10 G90", motion=True)
        self.send("M203.1 X80", motion=True)
        homing = dict(self.current_now or self.dwelling, X=self.active["X"], Y=self.dwelling["Y"])
        self._home_line(self.currents_prefix(homing) + "G28.2 X", HOME_ACK_TIMEOUT_S["X"], "X")
        self.send("M203.1 " + axes_words(self.max_speeds), motion=True)
        self.settle_currents(("X", "Y"))

    def _home_y(self) -> None:
        self.send("M203.1 Y80", motion=True)
        homing = dict(self.current_now or self.dwelling, Y=self.active["Y"])
        self._home_line(self.currents_prefix(homing) + "G28.2 Y", HOME_ACK_TIMEOUT_S["Y"], "Y")
        self.send("M203.1 Y8", motion=True)
        self.send("G91 G0 Y-3 G90", motion=True)
        self._home_line("G28.2 Y", HOME_ACK_TIMEOUT_S["Y_slow"], "Y")
        self.send("G91 G0 Y-3 G90", motion=True)
        self.send("M203.1 " + axes_words(self.max_speeds), motion=True)
        self.settle_currents(("Y",))

    def probe(self, axis: str, target: float, speed: float) -> dict[str, float]:
        """Probe toward `target` (absolute); a miss is `ALARM: Probe fail`, recovered by homing the axis."""
        with self.lock:
            line = self.currents_prefix(self.moving_currents([axis])) + f"G38.2 F{fmt(speed * 60)} {axis}{fmt(target)}"
            self._run_motion(line, [axis], hint_axis=axis, ack_timeout=self.config.probe_timeout_s)
            return self.read_position()

    def disengage(self, axes: Iterable[str]) -> dict[str, bool]:
        with self.lock:
            letters = "".join(a for a in ALPHABETICAL if a in set(axes))
            self.send(f"M18 {letters}", motion=True)
            for axis in letters:
                self.engaged[axis] = False
            return dict(self.engaged)

    def dwell(self, seconds: float) -> None:
        with self.lock:
            # G4 blocks the board's command processing, so its ack comes after the wait
            self.send(f"G4 P{fmt(seconds)}", motion=True, ack_timeout=seconds + self.config.ack_timeout_s,
                      motion_timeout=int(seconds) + 1 + self.config.ack_timeout_s)

    # -- halt --------------------------------------------------------------------------------------------------------

    def begin_halt(self) -> None:
        """From now until `recover_after_halt`, an alarm or error on the in-flight command raises Halted."""
        self._halting.set()

    def emergency_stop_in_band(self) -> None:
        """M112 written at once, not waiting for the lock (used only when no halt line is reachable)."""
        self.link.write_unframed(frame("M112"))

    def recover_after_halt(self) -> None:
        """After a halt: clear it (M999) and run the setup again, as the OT-2 does after kill()."""
        with self.lock:
            self._halting.clear()
            self.current_now = None
            self.tolerate_alarm_lock = True
            try:
                self.ping()
                self.setup()
            finally:
                self.tolerate_alarm_lock = False
