"""The eVOLVER fit types, applied and fitted. Pure: no I/O, no bus, nothing of the service.

Applying a fit needs only the standard library, so the scheduler or a dashboard could copy or depend on this module
alone; fitting (`fit_*`, `fit_calibration`) imports numpy/scipy when called. The retained `state/active` of the
calibration service carries exactly what `apply_fit` takes: `{"type", "params", "coefficients"}`.

The fit types, as the DPU uses them (calibrate.py, eVOLVER.py):

- `sigmoid` (OD from one photodiode): raw = a + (b - a) / (1 + 10**((c - OD) * d)); coefficients [a, b, c, d] per
  vial; applied inverse OD = c - log10((b - a) / (raw - a) - 1) / d.
- `3d` (OD from od_90 and od_135): OD = c0 + c1 x + c2 y + c3 x^2 + c4 x y + c5 y^2, x and y the two params in order.
- `linear` (temperature): degrees C = m raw + b; coefficients [m, b]; inverse raw setpoint = (C - b) / m.
- `constant` (pump): one rate per pump in mL/s; seconds = mL / rate.

Nothing here raises on bad input: the result is NaN with a reason.
"""
from __future__ import annotations

import math
import statistics
import warnings
from typing import Any, Mapping, NamedTuple, Sequence

ADC_MAX = 4095  # the temperature board's 12-bit setpoints and readings

DEFAULT_PARAMS = {"sigmoid": ["od_90"], "3d": ["od_90", "od_135"], "linear": ["temp"], "constant": ["pump"]}
COEFFICIENT_COUNT = {"sigmoid": 4, "3d": 6, "linear": 2}


class Calibrated(NamedTuple):
    """A calibrated value, or NaN with the reason it could not be computed."""

    value: float
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _nan(reason: str) -> Calibrated:
    return Calibrated(math.nan, reason)


def as_number(value: Any) -> float | None:
    """A finite float from a number or a numeric string (broadcasts carry strings); None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _coefficients(coefficients: Any, count: int) -> list[float] | str:
    if not isinstance(coefficients, (list, tuple)) or len(coefficients) != count:
        return f"expected {count} coefficients, got {coefficients!r}"
    numbers = [as_number(c) for c in coefficients]
    if any(n is None for n in numbers):
        return f"coefficients {coefficients!r} are not all finite numbers"
    return numbers  # type: ignore[return-value]


def _checked(value: float, what: str) -> Calibrated:
    return Calibrated(value) if math.isfinite(value) else _nan(f"{what} is not finite")


# -- the fit types, one vial at a time ---------------------------------------------------------------------------------

def sigmoid_raw(od: Any, coefficients: Sequence[Any]) -> Calibrated:
    """The raw photodiode reading expected at an OD (the fitted direction)."""
    coeffs = _coefficients(coefficients, 4)
    x = as_number(od)
    if isinstance(coeffs, str):
        return _nan(coeffs)
    if x is None:
        return _nan(f"OD {od!r} is not a number")
    a, b, c, d = coeffs
    try:
        return _checked(a + (b - a) / (1 + 10 ** ((c - x) * d)), "raw")
    except (OverflowError, ZeroDivisionError):
        return _nan(f"OD {x} is far outside the sigmoid's range")


def sigmoid_od(raw: Any, coefficients: Sequence[Any]) -> Calibrated:
    """OD from a raw photodiode reading; NaN when the reading is outside the sigmoid's open range (a, b)."""
    coeffs = _coefficients(coefficients, 4)
    x = as_number(raw)
    if isinstance(coeffs, str):
        return _nan(coeffs)
    if x is None:
        return _nan(f"raw reading {raw!r} is not a number")
    a, b, c, d = coeffs
    if d == 0 or a == b:
        return _nan("degenerate sigmoid (d = 0 or a = b)")
    low, high = min(a, b), max(a, b)
    if not low < x < high:
        return _nan(f"raw reading {x:g} is outside the sigmoid's range ({low:g}, {high:g})")
    ratio = (b - a) / (x - a) - 1
    if ratio <= 0:
        return _nan(f"raw reading {x:g} is outside the sigmoid's range")
    return _checked(c - math.log10(ratio) / d, "OD")


def od_3d(x: Any, y: Any, coefficients: Sequence[Any]) -> Calibrated:
    """OD from two photodiodes (the fit's params in order, normally od_90 and od_135)."""
    coeffs = _coefficients(coefficients, 6)
    if isinstance(coeffs, str):
        return _nan(coeffs)
    u, v = as_number(x), as_number(y)
    if u is None or v is None:
        return _nan(f"readings {x!r}, {y!r} are not both numbers")
    c0, c1, c2, c3, c4, c5 = coeffs
    return _checked(c0 + c1 * u + c2 * v + c3 * u * u + c4 * u * v + c5 * v * v, "OD")


def linear_temperature(raw: Any, coefficients: Sequence[Any]) -> Calibrated:
    """Degrees C from a raw thermistor reading (0..4095)."""
    coeffs = _coefficients(coefficients, 2)
    if isinstance(coeffs, str):
        return _nan(coeffs)
    x = as_number(raw)
    if x is None:
        return _nan(f"raw reading {raw!r} is not a number")
    if not 0 <= x <= ADC_MAX:
        return _nan(f"raw reading {x:g} is outside the 12-bit range 0..{ADC_MAX}")
    m, b = coeffs
    return _checked(m * x + b, "temperature")


def temperature_setpoint(celsius: Any, coefficients: Sequence[Any]) -> Calibrated:
    """The raw setpoint (an integer 0..4095) for a temperature; NaN when it falls outside what the board takes."""
    coeffs = _coefficients(coefficients, 2)
    if isinstance(coeffs, str):
        return _nan(coeffs)
    t = as_number(celsius)
    if t is None:
        return _nan(f"temperature {celsius!r} is not a number")
    m, b = coeffs
    if m == 0:
        return _nan("degenerate linear fit (slope 0)")
    raw = round((t - b) / m)
    if not 0 <= raw <= ADC_MAX:
        return _nan(f"{t:g} C needs raw setpoint {raw}, outside 0..{ADC_MAX}")
    return Calibrated(float(raw))


def pump_seconds(millilitres: Any, rate: Any) -> Calibrated:
    """How long to run a pump of `rate` mL/s to move `millilitres`."""
    volume, r = as_number(millilitres), as_number(rate)
    if volume is None or r is None:
        return _nan(f"volume {millilitres!r} or rate {rate!r} is not a number")
    if r <= 0:
        return _nan(f"pump rate {r:g} mL/s is not positive")
    if volume < 0:
        return _nan(f"volume {volume:g} mL is negative")
    return Calibrated(volume / r)


def pump_volume(seconds: Any, rate: Any) -> Calibrated:
    s, r = as_number(seconds), as_number(rate)
    if s is None or r is None:
        return _nan(f"time {seconds!r} or rate {rate!r} is not a number")
    if r <= 0 or s < 0:
        return _nan(f"time {s:g} s or rate {r:g} mL/s is out of range")
    return Calibrated(s * r)


# -- a whole fit against a broadcast ---------------------------------------------------------------------------------

def _reading(readings: Mapping[str, Sequence[Any]], param: str, index: int) -> Any:
    values = readings.get(param)
    if not isinstance(values, (list, tuple)) or index >= len(values):
        return None
    return values[index]


def apply_fit(fit: Mapping[str, Any], index: int, readings: Mapping[str, Sequence[Any]]) -> Calibrated:
    """Calibrate vial (or pump) `index` of a broadcast's `data` ({"od_90": [...16], ...}) with a fit
    ({"type", "params", "coefficients"}, as in calibrations.json or state/active)."""
    fit_type = fit.get("type")
    coefficients = fit.get("coefficients") or []
    params = list(fit.get("params") or DEFAULT_PARAMS.get(str(fit_type), []))
    if not 0 <= index < len(coefficients):
        return _nan(f"the fit has no coefficients for index {index}")
    vial = coefficients[index]
    if fit_type == "constant":
        return _nan("a constant (pump) fit has no reading to apply; use pump_seconds")
    if fit_type not in COEFFICIENT_COUNT:
        return _nan(f"unknown fit type {fit_type!r}")
    needed = 2 if fit_type == "3d" else 1
    if len(params) < needed:
        return _nan(f"a {fit_type} fit needs {needed} params, has {params}")
    values = [_reading(readings, p, index) for p in params[:needed]]
    if any(v is None for v in values):
        return _nan(f"no reading of {params[:needed]} for index {index}")
    if fit_type == "sigmoid":
        return sigmoid_od(values[0], vial)
    if fit_type == "3d":
        return od_3d(values[0], values[1], vial)
    return linear_temperature(values[0], vial)


def apply_fit_all(fit: Mapping[str, Any], readings: Mapping[str, Sequence[Any]]) -> list[Calibrated]:
    return [apply_fit(fit, i, readings) for i in range(len(fit.get("coefficients") or []))]


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


def fit_constant(volumes: Sequence[float], seconds: float) -> float:
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
    pairs = [(p, m) for p, m in zip(predicted, measured) if math.isfinite(p)]
    if not pairs:
        return None
    return math.sqrt(sum((p - m) ** 2 for p, m in pairs) / len(pairs))


def _fit_vial(fit_type: str, series: list[list[float | None]], measured: list[float | None]) -> tuple[list[float], float | None, int]:
    rows = [(*values, m) for *values, m in zip(*series, measured)
            if m is not None and all(v is not None for v in values)]
    if not rows:
        raise FitError("no complete points")
    columns = list(zip(*rows))
    inputs, target = columns[:-1], columns[-1]
    if fit_type == "sigmoid":
        coefficients = fit_sigmoid(target, inputs[0])
        predicted = [sigmoid_od(r, coefficients).value for r in inputs[0]]
    elif fit_type == "linear":
        coefficients = fit_linear(inputs[0], target)
        predicted = [coefficients[0] * r + coefficients[1] for r in inputs[0]]
    else:
        coefficients = fit_3d(inputs[0], inputs[1], target)
        predicted = [od_3d(a, b, coefficients).value for a, b in zip(inputs[0], inputs[1])]
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
            vial_coefficients, rms, points = _fit_vial(fit_type, [r[vial] for r in raws], measured_for(calibration, vial))
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


def _fit_pumps(calibration: Mapping[str, Any], volumes: list[list[float | None]]) -> tuple[list[Any], list[dict[str, Any]]]:
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
