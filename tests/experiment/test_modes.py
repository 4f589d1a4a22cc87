"""Four vials per mode on the emulated rig (cultures that grow, a day in a minute): the turbidostat holds its band,
the chemostat dilutes at its rate, growth-rate estimates match the model, no vial overflows. The truth is the
emulator's culture model, sampled in the background; the decisions are the experiment service's own."""
from __future__ import annotations

import statistics
import threading

from .conftest import TIME_SCALE, chemostat_group, definition, growth_group, turbidostat_group

HOURS = 12.0  # emulated hours (30 s here; bench/experiment.py runs a whole day)
TURBIDO, CHEMO, GROWTH = range(0, 4), range(4, 8), range(8, 12)
LOWER, UPPER, RATE = 0.2, 0.4, 0.2


def in_band_fraction(samples, vial: int) -> float:
    ods = [vials[vial]["od"] for _, _, vials in samples]
    first = next(i for i, od in enumerate(ods) if od >= LOWER)
    after = ods[first:]
    return sum(LOWER <= od <= UPPER for od in after) / len(after)


def dilution_rate(samples, vial: int, from_h: float) -> float:
    start = next(s for s in samples if s[1] / 3600 >= from_h)
    end = samples[-1]
    hours = (end[1] - start[1]) / 3600
    return (end[2][vial]["influx_ml"] - start[2][vial]["influx_ml"]) / (25.0 * hours)


def model_rate(samples, started_at: float, event: dict) -> float:
    """The culture model's growth rate of the vial, averaged over the estimate's window (experiment hours)."""
    begin = started_at + event["start_h"] * 3600 / TIME_SCALE
    end = started_at + event["end_h"] * 3600 / TIME_SCALE
    rates = [vials[event["vial"]]["growth_rate_per_h"] for wall, _, vials in samples if begin <= wall <= end]
    return statistics.mean(rates)


def test_turbidostat_chemostat_and_growth_curve_on_growing_cultures(stack, rig_emulator, bus):
    stack()
    estimates: list[dict] = []
    seen = threading.Lock()
    bus.subscribe(bus.topic("experiment", "event", "growth_rate"), lambda _t, d, _m: estimates.append(d))
    rig_emulator.set_od(TURBIDO, 0.25)
    start = definition("modes", [turbidostat_group(TURBIDO, LOWER, UPPER), chemostat_group(CHEMO, RATE),
                                 growth_group(GROWTH)], growth_window_h=2.0)
    status = bus.call("experiment", "start", {"definition": start}, timeout=10)
    begin_h = rig_emulator.model_h()
    rig_emulator.start_sampling()
    rig_emulator.wait_model_h(begin_h + HOURS, timeout=HOURS * 3600 / TIME_SCALE * 3)
    rig_emulator.stop_sampling()
    samples = rig_emulator.samples
    with seen:
        events = list(estimates)

    for vial in TURBIDO:
        ods = [vials[vial]["od"] for _, _, vials in samples]
        assert in_band_fraction(samples, vial) >= 0.95, (vial, min(ods[len(ods) // 3:]), max(ods))
    for vial in CHEMO:
        measured = dilution_rate(samples, vial, begin_h + 1.0)
        assert abs(measured - RATE) / RATE <= 0.02, (vial, measured)
    checked = 0
    for event in events:
        if event["mode"] == "chemostat" or event["start_h"] < 1.0:  # the heaters settle in the first hour
            continue
        expected = model_rate(samples, status["started_at"], event)
        assert abs(event["rate_per_h"] - expected) / expected <= 0.05, (event, expected)
        checked += 1
    assert checked >= 8  # turbidostat curves and growth-curve windows of several vials
    for vial, state in enumerate(rig_emulator.emulator.culture()[:12]):
        assert not state["overflowed"] and state["max_volume_ml"] < 27.0, (vial, state)
