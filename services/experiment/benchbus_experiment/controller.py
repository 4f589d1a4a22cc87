"""The decisions of one vial, as the DPU's custom_script.py makes them (no I/O, no clock: time is passed in).

The DPU facts followed (custom_script.py, eVOLVER.py of FYNCH-BIO/dpu; our own code):

- the OD a decision sees is the median of the last `od_values_to_average` calibrated ODs (DPU: 6);
- turbidostat: `ODset` starts at 0; median > upper and ODset != lower -> ODset = lower, the growth curve since the
  last ODset change ends and its rate is the slope of ln(OD) against hours; median < lower + (upper - lower) / 3
  and ODset != upper -> ODset = upper (a growth curve starts); median > ODset and fewer than stop_after_n_curves + 2
  curves and `pump_wait` minutes since the last dose -> influx `time_in = -ln(lower / median) * V / rate_in`,
  capped at 20 s, rounded to 0.01 s; efflux `time_in + 5` s; the dose time is logged when decided;
- chemostat: once elapsed > start time and median > start OD: bolus seconds `bolus / rate_in`, period
  `3600 * bolus / (rate * V)` s, sent as `%.2f|%d` programs (efflux twice the bolus) whenever the period differs
  from the last one sent;
- growth curve: no dilution.

Our additions (safety): the efflux always moves at least `efflux_volume_ratio` times the influx volume at the
calibrated rates, and no vial gets more than `max_pump_s_per_vial_per_h` influx seconds in any hour.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from benchbus_schemas.experiment import Chemostat, GrowthCurve, Safety, Turbidostat

HOUR_S = 3600.0
MAX_POINTS = 5000  # a growth curve's points kept for its regression


@dataclass
class VialState:
    """What a vial's controller remembers between broadcasts (persisted as JSON)."""

    ods: list[float] = field(default_factory=list)  # the last ODs, for the median
    od_set: float = 0.0
    od_set_h: float = 0.0
    od_set_changes: int = 1  # the DPU's ODset file starts with one line
    last_pump_h: float = 0.0  # the DPU's pump log starts at 0
    doses: int = 0
    pumped: list[list[float]] = field(default_factory=list)  # [hour, influx s] of recent doses (the hourly limit)
    curve: list[list[float]] = field(default_factory=list)  # [hour, od] since the growth curve started
    growth_rate_per_h: float | None = None
    last_estimate_h: float | None = None
    chemo_period_s: float = 0.0  # the period last sent (0: none)
    median: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VialState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Action:
    """What a decision asks of the rig (pump strings exactly as they go on the wire)."""

    action: str  # dilute, chemostat_start, chemostat_stop, od_set, skip
    reason: str
    influx: str | None = None
    efflux: str | None = None
    influx_s: float | None = None
    efflux_s: float | None = None
    period_s: float | None = None
    od: float | None = None
    od_set: float | None = None


@dataclass
class Rates:
    influx: float  # mL/s of the vial's IN1 pump
    efflux: float  # mL/s of its efflux pump


@dataclass
class Growth:
    rate_per_h: float
    start_h: float
    end_h: float
    points: int


def slope_of_log(points: list[list[float]]) -> Growth | None:
    """Least-squares slope of ln(OD) against hours (the DPU's stats.linregress), over the positive ODs."""
    usable = [(t, math.log(od)) for t, od in points if od > 0 and math.isfinite(od)]
    if len(usable) < 3:
        return None
    mean_t = sum(t for t, _ in usable) / len(usable)
    mean_y = sum(y for _, y in usable) / len(usable)
    spread = sum((t - mean_t) ** 2 for t, _ in usable)
    if spread <= 0:
        return None
    slope = sum((t - mean_t) * (y - mean_y) for t, y in usable) / spread
    return Growth(slope, usable[0][0], usable[-1][0], len(usable))


def observe(state: VialState, od: float, elapsed_h: float, window: int) -> float:
    """Take one broadcast's OD; returns the median the decision sees."""
    state.ods = (state.ods + [od])[-window:]
    state.median = float(statistics.median(state.ods))
    return state.median


def _hourly_budget(state: VialState, elapsed_h: float, safety: Safety) -> float:
    state.pumped = [p for p in state.pumped if elapsed_h - p[0] < 1.0]
    return safety.max_pump_s_per_vial_per_h - sum(p[1] for p in state.pumped)


def efflux_seconds(influx_s: float, minimum_s: float, rates: Rates, safety: Safety) -> float:
    """At least the DPU's efflux time, and long enough to move `efflux_volume_ratio` x the influx volume."""
    needed = influx_s * rates.influx * safety.efflux_volume_ratio / rates.efflux
    return round(max(minimum_s, needed), 2)


def turbidostat(state: VialState, od: float, elapsed_h: float, mode: Turbidostat, volume_ml: float, rates: Rates,
                safety: Safety) -> tuple[list[Action], Growth | None]:
    median = observe(state, od, elapsed_h, mode.od_values_to_average)
    state.curve = (state.curve + [[elapsed_h, od]])[-MAX_POINTS:]
    actions: list[Action] = []
    growth = None
    if median > mode.upper_od and state.od_set != mode.lower_od:
        growth = slope_of_log([p for p in state.curve if p[0] > state.od_set_h])
        if growth is not None:
            state.growth_rate_per_h = growth.rate_per_h
            state.last_estimate_h = elapsed_h
        _set_od(state, mode.lower_od, elapsed_h)
        actions.append(Action("od_set", f"median OD {median:.3f} above upper {mode.upper_od}", od=median,
                              od_set=mode.lower_od))
    if median < mode.lower_od + (mode.upper_od - mode.lower_od) / 3 and state.od_set != mode.upper_od:
        _set_od(state, mode.upper_od, elapsed_h)
        state.curve = [[elapsed_h, od]]
        actions.append(Action("od_set", f"median OD {median:.3f} near lower {mode.lower_od}: a growth curve starts",
                              od=median, od_set=mode.upper_od))
    curves = state.od_set_changes / 2
    collecting = mode.stop_after_n_curves is None or curves <= mode.stop_after_n_curves + 2
    if median > state.od_set and collecting:
        dose = _dose(state, median, elapsed_h, mode, volume_ml, rates, safety)
        if dose is not None:
            actions.append(dose)
    return actions, growth


def _set_od(state: VialState, value: float, elapsed_h: float) -> None:
    state.od_set = value
    state.od_set_h = elapsed_h
    state.od_set_changes += 1


def _dose(state: VialState, median: float, elapsed_h: float, mode: Turbidostat, volume_ml: float, rates: Rates,
          safety: Safety) -> Action | None:
    if (elapsed_h - state.last_pump_h) * 60 < mode.pump_wait_min:
        return None
    time_in = -(math.log(mode.lower_od / median) * volume_ml) / rates.influx
    time_in = round(min(time_in, mode.max_bolus_s), 2)
    budget = _hourly_budget(state, elapsed_h, safety)
    reason = f"median OD {median:.3f} above setpoint {state.od_set}"
    if time_in > budget:
        if budget < 0.5:
            return Action("skip", f"{reason}; the hourly pump limit {safety.max_pump_s_per_vial_per_h} s is used up",
                          od=median, od_set=state.od_set)
        time_in = round(budget, 2)
        reason += f"; cut to the hourly pump limit ({time_in} s left)"
    if time_in <= 0:
        return None
    time_out = efflux_seconds(time_in, time_in + mode.efflux_extra_s, rates, safety)
    state.last_pump_h = elapsed_h
    state.doses += 1
    state.pumped.append([elapsed_h, time_in])
    return Action("dilute", reason, influx=f"{time_in:.2f}", efflux=f"{time_out:.2f}", influx_s=time_in,
                  efflux_s=time_out, od=median, od_set=state.od_set)


def chemostat_period(mode: Chemostat, volume_ml: float) -> float:
    if mode.dilution_rate_per_h <= 0:
        return 0.0
    return HOUR_S * mode.bolus_ml / (mode.dilution_rate_per_h * volume_ml)


def chemostat(state: VialState, od: float, elapsed_h: float, mode: Chemostat, volume_ml: float, rates: Rates,
              safety: Safety) -> tuple[list[Action], Growth | None]:
    median = observe(state, od, elapsed_h, mode.od_values_to_average)
    growth = _window_growth(state, od, elapsed_h, 1.0, offset=mode.dilution_rate_per_h if state.chemo_period_s else 0)
    if not (elapsed_h > mode.start_after_h and median > mode.start_od):
        return [], growth
    period = chemostat_period(mode, volume_ml)
    if int(period) == int(state.chemo_period_s):
        return [], growth
    if period == 0:
        state.chemo_period_s = 0.0
        return [Action("chemostat_stop", "dilution rate 0", influx="0", efflux="0", od=median)], growth
    bolus_s = mode.bolus_ml / rates.influx
    hourly = bolus_s * HOUR_S / period
    if hourly > safety.max_pump_s_per_vial_per_h:
        return [Action("skip", f"{hourly:.0f} influx s per hour exceed the limit "
                               f"{safety.max_pump_s_per_vial_per_h}", od=median)], growth
    state.chemo_period_s = period
    efflux_s = efflux_seconds(bolus_s, bolus_s * 2, rates, safety)
    return [Action("chemostat_start", f"median OD {median:.3f} above start OD {mode.start_od}",
                   influx=f"{bolus_s:.2f}|{int(period)}", efflux=f"{efflux_s:.2f}|{int(period)}",
                   influx_s=round(bolus_s, 2), efflux_s=efflux_s, period_s=float(int(period)), od=median)], growth


def growth_curve(state: VialState, od: float, elapsed_h: float, mode: GrowthCurve, window_h: float
                 ) -> tuple[list[Action], Growth | None]:
    observe(state, od, elapsed_h, 6)
    return [], _window_growth(state, od, elapsed_h, window_h)


def _window_growth(state: VialState, od: float, elapsed_h: float, window_h: float, offset: float = 0.0
                   ) -> Growth | None:
    """A sliding-window estimate, made every half window (chemostat: plus the dilution rate it runs at)."""
    state.curve = [p for p in state.curve + [[elapsed_h, od]] if elapsed_h - p[0] <= window_h][-MAX_POINTS:]
    if state.curve[-1][0] - state.curve[0][0] < window_h * 0.9:
        return None
    if state.last_estimate_h is not None and elapsed_h - state.last_estimate_h < window_h / 2:
        return None
    growth = slope_of_log(state.curve)
    if growth is None:
        return None
    growth.rate_per_h += offset
    state.growth_rate_per_h = growth.rate_per_h
    state.last_estimate_h = elapsed_h
    return growth
