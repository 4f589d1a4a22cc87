"""Cultures that really grow, for the SAMD21 emulator: pure physics, no I/O, no clock of its own.

Each of the 16 vials holds a culture of optical density `od` in `volume_ml` of medium:

- growth is logistic, `d od/dt = mu(T) od (1 - od / capacity_od)`, with `mu(T) = mu_max exp(-((T - t_opt) / t_width)^2)`
  (a bell around the optimum temperature; slow at room temperature);
- the influx pump (IN1, pump v) adds fresh medium at its calibrated rate (mL/s); the efflux pump (pump v + 16) draws
  culture through a straw at `straw_ml`, so it removes liquid only while the level is above the straw (else air);
  IN2 (pump v + 32) is a second medium, also fresh;
- the temperature follows the heater's target with a first-order lag `temp_tau_s`; the heater only heats, so the
  target is `max(ambient, the setpoint's temperature)`;
- the boards read what the rig's calibrations map back to the truth: the OD board reports the raw counts whose
  sigmoid (od_90) and 3d (od_90, od_135) fits give the true OD, the temperature board the raw counts whose linear fit
  gives the true degrees C; readings carry Gaussian noise (relative OD noise plus an absolute floor; degrees C).

Time is model seconds: the emulator maps its monotonic clock through `time_scale` (1 = real time; 1440 = a day in a
minute), so the bridge and scheduler, which only see bytes, need nothing special. Pump flows are piecewise constant
between pump edges; `Rig.advance(to, pumps_on)` integrates one such piece exactly enough (sub-steps while liquid
moves, the logistic's closed form while it does not).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

VIALS = 16
PUMPS = 48
ADC_OD_MAX = 65535
ADC_TEMP_MAX = 4095


@dataclass
class CultureParams:
    """One strain in one medium (defaults: a budding yeast-like culture in rich medium)."""

    mu_max_per_h: float = 0.45  # specific growth rate at the optimum temperature
    t_opt_c: float = 30.0
    t_width_c: float = 8.0
    capacity_od: float = 2.5  # the logistic's carrying capacity
    od0: float = 0.05  # the inoculum
    volume_ml: float = 25.0  # starting volume (at the straw)
    straw_ml: float = 25.0  # the efflux straw's level
    overflow_ml: float = 40.0  # the vial's capacity: above this the vial overflows

    def mu_per_s(self, temp_c: float) -> float:
        bell = math.exp(-(((temp_c - self.t_opt_c) / self.t_width_c) ** 2))
        return self.mu_max_per_h * bell / 3600.0


@dataclass
class RigCalibration:
    """The fits the boards' raw readings are made to agree with (eVOLVER calibrations.json coefficients)."""

    od_sigmoid: list[list[float]]  # per vial [a, b, c, d]: raw od_90 = a + (b - a) / (1 + 10^((c - OD) d))
    od_3d: list[list[float]] | None  # per vial [c0..c5] of OD(od_90, od_135), or None (od_135 then reads od_90)
    temp_linear: list[list[float]]  # per vial [m, b]: degrees C = m raw + b
    pump_rates: list[float]  # 48 calibrated rates, mL/s

    @classmethod
    def from_evolver(cls, calibrations: Sequence[dict[str, Any]]) -> RigCalibration:
        """The active (else first) fit of each type from a parsed calibrations.json (numbers may be strings)."""
        fits: dict[str, dict] = {}
        for calibration in calibrations:
            for fit in calibration.get("fits") or []:
                kind = fit.get("type")
                if kind not in fits or (fit.get("active") and not fits[kind].get("active")):
                    fits[kind] = fit
        missing = [k for k in ("sigmoid", "linear", "constant") if k not in fits]
        if missing:
            raise ValueError(f"the calibrations lack a {', '.join(missing)} fit")

        def numbers(rows: Any) -> list[list[float]]:
            return [[float(x) for x in row] for row in rows]

        return cls(od_sigmoid=numbers(fits["sigmoid"]["coefficients"]),
                   od_3d=numbers(fits["3d"]["coefficients"]) if "3d" in fits else None,
                   temp_linear=numbers(fits["linear"]["coefficients"]),
                   pump_rates=[float(x) for x in fits["constant"]["coefficients"]])

    def raw_od_90(self, vial: int, od: float) -> float:
        a, b, c, d = self.od_sigmoid[vial]
        exponent = max(-300.0, min(300.0, (c - od) * d))
        return a + (b - a) / (1 + 10 ** exponent)

    def raw_od_135(self, vial: int, od: float, raw_90: float) -> float:
        """The od_135 count that, with `raw_90`, gives `od` through the 3d fit (the root inside the ADC range)."""
        if self.od_3d is None:
            return raw_90
        c0, c1, c2, c3, c4, c5 = self.od_3d[vial]
        x = raw_90
        # c5 y^2 + (c2 + c4 x) y + (c0 + c1 x + c3 x^2 - od) = 0
        qa, qb, qc = c5, c2 + c4 * x, c0 + c1 * x + c3 * x * x - od
        if abs(qa) < 1e-30:
            roots = [-qc / qb] if qb else []
        else:
            disc = qb * qb - 4 * qa * qc
            if disc < 0:
                roots = [-qb / (2 * qa)]
            else:
                root = math.sqrt(disc)
                roots = [(-qb + root) / (2 * qa), (-qb - root) / (2 * qa)]
        inside = [r for r in roots if 0 <= r <= ADC_OD_MAX]
        return inside[0] if inside else (roots[0] if roots else 0.0)

    def raw_temp(self, vial: int, celsius: float) -> float:
        m, b = self.temp_linear[vial]
        return (celsius - b) / m

    def setpoint_celsius(self, vial: int, raw: float) -> float:
        m, b = self.temp_linear[vial]
        return m * raw + b


@dataclass
class Vial:
    od: float
    volume_ml: float
    temp_c: float
    influx_ml: float = 0.0  # totals since the start, for tests and benchmarks
    efflux_ml: float = 0.0
    max_volume_ml: float = 0.0
    overflowed: bool = False


@dataclass
class Noise:
    od_relative: float = 0.01  # standard deviation, fraction of the OD
    od_absolute: float = 0.002
    temp_c: float = 0.05


@dataclass
class Rig:
    """16 vials, their heaters and their pumps, advanced in model seconds."""

    calibration: RigCalibration
    culture: CultureParams = field(default_factory=CultureParams)
    ambient_c: float = 24.0
    temp_tau_s: float = 600.0
    noise: Noise = field(default_factory=Noise)
    seed: int = 1
    pump_step_s: float = 0.25  # integration step while liquid moves
    growth_step_s: float = 60.0  # longest closed-form step (the temperature changes under it)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = 0.0
        self.vials = [Vial(self.culture.od0, self.culture.volume_ml, self.ambient_c) for _ in range(VIALS)]
        self.setpoint_raw = [float(ADC_TEMP_MAX)] * VIALS
        self._measured: dict[int, float] = {}

    # -- inputs ------------------------------------------------------------------------------------------------

    def set_heaters(self, raw_setpoints: Sequence[str | float]) -> None:
        for vial, value in enumerate(list(raw_setpoints)[:VIALS]):
            try:
                self.setpoint_raw[vial] = float(value)
            except (TypeError, ValueError):
                continue  # the firmware keeps what it cannot parse

    def target_c(self, vial: int) -> float:
        if self.setpoint_raw[vial] >= ADC_TEMP_MAX:
            return self.ambient_c  # 4095: heater off
        return max(self.ambient_c, self.calibration.setpoint_celsius(vial, self.setpoint_raw[vial]))

    def growth_rate_per_h(self, vial: int) -> float:
        """The culture's specific growth rate now (1/h): mu(T) (1 - od / capacity)."""
        state = self.vials[vial]
        return self.culture.mu_per_s(state.temp_c) * 3600.0 * (1 - state.od / self.culture.capacity_od)

    # -- time --------------------------------------------------------------------------------------------------

    def advance(self, to: float, pumps_on: Sequence[int] = ()) -> None:
        """Integrate from `self.now` to `to` with the pumps `pumps_on` (indices 0-47) running throughout."""
        if to <= self.now:
            return
        on = set(pumps_on)
        for vial in range(VIALS):
            self._advance_vial(vial, to - self.now, on)
        self.now = to

    def _advance_vial(self, vial: int, span: float, on: set[int]) -> None:
        state = self.vials[vial]
        rate_in = sum(self.calibration.pump_rates[p] for p in (vial, vial + 32) if p in on)
        rate_out = self.calibration.pump_rates[vial + 16] if vial + 16 in on else 0.0
        moving = rate_in > 0 or (rate_out > 0 and state.volume_ml > self.culture.straw_ml)
        step_limit = self.pump_step_s if moving else self.growth_step_s
        remaining = span
        while remaining > 1e-12:
            dt = min(step_limit, remaining)
            self._heat(vial, dt)
            self._grow(state, dt)
            if moving:
                self._pump(state, dt, rate_in, rate_out)
            remaining -= dt

    def _heat(self, vial: int, dt: float) -> None:
        state = self.vials[vial]
        target = self.target_c(vial)
        state.temp_c = target + (state.temp_c - target) * math.exp(-dt / self.temp_tau_s)

    def _grow(self, state: Vial, dt: float) -> None:
        """The logistic's closed form over dt at the vial's current temperature."""
        capacity = self.culture.capacity_od
        growth = math.exp(self.culture.mu_per_s(state.temp_c) * dt)
        state.od = capacity * state.od * growth / (capacity + state.od * (growth - 1))

    def _pump(self, state: Vial, dt: float, rate_in: float, rate_out: float) -> None:
        """Fresh medium in (biomass unchanged, diluted); culture out through the straw while the level is above it."""
        added = rate_in * dt
        if added:
            biomass = state.od * state.volume_ml
            state.volume_ml += added
            state.od = biomass / state.volume_ml
            state.influx_ml += added
        removed = min(rate_out * dt, max(0.0, state.volume_ml - self.culture.straw_ml))
        state.volume_ml -= removed
        state.efflux_ml += removed
        state.max_volume_ml = max(state.max_volume_ml, state.volume_ml)
        if state.volume_ml > self.culture.overflow_ml:
            state.overflowed = True

    # -- readings ------------------------------------------------------------------------------------------------

    def measured_od(self, vial: int) -> float:
        od = self.vials[vial].od
        sd = math.hypot(self.noise.od_relative * od, self.noise.od_absolute)
        return od + self.rng.gauss(0.0, sd)

    def raw_od(self, param: str, vial: int) -> int:
        """The count the `param` photodiode reports: the calibrations' inverse at a noisy OD. Reading od_90 takes a
        new measurement; od_135 reports the same measurement (both photodiodes see the same culture)."""
        if param == "od_90" or vial not in self._measured:
            self._measured[vial] = self.measured_od(vial)
        od = self._measured[vial]
        raw_90 = self.calibration.raw_od_90(vial, od)
        raw = raw_90 if param == "od_90" else self.calibration.raw_od_135(vial, od, raw_90)
        return int(round(max(0.0, min(float(ADC_OD_MAX), raw))))

    def raw_temp(self, vial: int) -> int:
        celsius = self.vials[vial].temp_c + self.rng.gauss(0.0, self.noise.temp_c)
        return int(round(max(0.0, min(float(ADC_TEMP_MAX), self.calibration.raw_temp(vial, celsius)))))

    def snapshot(self) -> list[dict[str, float | bool]]:
        return [{"od": v.od, "volume_ml": v.volume_ml, "temp_c": v.temp_c, "influx_ml": v.influx_ml,
                 "efflux_ml": v.efflux_ml, "max_volume_ml": v.max_volume_ml, "overflowed": v.overflowed,
                 "growth_rate_per_h": self.growth_rate_per_h(i)} for i, v in enumerate(self.vials)]
