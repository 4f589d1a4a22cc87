"""The culture model (benchbus_samd.culture) and its boards: physics against closed forms, readings against the
calibration fits' own inverse (benchbus_schemas.calibration_math), pump programs in model time."""
from __future__ import annotations

import json
import math
from importlib import resources

import pytest

from benchbus_samd.culture import CultureParams, Noise, Rig, RigCalibration
from benchbus_samd.culture_boards import culture_boards
from benchbus_schemas.calibration_math import linear_temperature, od_3d, sigmoid_od

QUIET = Noise(od_relative=0.0, od_absolute=0.0, temp_c=0.0)


@pytest.fixture(scope="module")
def calibration() -> RigCalibration:
    text = resources.files("benchbus_calibration").joinpath("data/example-calibrations.json").read_text()
    return RigCalibration.from_evolver(json.loads(text))


def test_od_and_temperature_readings_map_back_through_the_example_fits(calibration):
    rig = Rig(calibration, noise=QUIET)
    for vial, od in ((0, 0.05), (5, 0.2), (9, 0.4), (15, 1.2)):
        rig.vials[vial].od = od
        rig.vials[vial].temp_c = 31.5
        raw_90, raw_135 = rig.raw_od("od_90", vial), rig.raw_od("od_135", vial)
        assert sigmoid_od(raw_90, calibration.od_sigmoid[vial]).value == pytest.approx(od, abs=0.002)
        assert od_3d(raw_90, raw_135, calibration.od_3d[vial]).value == pytest.approx(od, abs=0.01)
        assert linear_temperature(rig.raw_temp(vial), calibration.temp_linear[vial]).value == pytest.approx(31.5,
                                                                                                             abs=0.03)


def test_readings_carry_noise_of_the_configured_size(calibration):
    rig = Rig(calibration, noise=Noise(od_relative=0.02, od_absolute=0.0, temp_c=0.0), seed=3)
    rig.vials[0].od = 0.3
    ods = [sigmoid_od(rig.raw_od("od_90", 0), calibration.od_sigmoid[0]).value for _ in range(400)]
    spread = math.sqrt(sum((x - 0.3) ** 2 for x in ods) / len(ods))
    assert 0.8 * 0.006 < spread < 1.2 * 0.006


def test_growth_is_logistic_at_the_temperature_dependent_rate(calibration):
    culture = CultureParams(mu_max_per_h=0.5, t_opt_c=30.0, t_width_c=8.0, capacity_od=2.0, od0=0.05)
    rig = Rig(calibration, culture, ambient_c=26.0, noise=QUIET)
    rig.advance(5 * 3600)
    mu = 0.5 * math.exp(-((26.0 - 30.0) / 8.0) ** 2)
    expected = 2.0 / (1 + (2.0 / 0.05 - 1) * math.exp(-mu * 5))
    assert rig.vials[0].od == pytest.approx(expected, rel=1e-6)
    assert rig.growth_rate_per_h(0) == pytest.approx(mu * (1 - rig.vials[0].od / 2.0), rel=1e-9)


def test_the_heater_follows_its_setpoint_with_a_first_order_lag(calibration):
    rig = Rig(calibration, ambient_c=24.0, temp_tau_s=600.0, noise=QUIET)
    raw = calibration.raw_temp(3, 34.0)
    rig.set_heaters(["4095"] * 3 + [str(raw)] + ["4095"] * 12)
    rig.advance(600.0)
    assert rig.vials[3].temp_c == pytest.approx(34.0 - 10.0 * math.exp(-1), abs=0.01)
    assert rig.vials[2].temp_c == pytest.approx(24.0)  # heater off: stays at ambient


def test_influx_with_efflux_dilutes_exponentially_and_keeps_the_level(calibration):
    rig = Rig(calibration, CultureParams(mu_max_per_h=0.0), noise=QUIET, pump_step_s=0.01)
    rig.vials[2].od = 0.4
    rate_in = calibration.pump_rates[2]
    rig.advance(10.0, pumps_on=[2, 18])
    assert rig.vials[2].od == pytest.approx(0.4 * math.exp(-rate_in * 10.0 / 25.0), rel=2e-3)
    rig.advance(20.0, pumps_on=[18])  # the efflux runs on and draws the level back to the straw
    assert rig.vials[2].volume_ml == pytest.approx(25.0)
    assert rig.vials[2].influx_ml == pytest.approx(rate_in * 10.0)


def test_influx_without_efflux_overflows(calibration):
    rig = Rig(calibration, noise=QUIET)
    rig.advance(10.0, pumps_on=[7])  # ~7.8 mL: 33 mL, below the rim
    assert not rig.vials[7].overflowed
    rig.advance(30.0, pumps_on=[7])  # 30 s at ~0.78 mL/s: past the 40 mL vial
    assert rig.vials[7].overflowed and rig.vials[7].max_volume_ml > 40.0


def test_pump_programs_run_in_model_time_through_the_pump_board(calibration):
    rig = Rig(calibration, CultureParams(mu_max_per_h=0.0), noise=QUIET)
    boards, clock = culture_boards(rig, started=100.0, time_scale=1440.0)
    pump = boards["pump"]
    values = ["--"] * 48
    values[4], values[20] = "0.66|240", "1.58|240"  # a chemostat bolus every 240 model s
    values[9], values[25] = "12.5", "17.5"  # one turbidostat dose
    pump.stage(values, 100.0)
    pump.apply(100.0)
    t = 100.0
    while t < 100.0 + 6 * 3600 / 1440.0:  # 6 model hours, synced at irregular times as readings come
        t += 0.013
        clock.sync(t)
    periods = math.floor(clock.model_time(t) / 240) + 1
    assert rig.vials[4].influx_ml == pytest.approx(periods * 0.66 * calibration.pump_rates[4], rel=1e-6)
    assert rig.vials[9].influx_ml == pytest.approx(12.5 * calibration.pump_rates[9], rel=1e-6)
    assert [e.pump for e in pump.events] == [4, 9, 20, 25]
