"""Calibrated values for the broadcast, from the calibration-store's retained `state/active` (read, never imported).

What each fit type computes is `benchbus_schemas.calibration_math` (the DPU's formulas, reference A3), shared with
the calibration-store; this module only picks the fits out of `state/active` and lays the results out per vial:
`sigmoid` OD from one OD param, `3d` OD from od_90 and od_135, `linear` degrees C from temp. Anything this module
cannot read is skipped: no active calibration means no calibrated values, never a failed broadcast.
"""
from __future__ import annotations

from typing import Any

from benchbus_schemas.calibration_math import apply_fit


def _fits(state: Any) -> list[dict]:
    """The active fits of the calibration-store's ActiveState: one per calibration type (`by_type`, as the DPU
    picks them), else every active fit (`fits`)."""
    if not isinstance(state, dict):
        return []
    chosen = state.get("by_type")
    items = list(chosen.values()) if isinstance(chosen, dict) and chosen else state.get("fits")
    return [item for item in items or [] if isinstance(item, dict) and "coefficients" in item]


def _per_vial(fit: dict, data: dict[str, list[str]]) -> list[float | None] | None:
    """The fit applied to each vial of the broadcast's string values; None when its vial count differs from the
    broadcast's (a fit for another rig), a vial's None when its reading is outside what the fit can invert."""
    coefficients = fit.get("coefficients")
    columns = [data[p] for p in fit["params"]]
    if not isinstance(coefficients, list) or any(len(column) != len(coefficients) for column in columns):
        return None
    results = [apply_fit(fit, vial, data) for vial in range(len(coefficients))]
    return [round(result.value, 6) if result.ok else None for result in results]


def _key(fit: dict, calibrated: dict) -> str | None:
    """Which calibrated value a fit gives ("od" or "temp"), or None when it gives none here (the first OD fit wins)."""
    kind, params = fit.get("type"), fit["params"]
    if kind == "sigmoid" and len(params) == 1 and "od" not in calibrated:
        return "od"
    if kind == "3d" and len(params) == 2 and "od" not in calibrated:
        return "od"
    if kind == "linear" and params == ["temp"]:
        return "temp"
    return None


def apply(state: Any, data: dict[str, list[str]]) -> tuple[dict[str, list[float | None]], dict[str, str]]:
    """(`calibrated`, `calibration`) of the broadcast: od and temp per vial, and the fit name behind each."""
    calibrated: dict[str, list[float | None]] = {}
    names: dict[str, str] = {}
    for fit in _fits(state):
        params = fit.get("params")
        if not isinstance(params, list) or not params or any(p not in data for p in params):
            continue  # its raw data did not arrive this cycle
        key = _key(fit, calibrated)
        values = _per_vial(fit, data) if key else None
        if key and values is not None:
            calibrated[key] = values
            names[key] = str(fit.get("fit") or fit.get("name") or "")
    return calibrated, names
