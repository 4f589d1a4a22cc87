"""The calibrated values of the broadcast: the DPU's fit formulas, applied to the calibration-store's active fits."""
from __future__ import annotations

import pytest

from benchbus_scheduler import calibration

A, B, C, D = 29432.1, 63297.5, 1.715, -0.636  # a sigmoid OD fit from a real rig's calibrations.json


def sigmoid_raw(od: float) -> float:
    return A + (B - A) / (1 + 10 ** ((C - od) * D))


def active(fit_type: str, params: list[str], coefficients) -> dict:
    fit = {"calibration": "c", "calibrationType": "od", "fit": f"{fit_type}_fit", "type": fit_type, "params": params,
           "coefficients": coefficients}
    return {"by_type": {"od": fit}, "fits": [fit], "ambiguous": [], "version": 3}


@pytest.mark.parametrize("od", [0.05, 0.4, 1.2])
def test_sigmoid_od_inverts_the_fitted_curve(od):
    raw = sigmoid_raw(od)
    calibrated, names = calibration.apply(active("sigmoid", ["od_90"], [[A, B, C, D]] * 16),
                                          {"od_90": [f"{raw:.6f}"] * 16})
    assert calibrated["od"] == pytest.approx([od] * 16, abs=1e-4) and names == {"od": "sigmoid_fit"}


def test_a_reading_outside_the_sigmoid_is_null_not_an_error():
    calibrated, _ = calibration.apply(active("sigmoid", ["od_90"], [[A, B, C, D]] * 16),
                                      {"od_90": ["70000"] + ["40000"] * 15})
    assert calibrated["od"][0] is None and all(v is not None for v in calibrated["od"][1:])


def test_3d_od_uses_both_angles():
    coeffs = [1.0, 2e-4, -1e-4, 1e-9, 2e-9, -3e-9]
    x, y = 50000.0, 40000.0
    expected = coeffs[0] + coeffs[1] * x + coeffs[2] * y + coeffs[3] * x * x + coeffs[4] * x * y + coeffs[5] * y * y
    calibrated, _ = calibration.apply(active("3d", ["od_90", "od_135"], [coeffs] * 16),
                                      {"od_90": ["50000"] * 16, "od_135": ["40000"] * 16})
    assert calibrated["od"] == pytest.approx([expected] * 16)


def test_missing_data_or_unreadable_state_gives_no_calibrated_values():
    assert calibration.apply(active("3d", ["od_90", "od_135"], [[0] * 6] * 16), {"od_90": ["1"] * 16}) == ({}, {})
    assert calibration.apply(None, {"od_90": ["1"] * 16}) == ({}, {})
    assert calibration.apply({"by_type": {"od": {"type": "sigmoid"}}}, {"od_90": ["1"] * 16}) == ({}, {})
    wrong_vials = active("sigmoid", ["od_90"], [[A, B, C, D]] * 8)
    assert calibration.apply(wrong_vials, {"od_90": ["40000"] * 16}) == ({}, {})
