"""What a calibration fit computes: the meaning of the `calibration/state/active` payload.

The calibration-store publishes its active fits retained on `calibration/state/active`, each as
`{"type", "params", "coefficients"}`; this module says what a fit of each type computes from the readings of a
broadcast, and its inverse. It is shared by the calibration-store (which fits), the broadcast-scheduler (which
publishes calibrated values) and the websocket-gateway's dashboard, so the formulas exist once. It declares no topics.

The fit types, as the DPU uses them (calibrate.py, eVOLVER.py):

- `sigmoid` (OD from one photodiode): raw = a + (b - a) / (1 + 10**((c - OD) * d)); coefficients [a, b, c, d] per
  vial; applied inverse OD = c - log10((b - a) / (raw - a) - 1) / d.
- `3d` (OD from od_90 and od_135): OD = c0 + c1 x + c2 y + c3 x^2 + c4 x y + c5 y^2, x and y the two params in order.
- `linear` (temperature): degrees C = m raw + b; coefficients [m, b]; inverse raw setpoint = (C - b) / m.
- `constant` (pump): one rate per pump in mL/s; seconds = mL / rate.

Standard library only. Nothing here raises on bad input: the result is NaN with a reason.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple
from collections.abc import Mapping, Sequence

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
