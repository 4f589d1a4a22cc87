"""The boards on the line and what they do: each stages the values of `r`/`i` and applies them on `a`; the OD boards
sample their photodiodes round robin, the temperature board follows a first-order curve towards its setpoints, the
pump board runs its 48 pumps' programs. No bytes here (`line.py` frames them); a culture rig swaps in boards that read
growing cultures (`benchbus_samd.culture_boards`)."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

VIALS = 16
PUMPS = 48

# The default eVOLVER conf's params: values the DPU sends by default, fields out and in (conf.yml's counts).
DEFAULT_PARAMS: dict[str, tuple[list[str], int, int]] = {
    "od_90": (["1000"], 2, 17),
    "od_135": (["1000"], 2, 17),
    "od_led": (["4095"] * VIALS, 17, 17),
    "temp": (["4095"] * VIALS, 17, 17),
    "stir": (["8"] * VIALS, 17, 17),
    "pump": (["--"] * PUMPS, 49, 49),
}


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
