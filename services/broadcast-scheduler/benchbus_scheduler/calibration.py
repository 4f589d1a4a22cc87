"""Calibrated values for the broadcast, from the calibration-store's retained `state/active` (read, never imported).

The fit math is the DPU's (reference A3): `sigmoid` OD from one OD param, `3d` OD from od_90 and od_135, `linear`
degrees C from temp. Anything this module cannot read is skipped: no active calibration means no calibrated values,
never a failed broadcast.
"""
from __future__ import annotations

import math
from typing import Any, Iterable


def sigmoid_od(raw: float, a: float, b: float, c: float, d: float) -> float | None:
    """Invert raw = a + (b - a) / (1 + 10^((c - OD) * d)); None outside the curve's range."""
    if raw == a or d == 0:
        return None
    inner = (b - a) / (raw - a) - 1
    if inner <= 0:
        return None
    return c - math.log10(inner) / d


def quadratic_od(x: float, y: float, c0: float, c1: float, c2: float, c3: float, c4: float, c5: float) -> float:
    return c0 + c1 * x + c2 * y + c3 * x * x + c4 * x * y + c5 * y * y


def linear(raw: float, m: float, b: float) -> float:
    return m * raw + b


def _fits(state: Any) -> list[dict]:
    """The active fits of the calibration-store's ActiveState: one per calibration type (`by_type`, as the DPU
    picks them), else every active fit (`fits`)."""
    if not isinstance(state, dict):
        return []
    chosen = state.get("by_type")
    items = list(chosen.values()) if isinstance(chosen, dict) and chosen else state.get("fits")
    return [item for item in items or [] if isinstance(item, dict) and "coefficients" in item]


def _numbers(values: list[str]) -> list[float | None]:
    out = []
    for value in values:
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            out.append(None)
    return out


def _per_vial(fit: dict, inputs: list[list[float | None]], formula) -> list[float | None] | None:
    coefficients = fit.get("coefficients")
    if not isinstance(coefficients, list) or not inputs or any(len(i) != len(coefficients) for i in inputs):
        return None
    result: list[float | None] = []
    for vial, coeffs in enumerate(coefficients):
        args = [column[vial] for column in inputs]
        try:
            value = None if None in args else formula(*args, *[float(c) for c in coeffs])
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            value = None
        result.append(round(value, 6) if isinstance(value, float) and math.isfinite(value) else None)
    return result


def apply(state: Any, data: dict[str, list[str]]) -> tuple[dict[str, list[float | None]], dict[str, str]]:
    """(`calibrated`, `calibration`) of the broadcast: od and temp per vial, and the fit name behind each."""
    calibrated: dict[str, list[float | None]] = {}
    names: dict[str, str] = {}
    for fit in _fits(state):
        kind, params = fit.get("type"), fit.get("params") or []
        inputs = [_numbers(data[p]) for p in params if p in data]
        if len(inputs) != len(params) or not params:
            continue  # its raw data did not arrive this cycle
        if kind == "sigmoid" and len(params) == 1 and "od" not in calibrated:
            values, key = _per_vial(fit, inputs, sigmoid_od), "od"
        elif kind == "3d" and len(params) == 2 and "od" not in calibrated:
            values, key = _per_vial(fit, inputs, quadratic_od), "od"
        elif kind == "linear" and params == ["temp"]:
            values, key = _per_vial(fit, inputs, linear), "temp"
        else:
            continue
        if values is not None:
            calibrated[key] = values
            names[key] = str(fit.get("fit") or fit.get("name") or "")
    return calibrated, names
