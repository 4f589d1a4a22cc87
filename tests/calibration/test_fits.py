"""The fit math against worked examples, and fitting that recovers known coefficients from synthetic data."""
import math
import random

import pytest

from benchbus_calibration import fits

SIGMOID = [29432.1, 63297.5, 1.715, -0.636]  # the shape of a real od_90 fit: raw falls as OD rises


# -- applying: worked examples (computed by hand in the comments) ----------------------------------------------------

def test_sigmoid_at_its_midpoint():
    # OD = c makes the exponent 0: raw = a + (b - a) / 2 = 29432.1 + 16932.7
    assert fits.sigmoid_raw(1.715, SIGMOID).value == pytest.approx(46364.8)
    assert fits.sigmoid_od(46364.8, SIGMOID).value == pytest.approx(1.715)


def test_sigmoid_one_decade_from_the_midpoint():
    # (c - OD) d = 1  ->  OD = c - 1/d = 1.715 + 1.572327 = 3.287327; raw = a + (b - a) / 11 = 32510.7727
    assert fits.sigmoid_raw(3.287327, SIGMOID).value == pytest.approx(32510.7727, abs=1e-3)
    assert fits.sigmoid_od("32510.7727", SIGMOID).value == pytest.approx(3.287327, abs=1e-6)


@pytest.mark.parametrize("raw", [63297.5, 65000, 29432.1, 100])
def test_sigmoid_outside_its_range_is_nan_with_a_reason(raw):
    result = fits.sigmoid_od(raw, SIGMOID)
    assert math.isnan(result.value) and not result.ok
    assert "outside" in result.reason


def test_linear_temperature_and_its_inverse():
    coefficients = [-0.028, 83.0]
    assert fits.linear_temperature(2000, coefficients).value == pytest.approx(27.0)   # 83 - 0.028 * 2000
    assert fits.temperature_setpoint(37.0, coefficients).value == 1643                 # (37 - 83) / -0.028 = 1642.86
    assert fits.linear_temperature(1643, coefficients).value == pytest.approx(36.996)


def test_temperature_out_of_range_is_nan_with_a_reason():
    coefficients = [-0.028, 83.0]
    too_hot = fits.temperature_setpoint(100.0, coefficients)  # (100 - 83) / -0.028 = -607
    assert math.isnan(too_hot.value) and "-607" in too_hot.reason
    assert "outside the 12-bit range" in fits.linear_temperature(5000, coefficients).reason
    assert "not a number" in fits.temperature_setpoint("warm", coefficients).reason
    assert "slope 0" in fits.temperature_setpoint(30, [0, 20]).reason


def test_3d_polynomial():
    # 1 + 2(0.5) + 3(2) + 4(0.25) + 5(0.5)(2) + 6(4) = 1 + 1 + 6 + 1 + 5 + 24
    assert fits.od_3d(0.5, 2, [1, 2, 3, 4, 5, 6]).value == pytest.approx(38.0)
    assert "6 coefficients" in fits.od_3d(0.5, 2, [1, 2, 3]).reason


def test_pump_seconds_and_volume():
    assert fits.pump_seconds(1.5, 0.75).value == pytest.approx(2.0)
    assert fits.pump_volume(10, "0.75").value == pytest.approx(7.5)
    assert "not positive" in fits.pump_seconds(1.5, 0).reason
    assert "negative" in fits.pump_seconds(-1, 0.75).reason


def test_apply_fit_to_a_broadcast():
    fit = {"type": "sigmoid", "params": ["od_90"], "coefficients": [SIGMOID, SIGMOID]}
    readings = {"od_90": ["46364.8", "70000"], "od_135": ["1", "2"]}
    first, second = fits.apply_fit_all(fit, readings)
    assert first.value == pytest.approx(1.715)
    assert math.isnan(second.value) and "outside" in second.reason
    assert "no reading" in fits.apply_fit(fit, 0, {"temp": ["1"]}).reason
    assert "no coefficients" in fits.apply_fit(fit, 5, readings).reason
    assert "unknown fit type" in fits.apply_fit({"type": "spline", "coefficients": [[1]]}, 0, readings).reason


def test_apply_3d_and_linear_fits_by_their_params():
    three_d = {"type": "3d", "params": ["od_90", "od_135"], "coefficients": [[1, 2, 3, 4, 5, 6]]}
    assert fits.apply_fit(three_d, 0, {"od_90": ["0.5"], "od_135": ["2"]}).value == pytest.approx(38.0)
    linear = {"type": "linear", "params": ["temp"], "coefficients": [[-0.028, 83.0]]}
    assert fits.apply_fit(linear, 0, {"temp": ["2000"]}).value == pytest.approx(27.0)


# -- fitting: synthetic data with known coefficients -----------------------------------------------------------------

def test_fit_sigmoid_recovers_known_coefficients():
    truth = [29000.0, 63000.0, 1.7, -0.64]
    ods = [0.0, 0.1, 0.2, 0.4, 0.7, 1.0, 1.4, 1.8, 2.3, 2.9, 3.6, 4.5]
    raw = [fits.sigmoid_raw(od, truth).value for od in ods]
    assert fits.fit_sigmoid(ods, raw) == pytest.approx(truth, rel=1e-4)


def test_fit_sigmoid_with_noise_stays_close():
    rng = random.Random(3)
    truth = [29000.0, 63000.0, 1.7, -0.64]
    ods = [i * 0.25 for i in range(20)]
    raw = [fits.sigmoid_raw(od, truth).value + rng.gauss(0, 20) for od in ods]
    a, b, c, d = fits.fit_sigmoid(ods, raw)
    assert a == pytest.approx(29000, rel=0.01) and b == pytest.approx(63000, rel=0.01)
    assert c == pytest.approx(1.7, abs=0.02) and d == pytest.approx(-0.64, rel=0.03)


def test_fit_linear_recovers_known_coefficients():
    raw = [1500, 1800, 2100, 2400]
    measured = [-0.0281 * r + 83.4 for r in raw]
    assert fits.fit_linear(raw, measured) == pytest.approx([-0.0281, 83.4], rel=1e-9)


def test_fit_3d_recovers_known_coefficients():
    rng = random.Random(5)
    truth = [12.0, -3.1e-4, -1.2e-4, 2.0e-9, 1.5e-9, -1.0e-9]
    x = [rng.uniform(30000, 63000) for _ in range(40)]
    y = [rng.uniform(1000, 52000) for _ in range(40)]
    od = [fits.od_3d(u, v, truth).value for u, v in zip(x, y, strict=True)]
    assert fits.fit_3d(x, y, od) == pytest.approx(truth, rel=1e-5)


def _synthetic_od_calibration(truths, ods, samples=3):
    vial_data = [[[fits.sigmoid_raw(od, truth).value] * samples for od in ods] for truth in truths]
    return {"name": "synthetic", "calibrationType": "od", "measuredData": [list(ods) for _ in truths],
            "raw": [{"param": "od_90", "vialData": vial_data}]}


def test_fit_calibration_per_vial_recovers_each_vials_coefficients():
    truths = [[29000.0 + 100 * v, 63000.0 - 50 * v, 1.6 + 0.01 * v, -0.6 - 0.01 * v] for v in range(16)]
    calibration = _synthetic_od_calibration(truths, [i * 0.3 for i in range(16)])
    coefficients, quality = fits.fit_calibration(calibration, "sigmoid")
    assert len(coefficients) == 16
    for got, truth in zip(coefficients, truths, strict=True):
        assert got == pytest.approx(truth, rel=1e-4)
    assert all(q["points"] == 16 and q["rms"] < 1e-6 for q in quality)


def test_fit_calibration_of_pumps_is_volume_over_time():
    calibration = {"name": "p", "calibrationType": "pump", "measuredData": [10] * 4,
                   "raw": [{"param": "pump", "vialData": [["7.5"], ["8.0"], ["6.5"], ["7.0", "7.2", "7.4"]]}]}
    rates, _ = fits.fit_calibration(calibration, "constant")
    assert rates == pytest.approx([0.75, 0.80, 0.65, 0.72])


def test_fit_calibration_names_the_vials_it_cannot_fit():
    truths = [[29000.0, 63000.0, 1.7, -0.64]] * 3
    calibration = _synthetic_od_calibration(truths, [0.0, 0.5, 1.0, 2.0])
    calibration["raw"][0]["vialData"][1] = [[1.0], [1.0]]  # a dead vial: two points only
    with pytest.raises(fits.FitError) as caught:
        fits.fit_calibration(calibration, "sigmoid")
    assert list(caught.value.vials) == [1]
    with pytest.raises(fits.FitError, match="no raw data for 'od_135'"):
        fits.fit_calibration(calibration, "3d")
