"""conf.yml: the eVOLVER format as users have it, validated with pydantic, merged from commands, saved atomically.

A `Conf` keeps two things: the user's mapping exactly as read (`data`, key order preserved, which is what is written
back) and the validated model (`model`, what the loop runs). Every change produces a new `Conf` through the same
validation, so the running conf is always one that passed it; a bad file or command leaves the old one in place.
That validation includes every board's physical limits (benchbus_schemas.limits, the same table the samd-bridge
checks): a value the board cannot take is refused before it is stored, let alone sent.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from benchbus import yamlfile
from benchbus.files import write_atomic
from benchbus.yamlfile import FileError, LocatedYaml, describe, problems_from
from benchbus_schemas.limits import PUMP_SECONDS_DEFAULT_MAX, evolver_problems, number_text

WAIT = "wait"  # the sub-command that pauses instead of talking to a board
CURRENT = "values"  # a sub-command value meaning "that param's current value"
KEEP = "NaN"  # an element of a command's list meaning "keep the current element"
TEMP_PREFIX = ".conf-"  # temp files of atomic saves (removed at start if a kill left one)
WAIT_MAX_S = 3600.0  # a wait holds the whole loop; an hour is beyond any real settling time


def _as_text(value: Any) -> Any:
    """YAML turns `1000` into an int; the boards and the DPU speak strings, so numbers become their text."""
    if isinstance(value, bool):
        raise ValueError("must be a string or a number, not true/false")
    if isinstance(value, (int, float)):
        return number_text(value)
    return value


Text = Annotated[str, BeforeValidator(_as_text)]
Value = Text | list[Text] | None


class SubCommand(BaseModel):
    """One `pre`/`post` entry: a board command, or `param: wait` with `value` seconds."""

    model_config = ConfigDict(extra="forbid")
    param: str = Field(..., min_length=1)
    value: float | Text | list[Text]

    @field_validator("value", mode="before")
    @classmethod
    def _wait_is_seconds(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("param") != WAIT:
            return value if isinstance(value, (list, str)) else _as_text(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("a wait needs a number of seconds")
        if value < 0:
            raise ValueError(f"a wait cannot be negative (got {value}; allowed 0..{WAIT_MAX_S:g} s)")
        if value > WAIT_MAX_S:
            raise ValueError(f"a wait is at most {WAIT_MAX_S:g} seconds (got {value})")
        return float(value)


class ExperimentalParam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recurring: bool = False
    fields_expected_outgoing: int = Field(..., ge=1, le=1000, description="address frame + values sent")
    fields_expected_incoming: int = Field(..., ge=1, le=1000, description="fields of the board's reply")
    value: Value = None
    pre: list[SubCommand] = []
    post: list[SubCommand] = []

    @field_validator("value")
    @classmethod
    def _length_matches(cls, value: Value, info: ValidationInfo) -> Value:
        outgoing = info.data.get("fields_expected_outgoing")
        if value is not None and outgoing is not None:
            problem = length_problem(value, outgoing)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("pre", "post", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class EvolverConf(BaseModel):
    """The whole file. Unknown top-level keys are kept (an older server's conf may carry some) and reported."""

    model_config = ConfigDict(extra="allow")
    experimental_params: dict[str, ExperimentalParam] = Field(..., min_length=1)
    broadcast_timing: float = Field(..., gt=0, le=86400, description="seconds from one cycle's start to the next's")
    num_sleeves: int = Field(16, ge=1, le=256)
    # used by the websocket-gateway's clients, not by the loop
    port: int | None = Field(None, ge=1, le=65535)
    evolver_ip: str | None = None
    # files of the original server; calibrations now belong to the calibration-store
    device: str | None = None
    calibration: str | None = None
    calibrations_directory: str | None = None
    fitted_data_directory: str | None = None
    raw_data_directory: str | None = None
    od_calibration_directory: str | None = None
    temp_calibration_directory: str | None = None
    # the serial line belongs to the samd-bridge (its own settings); accepted so existing files load unchanged
    serial_end_outgoing: str | None = None
    serial_end_incoming: str | None = None
    serial_port: str | None = None
    serial_baudrate: int | None = Field(None, gt=0)
    serial_timeout: float | None = Field(None, ge=0)
    serial_delay: float | None = Field(None, ge=0)
    recurring_command_char: str | None = None
    immediate_command_char: str | None = None
    echo_response_char: str | None = None
    data_response_char: str | None = None
    acknowledge_char: str | None = None


def length_problem(value: str | list[str] | None, fields_out: int) -> str | None:
    """Why `value` cannot go out in a frame of `fields_out` fields (the address counts as one), or None."""
    count = len(value) if isinstance(value, list) else 1
    if count == fields_out - 1:
        return None
    shown = f"{count} values" if isinstance(value, list) else "a single value"
    return f"{shown} disagree with fields_expected_outgoing {fields_out} (which means {fields_out - 1} values)"


def values_of(value: str | list[str] | None) -> list[str]:
    """The values of a frame: a scalar is one value."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def limit_problems(model: EvolverConf, max_pump_s: float) -> list[tuple[tuple[str | int, ...], str]]:
    """Every value, main or pre/post, that its board cannot take (benchbus_schemas.limits)."""
    problems = []
    params = model.experimental_params
    for name, param in params.items():
        for index, why in evolver_problems(name, values_of(param.value), max_pump_s):
            where = ("experimental_params", name, "value") + ((index,) if isinstance(param.value, list) else ())
            problems.append((where, why))
        for phase in ("pre", "post"):
            for number, sub in enumerate(getattr(param, phase)):
                if sub.param == WAIT or sub.value == CURRENT or isinstance(sub.value, float):
                    continue  # a wait is checked by its model, "values" is the param's own (checked above)
                where = ("experimental_params", name, phase, number, "value")
                for index, why in evolver_problems(sub.param, values_of(sub.value), max_pump_s):
                    problems.append((where + ((index,) if isinstance(sub.value, list) else ()), why))
    return problems


def cross_problems(model: EvolverConf) -> list[tuple[tuple[str | int, ...], str]]:
    """What one param says about another: sub-commands must name a known param and fit its frame."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    params = model.experimental_params
    for name, param in params.items():
        if param.recurring and param.value is None:
            problems.append((("experimental_params", name, "value"), "a recurring param needs a value"))
        for phase in ("pre", "post"):
            for index, sub in enumerate(getattr(param, phase)):
                where = ("experimental_params", name, phase, index)
                if sub.param == WAIT:
                    continue
                target = params.get(sub.param)
                if target is None:
                    known = ", ".join([WAIT, *params])
                    problems.append((where + ("param",), f"unknown param '{sub.param}' (known: {known})"))
                elif sub.value == CURRENT:
                    if target.value is None:
                        problems.append((where + ("value",), f"'values' but {sub.param} has no value"))
                elif isinstance(sub.value, float):
                    problems.append((where + ("value",), f"{sub.param} needs text values, not a number"))
                else:
                    problem = length_problem(sub.value, target.fields_expected_outgoing)
                    if problem:
                        problems.append((where + ("value",), f"for {sub.param}: {problem}"))
    return problems


@dataclass(frozen=True)
class Conf:
    data: dict  # the mapping as the user wrote it (key order kept); what gets saved
    model: EvolverConf
    source: str  # the file (or "bus") it came from
    warnings: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, ExperimentalParam]:
        return self.model.experimental_params

    def experimental_params_json(self) -> dict:
        """`experimental_params` as the DPU sees it in `config` (values as strings, in conf order)."""
        shown = {}
        for name, param in self.params.items():
            entry = param.model_dump()
            for phase in ("pre", "post"):
                if not entry[phase]:
                    del entry[phase]  # the original shows pre/post only where the file has them
            shown[name] = entry
        return shown


def validate(data: Any, source: str, located: LocatedYaml | None = None,
             max_pump_s: float = PUMP_SECONDS_DEFAULT_MAX) -> Conf:
    """Validate a parsed mapping; raises FileError naming the source, line and field of every problem.

    `max_pump_s` is the most seconds one pump event may run (the scheduler's setting)."""
    if not isinstance(data, dict):
        raise FileError(source, [{"field": None, "line": 1, "message": "must be a mapping (experimental_params, ...)"}])
    try:
        model = EvolverConf.model_validate(data)
    except ValidationError as exc:
        raise FileError(source, problems_from(exc, located)) from None
    cross = cross_problems(model) + limit_problems(model, max_pump_s)
    if cross:
        raise FileError(source, [{"field": ".".join(map(str, loc)), "line": located.line_of(loc) if located else None,
                                  "message": message} for loc, message in cross])
    extra = sorted((model.model_extra or {}).keys())
    warnings = tuple(describe(source, {"field": key, "line": located.line_of([key]) if located else None,
                                       "message": "unknown key, kept as is and not used"}) for key in extra)
    return Conf(data=data, model=model, source=source, warnings=warnings)


def parse_text(text: str, source: str, max_pump_s: float = PUMP_SECONDS_DEFAULT_MAX) -> Conf:
    located = LocatedYaml(text, source)
    return validate(located.data, source, located, max_pump_s)


def load(path: Path, max_pump_s: float = PUMP_SECONDS_DEFAULT_MAX) -> Conf:
    """Read and validate a conf.yml (size-limited, aliases refused: benchbus.yamlfile)."""
    return parse_text(read_text(path), str(path), max_pump_s)


def read_text(path: Path) -> str:
    """A conf file's text; one larger than the YAML limit is refused without reading it whole."""
    return yamlfile.read_text(path)


# -- commands --------------------------------------------------------------------------------------------------------


class CommandRefused(Exception):
    """A command that cannot be merged: `code` is the bus error code, `field` the request field at fault."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _keeps(element: Any) -> bool:
    return element == KEEP or (isinstance(element, float) and math.isnan(element))


def merged_value(current: str | list[str] | None, new: Any) -> str | list[str] | None:
    """A list merges element-wise ("NaN" keeps the current element); anything else replaces."""
    if not isinstance(new, list):
        return current if _keeps(new) else _as_text(new)
    merged = []
    for index, element in enumerate(new):
        if not _keeps(element):
            merged.append(_as_text(element))
            continue
        if not isinstance(current, list) or index >= len(current):
            raise CommandRefused("invalid_request", f"value[{index}] is NaN but there is no current element "
                                 f"{index} to keep", "value")
        merged.append(current[index])
    return merged


def apply_command(conf: Conf, param: str, value: Any = None, recurring: bool | None = None,
                  fields_out: int | None = None, fields_in: int | None = None, value_given: bool = True,
                  max_pump_s: float = PUMP_SECONDS_DEFAULT_MAX) -> Conf:
    """The conf after a DPU `command`; refuses an unknown param, a value that does not fit the frame and one that
    its board cannot take (the whole new conf passes the same validation as a file)."""
    if param not in conf.params:
        raise CommandRefused("not_found", f"unknown param '{param}'; known: {', '.join(conf.params)}", "param")
    data = copy.deepcopy(conf.data)
    entry = data["experimental_params"][param]
    current = conf.params[param]
    outgoing = fields_out if fields_out is not None else current.fields_expected_outgoing
    if value_given and value is not None:
        new_value = merged_value(current.value, value)
        problem = length_problem(new_value, outgoing)
        if problem:
            raise CommandRefused("invalid_request", f"{param}: {problem}", "value")
        entry["value"] = new_value
    elif fields_out is not None and current.value is not None and length_problem(current.value, outgoing):
        raise CommandRefused("invalid_request", f"{param}: {length_problem(current.value, outgoing)}",
                             "fields_expected_outgoing")
    if recurring is not None:
        entry["recurring"] = recurring
    if fields_out is not None:
        entry["fields_expected_outgoing"] = fields_out
    if fields_in is not None:
        entry["fields_expected_incoming"] = fields_in
    try:
        return validate(data, conf.source, max_pump_s=max_pump_s)
    except FileError as error:  # a value its board cannot take, or a sub-command that no longer fits this frame
        first = error.problems[0]
        raise CommandRefused("invalid_request", f"field 'value': the conf would become invalid: {first['field']}: "
                             f"{first['message']}", "value") from None


# -- saving ----------------------------------------------------------------------------------------------------------


def dump(data: dict) -> str:
    """YAML in the user's key order; lists of scalars on one line, as the shipped files write them."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100000)


def save_atomic(path: Path, text: str) -> None:
    """A kill leaves the old conf.yml or the new one, never a torn file."""
    write_atomic(path, text, TEMP_PREFIX)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Temp files left by a save that was killed before its rename (the conf itself is intact)."""
    stale = list(folder.glob(f"{TEMP_PREFIX}*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
