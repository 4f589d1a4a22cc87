"""The physical limits of every board a bus value can reach: the one place each board's facts live.

The request models of `samd`, `scheduler`, `smoothie` and `gpio` take their bounds from here, and the scheduler
validates conf.yml with the same functions, so a value is refused (invalid_request naming the field and the allowed
range) before a byte is written or a file is stored.

Numbers on the bus are JSON numbers (`HardwareNumber`: strict, finite; `"100"` and `true` are not numbers). The one
exception is the eVOLVER's own value format: the boards read their values as text (`"4095"`, `"2.50|60"`, `"--"`)
and the DPU sends them so, so those are parsed here with a strict ASCII grammar (no `inf`, `nan`, `1_000`, unicode
digits, spaces or signs, all of which Python's `float()` and `int()` would take) and then range-checked.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints

# -- strict types for every payload bound for hardware ---------------------------------------------------------------

HardwareNumber = Annotated[float, Strict(), AllowInfNan(False)]  # an int is accepted; "1", true, NaN, inf are not
HardwareInt = Annotated[int, Strict()]


def board_scalar(value: object) -> object:
    """One clear error for what is neither text nor a finite number (a bool is not a number here)."""
    if isinstance(value, bool):
        raise ValueError("true/false is not a value a board can take: give a number or its text")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a number a board can take (finite numbers only)")
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"must be text or a number, not {type(value).__name__}")
    return value


# One value of an eVOLVER frame: the board's text ("4095", "2.50|60"), or a finite JSON number; its range is the
# board's (EVOLVER_VALUES), checked where the board address is known.
BoardValue = Annotated[str | HardwareInt | HardwareNumber, BeforeValidator(board_scalar)]


class HardwarePayload(BaseModel):
    """Base of a request whose values reach a board: unknown keys, strings for numbers, NaN and infinity refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# -- eVOLVER (SAMD21 boards on the RS-485 line; reference A2, evolver-arduino sketches) ------------------------------

VIALS = 16
PUMPS = 48  # 0-15 IN1 (media in), 16-31 efflux, 32-47 IN2
VALUE_TEXT_MAX = 32  # characters of one frame field (the longest real one is an IPP spec like `12.500|16|3`)

# The firmware counts pump time in int milliseconds; a day is far beyond any real bolus and far below the overflow.
PUMP_SECONDS_CEILING = 86_400.0
PUMP_SECONDS_DEFAULT_MAX = 600.0  # the scheduler's default `max_pump_s` (a setting, at most the ceiling)
PUMP_PERIOD_MAX_S = 86_400  # chemostat period: whole seconds (the firmware reads it with toInt)
IPP_HZ_MAX = 100.0  # IPP solenoid cycling frequency
IPP_NUMBER_MAX = PUMPS - 1
IPP_SOLENOIDS = (1, 3)

_INTEGER = re.compile(r"[0-9]{1,10}")
_DECIMAL = re.compile(r"[0-9]{1,10}(\.[0-9]{1,10})?([eE][-+]?[0-9]{1,3})?")
PUMP_LEAVE = "--"  # the pump firmware's own "leave this pump alone"


@dataclass(frozen=True)
class IntLevel:
    """A whole number from `low` to `high`, written as decimal digits."""

    low: int
    high: int
    meaning: str

    def describe(self) -> str:
        return f"a whole number {self.low}..{self.high} ({self.meaning})"

    def problem(self, text: str, _max_pump_s: float) -> str | None:
        if not _INTEGER.fullmatch(text) or not self.low <= int(text) <= self.high:
            return f"{text!r} is not {self.describe()}"
        return None


@dataclass(frozen=True)
class PumpField:
    """One of the 48 pump fields: `--`, `t` (run once t s; 0 stops), `t|p` (t s every p s), `hz|n|s` (IPP)."""

    def describe(self, max_pump_s: float = PUMP_SECONDS_CEILING) -> str:
        return (f"'--', seconds 0..{max_pump_s:g}, 'seconds|period' (period a whole 0..{PUMP_PERIOD_MAX_S} s, 0 = "
                f"once, else longer than the seconds) or 'hz|ipp|solenoid' (hz 0..{IPP_HZ_MAX:g}, "
                f"ipp 0..{IPP_NUMBER_MAX}, solenoid "
                f"{IPP_SOLENOIDS[0]}..{IPP_SOLENOIDS[1]})")

    def problem(self, text: str, max_pump_s: float) -> str | None:
        if text == PUMP_LEAVE:
            return None
        parts = text.split("|")
        check = {1: _once_problem, 2: _chemostat_problem, 3: _ipp_problem}.get(len(parts), _too_many)
        reason = check(parts, max_pump_s)
        return None if reason is None else f"{text!r}: {reason}; a pump field is {self.describe(max_pump_s)}"


def decimal(text: str) -> float | None:
    """The value of a non-negative decimal written as the boards read it, or None (not one, or not finite)."""
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _seconds_problem(text: str, max_pump_s: float) -> str | None:
    seconds = decimal(text)
    if seconds is None:
        return f"pump seconds {text!r} is not a number 0..{max_pump_s:g}"
    if seconds > max_pump_s:
        return f"pump seconds {text} exceed the maximum per pump event, {max_pump_s:g} s"
    return None


def _once_problem(parts: list[str], max_pump_s: float) -> str | None:
    return _seconds_problem(parts[0], max_pump_s)


def _chemostat_problem(parts: list[str], max_pump_s: float) -> str | None:
    problem = _seconds_problem(parts[0], max_pump_s)
    if problem:
        return problem
    if not _INTEGER.fullmatch(parts[1]) or int(parts[1]) > PUMP_PERIOD_MAX_S:
        return f"period {parts[1]!r} is not a whole number of seconds 0..{PUMP_PERIOD_MAX_S}"
    period = int(parts[1])  # 0: no repeat (the DPU stops a chemostat with `0|0`)
    if period and float(parts[0]) >= period:
        return f"{parts[0]} s every {parts[1]} s would never stop the pump"
    return None


def _ipp_problem(parts: list[str], _max_pump_s: float) -> str | None:
    hz = decimal(parts[0])
    if hz is None or hz > IPP_HZ_MAX:
        return f"IPP frequency {parts[0]!r} is not 0..{IPP_HZ_MAX:g} Hz"
    if not _INTEGER.fullmatch(parts[1]) or int(parts[1]) > IPP_NUMBER_MAX:
        return f"IPP number {parts[1]!r} is not 0..{IPP_NUMBER_MAX}"
    low, high = IPP_SOLENOIDS
    if not _INTEGER.fullmatch(parts[2]) or not low <= int(parts[2]) <= high:
        return f"IPP solenoid {parts[2]!r} is not {low}..{high}"
    return None


def _too_many(parts: list[str], _max_pump_s: float) -> str:
    return f"{len(parts) - 1} '|' separators (at most 2)"


# What each board address takes, per value. The OD boards sum 16-bit readings in a 32-bit accumulator, so more than
# 65535 samples per vial would overflow; od_led and lxml drive TLC5940 channels (12 bit); temp setpoints are raw
# 12-bit thermistor ADC counts (4095 ~ heater off, lower = hotter); the stir board's PWM frame has 98 steps (0 = off,
# 98 = on the whole frame).
EVOLVER_VALUES: dict[str, IntLevel | PumpField] = {
    "od_90": IntLevel(1, 65535, "OD samples averaged per vial"),
    "od_135": IntLevel(1, 65535, "OD samples averaged per vial"),
    "od_led": IntLevel(0, 4095, "OD LED level, 4095 = full on"),
    "lxml": IntLevel(0, 4095, "light level, 4095 = full on"),
    "temp": IntLevel(0, 4095, "raw thermistor ADC setpoint, 4095 ~ heater off, lower = hotter"),
    "stir": IntLevel(0, 98, "stir level, 0 = off"),
    "pump": PumpField(),
}

_FRAME_BREAKERS = re.compile(r"[,!]|^end$")  # `,` splits fields, `!` ends a frame, `end` ends a reply


def text_problem(text: str) -> str | None:
    """What makes `text` unfit for any frame field, whatever the board: empty, too long, non-ASCII, a separator."""
    if not text:
        return "empty"
    if len(text) > VALUE_TEXT_MAX:
        return f"longer than {VALUE_TEXT_MAX} characters"
    if not all(" " < ch <= "~" for ch in text):
        return f"{text!r} holds a space or a character that is not printable ASCII"
    if _FRAME_BREAKERS.search(text):
        return f"{text!r} contains a frame separator (',', '!') or is 'end'"
    return None


def evolver_value_problem(param: str, text: str, max_pump_s: float = PUMP_SECONDS_CEILING) -> str | None:
    """Why board `param` cannot take `text` as one value, or None. Unknown addresses get the frame rules only."""
    problem = text_problem(text)
    if problem:
        return problem
    rule = EVOLVER_VALUES.get(param)
    return None if rule is None else rule.problem(text, min(max_pump_s, PUMP_SECONDS_CEILING))


def evolver_problems(param: str, texts: list[str], max_pump_s: float = PUMP_SECONDS_CEILING) -> list[tuple[int, str]]:
    """(index, why) for every value of a frame to `param` that its board cannot take."""
    found = []
    for index, text in enumerate(texts):
        problem = evolver_value_problem(param, text, max_pump_s)
        if problem:
            found.append((index, f"{param} value {index}: {problem}"))
    return found


def number_text(value: int | float) -> str:
    """How a JSON number is written on the line: whole numbers as digits, others as their shortest repr."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value) if isinstance(value, int) else repr(value)


# -- Smoothieboard (OT-2 motion) -------------------------------------------------------------------------------------

MOTOR_CURRENT_MAX_A = 2.5  # the OT-2 drivers' ceiling
AXIS_SPEED_MAX_MM_S = 1000.0  # M203.1 per-axis max speed
MOVE_SPEED_MAX_MM_S = 600.0  # one move's feed rate
PROBE_SPEED_MAX_MM_S = 50.0
DWELL_MAX_S = 300.0
GCODE_LINE = Annotated[str, Strict(), StringConstraints(pattern=r"^[\x20-\x7e]{1,200}$")]

Amps = Annotated[float, Strict(), AllowInfNan(False), Field(ge=0, le=MOTOR_CURRENT_MAX_A)]
AxisSpeed = Annotated[float, Strict(), AllowInfNan(False), Field(gt=0, le=AXIS_SPEED_MAX_MM_S)]

# -- gpio (the OT-2's Pi header: rail lights, button LED, board lines) -----------------------------------------------

BLINK_PERIOD_S = (0.05, 60.0)
IDENTIFY_MAX_S = 3600.0
PULSE_S = (0.001, 5.0)
SETTLE_MAX_S = 5.0
