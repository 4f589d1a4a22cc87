"""The board's state and what each G- and M-code does to it: positions and the motion queue, homing to the
switches and probing, the hard limits and the HALT they raise, settings (steps/mm, speeds, accelerations, currents,
homing positions) and the pipette memories. No bytes here: the line protocol calls `execute`, and the UART is only
flushed while a code blocks and written at once when an alarm fires."""
from __future__ import annotations

import threading
import time

from .faults import FaultPlan
from .motion import AXES, AxisConfig, Motion, Segment, default_axes, trapezoid_time
from .pipettes import PipetteMemory
from .transport import Uart

DEFAULT_VERSION = ("Build version: edge-66ec883NOMSD, Build date: Jan 28 2018 15:26:57, MCU: LPC1769, "
                   "System Clock: 120MHz\r\n  CNC Build   NOMSD Build\r\n6 axis")
KILL_MESSAGE = "ALARM: Kill button pressed - reset or M999 to continue"


class Machine:
    def __init__(self, uart: Uart, faults: FaultPlan, speedup: float = 1.0, version: str = DEFAULT_VERSION,
                 pipettes: dict[str, tuple[str, str] | None] | None = None, axes: dict[str, AxisConfig] | None = None):
        self.uart = uart
        self.faults = faults
        self.speedup = max(speedup, 1e-6)
        self.version = version
        self.axes = axes or default_axes()
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
        self.pipettes = PipetteMemory(pipettes)
        self._motion = Motion(self.halt)

    @property
    def position(self) -> dict[str, float]:
        return {axis: round(value, 4) for axis, value in self._motion.position().items()}

    @property
    def moved_s(self) -> float:
        """Wall seconds the axes have spent moving (the motion time at this speedup)."""
        return self._motion.moved_s

    def set_pipette(self, mount: str, entry: tuple[str, str] | None) -> None:
        self.pipettes.set(mount, entry)

    def kill(self) -> None:
        """The kill (halt) input asserted."""
        self.halt(KILL_MESSAGE)

    def reset(self) -> None:
        """The reset line: the board reboots; positions and flags are lost."""
        self._motion.flush()
        self._motion.set_position({axis: 0.0 for axis in AXES})
        self.halted.clear()
        self.homed = {axis: False for axis in AXES}
        self.engaged = {axis: False for axis in AXES}
        self.absolute = True

    def halt(self, message: str | None) -> None:
        self.halted.set()
        self._motion.flush()
        self.engaged = {axis: False for axis in AXES}
        if message:
            self.uart.write_now(message + "\r\n")

    def status_report(self) -> str:
        p = self.position
        state = "Alarm" if self.halted.is_set() else ("Run" if self._motion.busy() else "Idle")
        return f"<{state}|MPos:{p['X']:.4f},{p['Y']:.4f},{p['Z']:.4f}|WPos:{p['X']:.4f},{p['Y']:.4f},{p['Z']:.4f}>\r\n"

    def execute(self, word: str, code: str, args: dict[str, float]) -> str | None:
        """Run one code (`word` its upper-cased first word, `args` its parsed letters); its reply text, if any."""
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
        elif self.faults.take("limit_alarm"):
            axis = next(iter(moves))
            sign = "+" if end[axis] >= start[axis] else "-"
            segment.alarm_at, segment.alarm = 0.5, f"ALARM: Hard limit {sign}{axis}"
        for axis in moves:
            self.engaged[axis] = True
        self._motion.enqueue(segment)
        return None

    def _wait_idle(self) -> None:
        self.uart.flush()  # what came before is on the wire while the board blocks
        self._motion.wait_idle(self.halted)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.halted.is_set() and not self.uart.stopped.is_set():
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
        segment = self._homing_segment(letters)
        outcome: list[bool] = []
        segment.on_done = outcome.append  # True when it ran to its end, False when a halt cut it
        self._motion.enqueue(segment)
        self._wait_idle()
        if segment.alarm:
            self.homed = {axis: False for axis in AXES}  # a homing failure clears the flags
        elif outcome and outcome[0]:
            for axis in letters:
                self.homed[axis] = True
        return None

    def _homing_segment(self, letters: list[str]) -> Segment:
        """All `letters` run to their switches at once and back off; an axis without its switch runs its whole max
        travel, never triggers, and the segment ends in `ALARM: Homing fail`."""
        start = self._motion.position()
        end, duration, failed = dict(start), 0.0, False
        for axis in letters:
            config = self.axes[axis]
            if axis in self.disconnected_switches:
                end[axis] = start[axis] + config.max_travel
                failed = True
                seconds = config.max_travel / config.fast_mm_s
            else:
                end[axis] = config.homing_position - config.retract
                seconds = (abs(config.homing_position - start[axis]) / config.fast_mm_s
                           + config.retract / config.fast_mm_s + 2 * config.retract / config.slow_mm_s)
            duration = max(duration, seconds / self.speedup)
            self.engaged[axis] = True
        return Segment(start, end, duration, alarm="ALARM: Homing fail" if failed else None)

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
        self.halt(None)
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

    def _m369(self, code, _args) -> str:
        return self.pipettes.read(code, "id")

    def _m371(self, code, _args) -> str:
        return self.pipettes.read(code, "model")

    def _m370(self, code, _args) -> str | None:
        return self.pipettes.write(code, "id")

    def _m372(self, code, _args) -> str | None:
        return self.pipettes.write(code, "model")

    def _m999(self, _code, _args) -> str | None:
        if self.halted.is_set():
            self.halted.clear()
            return "WARNING: After HALT you should HOME as position is currently unknown"
        return None
