"""The OT-2's use of the Smoothieboard (reference: opentrons-ot2.md section 1). No MQTT here.

`SmoothieDriver` sends one line at a time over a `serial_link.SerialLink` (the line protocol and its errors are in
`gcode.py`, the OT-2's numbers in `robot.py`): boot setup, currents around moves, plunger backlash, the homing
sequence, `M400` after every motion command, and the alarm recovery. It keeps the position, homed, engaged and
current tables as the board last reported them; every public method holds one lock, so exchanges never interleave.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable

from .gcode import (ALPHABETICAL, AXES, AlarmLock, AlarmResponse, ErrorResponse, Halted, MotionAlarm, ParseError,
                    SmoothieError, axes_words, classify, fmt, frame, normalise_model, parse_homed,
                    parse_pipette_memory, parse_position, parse_switches, parse_version, strip_response,
                    unsafe_to_repeat)
from .robot import (BACKLASH_MM, CURRENT_SETTLE, CURRENT_TABLES, DEFAULT_ACCELERATION_S, HOME_ACK_TIMEOUT_LONG_S,
                    HOME_ACK_TIMEOUT_S, HOME_M400_TIMEOUT_S, MOUNT_AXIS, MOUNT_LETTER, PLUNGER_AXIS, PLUNGERS,
                    DriverConfig, expand_home_axes)
from .serial_link import SerialLink


log = logging.getLogger("benchbus.smoothie.driver")


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
        if isinstance(problem, AlarmLock):
            problem = why_locked(problem, self.link.printed_before_write, command)
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


def why_locked(lock: AlarmLock, printed_before: bytes, command: str) -> SmoothieError:
    """`error:Alarm lock` names no reason; the `ALARM:` line the board printed on its own before `command` does.
    Before an M400 it is the motion's own alarm (a limit tripped after the move's ack); before anything else
    the board halted between our commands (the kill input), and the lock stays a lock, with its reason."""
    early = classify(strip_response(printed_before, ""), "")
    if not isinstance(early, AlarmResponse):
        return lock
    if command == "M400":
        return AlarmResponse(early.raw, early.raw, command)
    return AlarmLock(early.raw, early.raw, command)
