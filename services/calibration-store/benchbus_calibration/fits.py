"""Fitting the eVOLVER fit types (numpy/scipy, imported when called). Pure: no I/O, no bus, nothing of the service.

Applying a fit (what each type computes, and its inverse) lives in `benchbus_schemas.calibration_math`, shared with
the scheduler and the gateway; its names are re-exported here so the service and its tests use one module.
"""
from __future__ import annotations

import math
import statistics
import warnings
from typing import Any
from collections.abc import Mapping, Sequence

from benchbus_schemas.calibration_math import (  # noqa: F401  (re-exported: the application half of the fit types)
    ADC_MAX,
    COEFFICIENT_COUNT,
    DEFAULT_PARAMS,
    Calibrated,
    apply_fit,
    apply_fit_all,
    as_number,
    linear_temperature,
    od_3d,
    pump_seconds,
    pump_volume,
    sigmoid_od,
    sigmoid_raw,
    temperature_setpoint,
)


# -- fitting (numpy/scipy) -------------------------------------------------------------------------------------------

class FitError(ValueError):
    """The data cannot be fitted; `vials` says which and why."""

    def __init__(self, message: str, vials: dict[int, str] | None = None):
        super().__init__(message)
        self.vials = vials or {}


def fit_sigmoid(od: Sequence[float], raw: Sequence[float]) -> list[float]:
    """[a, b, c, d] of raw = a + (b - a) / (1 + 10**((c - OD) d)), least squares in raw units."""
    import numpy as np
    from scipy.optimize import curve_fit

    x, y = np.asarray(od, float), np.asarray(raw, float)
    if len(x) < 4:
        raise FitError(f"a sigmoid needs at least 4 points, got {len(x)}")
    decreasing = np.polyfit(x, y, 1)[0] < 0
    guess = [y.min(), y.max(), float(np.median(x)), -1.0 if decreasing else 1.0]

    def model(t, a, b, c, d):
        return a + (b - a) / (1 + np.power(10.0, np.clip((c - t) * d, -300, 300)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "covariance could not be estimated" with exactly 4 points: the fit is fine
        coefficients, _ = curve_fit(model, x, y, p0=guess, maxfev=20000)
    if not np.all(np.isfinite(coefficients)):
        raise FitError("the sigmoid fit did not converge")
    return [float(c) for c in coefficients]


def fit_linear(raw: Sequence[float], measured: Sequence[float]) -> list[float]:
    """[m, b] of measured = m raw + b."""
    import numpy as np

    x, y = np.asarray(raw, float), np.asarray(measured, float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise FitError("a line needs at least 2 points with different raw values")
    m, b = np.polyfit(x, y, 1)
    return [float(m), float(b)]


def fit_3d(x: Sequence[float], y: Sequence[float], od: Sequence[float]) -> list[float]:
    """[c0..c5] of OD = c0 + c1 x + c2 y + c3 x^2 + c4 x y + c5 y^2, least squares."""
    import numpy as np

    u, v, z = np.asarray(x, float), np.asarray(y, float), np.asarray(od, float)
    if len(u) < 6:
        raise FitError(f"a 3d fit needs at least 6 points, got {len(u)}")
    design = np.column_stack([np.ones_like(u), u, v, u * u, u * v, v * v])
    # raw readings near 60000 make x^2 near 4e9: scale the columns so the solve is well conditioned
    scale = np.linalg.norm(design, axis=0)
    scale[scale == 0] = 1.0
    solution, *_ = np.linalg.lstsq(design / scale, z, rcond=None)
    return [float(c) for c in solution / scale]


def fit_constant(volumes: Sequence[float], seconds: float | None) -> float:
    """mL/s of one pump: the measured volume over the run time."""
    import numpy as np

    if not seconds or seconds <= 0:
        raise FitError(f"run time {seconds!r} s must be positive")
    if len(volumes) == 0:
        raise FitError("no volume measured")
    return float(np.median(np.asarray(volumes, float))) / float(seconds)


def _point_value(point: Any) -> float | None:
    """A raw point is one number or a list of samples (their median, as calibrate.py takes it)."""
    if isinstance(point, (list, tuple)):
        samples = [n for n in (as_number(p) for p in point) if n is not None]
        return statistics.median(samples) if samples else None
    return as_number(point)


def raw_points(calibration: Mapping[str, Any], param: str) -> list[list[float | None]]:
    for entry in calibration.get("raw") or []:
        if entry.get("param") == param:
            return [[_point_value(p) for p in (vial if isinstance(vial, (list, tuple)) else [vial])]
                    for vial in entry.get("vialData") or []]
    raise FitError(f"calibration {calibration.get('name')!r} has no raw data for {param!r}")


def measured_for(calibration: Mapping[str, Any], vial: int) -> list[float | None]:
    """Measured values of one vial: a list of lists is per vial; a flat list is the same series for every vial."""
    measured = calibration.get("measuredData") or []
    if measured and all(isinstance(m, (list, tuple)) for m in measured):
        return [as_number(m) for m in measured[vial]] if vial < len(measured) else []
    return [as_number(m) for m in measured]


def _residual_rms(predicted: Sequence[float], measured: Sequence[float]) -> float | None:
    pairs = [(p, m) for p, m in zip(predicted, measured, strict=True) if math.isfinite(p)]
    if not pairs:
        return None
    return math.sqrt(sum((p - m) ** 2 for p, m in pairs) / len(pairs))


def _fit_vial(fit_type: str, series: list[list[float | None]],
              measured: list[float | None]) -> tuple[list[float], float | None, int]:
    rows = [(*values, m) for *values, m in zip(*series, measured, strict=False)
            if m is not None and all(v is not None for v in values)]
    if not rows:
        raise FitError("no complete points")
    columns = list(zip(*rows, strict=True))
    inputs, target = columns[:-1], columns[-1]
    if fit_type == "sigmoid":
        coefficients = fit_sigmoid(target, inputs[0])
        predicted = [sigmoid_od(r, coefficients).value for r in inputs[0]]
    elif fit_type == "linear":
        coefficients = fit_linear(inputs[0], target)
        predicted = [coefficients[0] * r + coefficients[1] for r in inputs[0]]
    else:
        coefficients = fit_3d(inputs[0], inputs[1], target)
        predicted = [od_3d(a, b, coefficients).value for a, b in zip(inputs[0], inputs[1], strict=True)]
    return coefficients, _residual_rms(predicted, target), len(rows)


def fit_calibration(calibration: Mapping[str, Any], fit_type: str,
                    params: Sequence[str] | None = None) -> tuple[list[Any], list[dict[str, Any]]]:
    """Fit every vial (or pump) of a calibration (a calibrations.json entry as a dict).

    Returns (coefficients, quality): coefficients in the calibrations.json layout, and per vial
    {vial, points, rms}. Raises FitError naming the vials that cannot be fitted.
    """
    params = list(params or DEFAULT_PARAMS.get(fit_type, []))
    needed = 2 if fit_type == "3d" else 1
    if fit_type not in DEFAULT_PARAMS:
        raise FitError(f"unknown fit type {fit_type!r}")
    if len(params) != needed:
        raise FitError(f"a {fit_type} fit takes {needed} param(s), got {params}")
    raws = [raw_points(calibration, p) for p in params]
    if fit_type == "constant":
        return _fit_pumps(calibration, raws[0])
    vials = min(len(r) for r in raws)
    coefficients: list[Any] = []
    quality: list[dict[str, Any]] = []
    failures: dict[int, str] = {}
    for vial in range(vials):
        try:
            vial_coefficients, rms, points = _fit_vial(fit_type, [r[vial] for r in raws],
                                                       measured_for(calibration, vial))
        except (FitError, RuntimeError, ValueError, TypeError) as exc:  # scipy reports non-convergence as RuntimeError
            failures[vial] = str(exc)
            continue
        coefficients.append(vial_coefficients)
        quality.append({"vial": vial, "points": points, "rms": rms})
    if failures:
        listed = ", ".join(f"{v} ({why})" for v, why in sorted(failures.items()))
        raise FitError(f"cannot fit vial(s) {listed}", failures)
    if not coefficients:
        raise FitError("no vial data to fit")
    return coefficients, quality


def _fit_pumps(calibration: Mapping[str, Any],
               volumes: list[list[float | None]]) -> tuple[list[Any], list[dict[str, Any]]]:
    measured = [as_number(m) for m in (calibration.get("measuredData") or [])
                if not isinstance(m, (list, tuple))]
    rates: list[Any] = []
    quality: list[dict[str, Any]] = []
    failures: dict[int, str] = {}
    for pump, points in enumerate(volumes):
        seconds = measured[pump] if len(measured) == len(volumes) else (measured[0] if len(measured) == 1 else None)
        try:
            rates.append(fit_constant([p for p in points if p is not None], seconds))
            quality.append({"vial": pump, "points": len(points), "rms": None})
        except FitError as exc:
            failures[pump] = str(exc)
    if failures:
        raise FitError(f"cannot fit pump(s) {', '.join(map(str, sorted(failures)))}", failures)
    return rates, quality
