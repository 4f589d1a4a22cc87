"""The decisions of one vial against the DPU's arithmetic (custom_script.py), with numbers worked by hand."""
from __future__ import annotations

import math

import pytest

from benchbus_experiment import controller
from benchbus_schemas.experiment import Chemostat, GrowthCurve, Safety, Turbidostat

RATES = controller.Rates(influx=0.75, efflux=0.70)
TURBIDO = Turbidostat(lower_od=0.2, upper_od=0.4)  # the DPU's defaults: 6 values, 3 min wait, 20 s cap, +5 s


SAFETY = Safety()


def decide(state, od, hour, mode=TURBIDO, safety=SAFETY):
    return controller.turbidostat(state, od, hour, mode, 25.0, RATES, safety)


def test_the_setpoint_starts_at_zero_so_a_culture_above_it_is_diluted_after_the_pump_wait():
    state = controller.VialState()
    actions, _ = decide(state, 0.3, 0.01)  # 0.3 is neither above upper nor near lower: ODset stays 0
    assert [a.action for a in actions] == []  # 0.6 min since the (DPU's initial) pump log entry at 0
    actions, _ = decide(state, 0.3, 0.06)
    dose = actions[-1]
    expected = round(-math.log(0.2 / 0.3) * 25.0 / 0.75, 2)  # 13.52 s
    assert dose.action == "dilute" and dose.influx == f"{expected:.2f}"
    assert dose.efflux == f"{expected + 5:.2f}"  # time_in + 5 moves 1.2x the influx volume already


def test_a_growth_curve_ends_above_upper_with_its_rate_and_the_dose_is_capped():
    mode = Turbidostat(lower_od=0.2, upper_od=0.4, od_values_to_average=1)
    state = controller.VialState()
    hour, od = 1.0, 0.1
    decide(state, od, hour, mode)  # near lower: ODset = upper, a growth curve starts
    assert state.od_set == 0.4
    while od <= 0.4:
        hour += 0.1
        od *= math.exp(0.3 * 0.1)
        actions, growth = decide(state, od, hour, mode)
    assert growth is not None and growth.rate_per_h == pytest.approx(0.3, rel=1e-6)
    assert [a.action for a in actions] == ["od_set", "dilute"] and state.od_set == 0.2
    assert actions[-1].influx == "20.00"  # -ln(0.2/0.4) 25 / 0.75 = 23.1 s, capped at 20 s
    # the DPU's 20 + 5 s would move 17.5 mL out for 15 mL in; 1.2 x 15 mL at 0.70 mL/s is 25.71 s
    assert actions[-1].efflux == "25.71"


def test_the_median_of_the_window_decides_and_the_pump_wait_holds():
    mode = Turbidostat(lower_od=0.2, upper_od=0.4, od_values_to_average=3, pump_wait_min=3.0)
    state = controller.VialState()
    decide(state, 0.1, 0.0, mode)
    assert state.od_set == 0.4
    for hour, od in ((0.10, 0.5), (0.15, 0.1)):  # one outlier does not move the median of three
        actions, _ = decide(state, od, hour, mode)
        assert actions == []
    actions, _ = decide(state, 0.45, 0.2, mode)  # median of 0.5, 0.1, 0.45
    assert [a.action for a in actions] == ["od_set", "dilute"]
    actions, _ = decide(state, 0.45, 0.2 + 2.9 / 60, mode)
    assert actions == []  # 2.9 min since the dose: wait
    actions, _ = decide(state, 0.45, 0.2 + 3.01 / 60, mode)
    assert [a.action for a in actions] == ["dilute"]


def test_the_hourly_pump_limit_cuts_then_skips_a_dose():
    state = controller.VialState()
    safety = Safety(max_pump_s_per_vial_per_h=30.0)
    actions, _ = decide(state, 0.5, 0.1, safety=safety)
    assert actions[-1].influx == "20.00"
    actions, _ = decide(state, 0.5, 0.2, safety=safety)
    assert actions[-1].influx == "10.00" and "hourly pump limit" in actions[-1].reason
    actions, _ = decide(state, 0.5, 0.3, safety=safety)
    assert actions[-1].action == "skip"


def test_efflux_moves_at_least_the_safety_ratio_of_the_influx_volume():
    slow_efflux = controller.Rates(influx=0.8, efflux=0.5)
    assert controller.efflux_seconds(20.0, 25.0, slow_efflux, Safety()) == pytest.approx(20 * 0.8 * 1.2 / 0.5)


def test_the_chemostat_programs_follow_the_dpu_strings():
    mode = Chemostat(dilution_rate_per_h=0.5, bolus_ml=0.5, start_od=0.1)
    state = controller.VialState()
    actions, _ = controller.chemostat(state, 0.05, 1.0, mode, 25.0, RATES, Safety())
    assert actions == []  # below the start OD
    actions, _ = controller.chemostat(state, 0.2, 1.1, mode, 25.0, RATES, Safety())
    period = 3600 * 0.5 / (0.5 * 25.0)  # 144 s
    assert actions[0].influx == f"{0.5 / 0.75:.2f}|{int(period)}" == "0.67|144"
    assert actions[0].efflux == f"{2 * 0.5 / 0.75:.2f}|{int(period)}"  # twice the bolus (1.2x needs less)
    actions, _ = controller.chemostat(state, 0.2, 1.2, mode, 25.0, RATES, Safety())
    assert actions == []  # the same period is not sent again


def test_a_growth_curve_estimates_over_its_window():
    state = controller.VialState()
    growth = None
    for step in range(40):
        hour = step * 0.05
        _, found = controller.growth_curve(state, 0.05 * math.exp(0.4 * hour), hour, GrowthCurve(), 1.0)
        growth = found or growth
    assert growth is not None and growth.rate_per_h == pytest.approx(0.4, rel=1e-6)
    assert growth.end_h - growth.start_h == pytest.approx(1.0, abs=0.06)
