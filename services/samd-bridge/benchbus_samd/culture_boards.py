"""The SAMD21 boards wired to a `culture.Rig`: OD and temperature boards read the cultures, the heater setpoints
reach the rig, and the pump board's programs move liquid. No I/O: the emulator calls these under its lock.

The rig runs in model seconds, `(monotonic - started) * time_scale`; pump programs are given in model seconds on the
wire (`t`, `t|p`) and run that long in model time (so `time_scale` 1440 runs a 20 s bolus in 14 ms of real time).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .culture import VIALS, Rig
from .emulator.boards import Board, PumpBoard, PumpProgram


@dataclass
class PumpEvent:
    """One pump program the pump board applied (the truth tests count doses against)."""

    real_t: float
    model_t: float
    pump: int
    spec: str


class RigClock:
    """Brings the rig up to a monotonic time, splitting the span at every pump edge."""

    def __init__(self, rig: Rig, started: float, time_scale: float):
        self.rig = rig
        self.started = started
        self.time_scale = time_scale
        self.synced = started
        self.pumps: PumpBoard | None = None

    def model_time(self, real: float) -> float:
        return (real - self.started) * self.time_scale

    def sync(self, real_now: float) -> None:
        programs = self.pumps.programs if self.pumps is not None else []
        t = self.synced
        while t < real_now:
            edge = min([real_now] + [e for p in programs if p is not None for e in _edges_after(p, t)])
            middle = (t + edge) / 2
            running = [i for i, p in enumerate(programs) if p is not None and p.kind != "ipp" and p.running(middle)]
            self.rig.advance(self.model_time(edge), running)
            t = edge
        self.synced = max(self.synced, real_now)


def _edges_after(program: PumpProgram, t: float) -> list[float]:
    """The next times after t at which the program switches its pump on or off (real seconds)."""
    if program.kind == "once":
        return [e for e in (program.start, program.start + program.on_s) if e > t]
    if program.kind == "chemostat":
        if t < program.start:
            return [program.start]
        k = math.floor((t - program.start) / program.period_s)
        # k - 1 .. k + 1: t may sit on an edge that floating point puts in either period
        bases = [program.start + j * program.period_s for j in (k - 1, k, k + 1)]
        return [e for b in bases for e in (b + program.on_s, b + program.period_s) if e > t + 1e-12]
    return []


class CultureOdBoard(Board):
    """An OD photodiode board whose counts are the calibrations' inverse of the cultures' OD."""

    kind = "data"

    def __init__(self, address: str, clock: RigClock):
        super().__init__(address, 2, ["1000"])
        self.clock = clock

    def reply_values(self, now: float) -> list[str]:
        self.clock.sync(now)
        return [str(self.clock.rig.raw_od(self.address, vial)) for vial in range(VIALS)]


class CultureTempBoard(Board):
    """The heaters: applied setpoints drive the rig's temperatures; readings are the calibrations' inverse."""

    kind = "data"

    def __init__(self, clock: RigClock):
        super().__init__("temp", 17, ["4095"] * VIALS)
        self.clock = clock

    def on_applied(self, now: float) -> None:
        self.clock.sync(now)
        self.clock.rig.set_heaters(self.applied)

    def reply_values(self, now: float) -> list[str]:
        self.clock.sync(now)
        return [str(self.clock.rig.raw_temp(vial)) for vial in range(VIALS)]


class CulturePumpBoard(PumpBoard):
    """The 48 pumps; durations and periods on the wire are model seconds. Logs every program it applies."""

    def __init__(self, clock: RigClock):
        super().__init__()
        self.clock = clock
        self.events: list[PumpEvent] = []
        clock.pumps = self

    def apply(self, now: float) -> None:
        self.clock.sync(now)  # the liquid moved under the old programs until now
        super().apply(now)

    def on_applied(self, now: float) -> None:
        before = list(self.programs)
        super().on_applied(now)
        scale = self.clock.time_scale
        for index, program in enumerate(self.programs):
            if program is None or program is before[index]:
                continue
            program.on_s /= scale
            program.period_s /= scale
            self.events.append(PumpEvent(now, self.clock.model_time(now), index, program.spec))


def culture_boards(rig: Rig, started: float, time_scale: float) -> tuple[dict[str, Board], RigClock]:
    """The default eVOLVER chain (od_90, od_135, od_led, temp, stir, pump) reading and driving `rig`."""
    clock = RigClock(rig, started, time_scale)
    boards: list[Board] = [
        CultureOdBoard("od_90", clock),
        CultureOdBoard("od_135", clock),
        Board("od_led", 17, ["4095"] * VIALS),
        CultureTempBoard(clock),
        Board("stir", 17, ["8"] * VIALS),
        CulturePumpBoard(clock),
    ]
    return {b.address: b for b in boards}, clock
