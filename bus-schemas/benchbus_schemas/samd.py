"""The `samd` service (samd-bridge): one bus request = one complete, validated serial transaction on the eVOLVER's
shared SAMD21 line.

Field counts follow eVOLVER's conf.yml (`fields_expected_outgoing` / `fields_expected_incoming`): they count the
comma-separated fields of a frame *including* the leading `<param><type>` field and excluding the terminator.
So `od_90r,1000,_!` has 2 fields out (one value), `od_90b,<16 readings>,end` 17 fields in; a 16-vial command has
17 out, the pump 49 out and 49 in. A caller passes conf.yml's numbers straight through; `fields_out` must be
`len(values) + 1`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from .envelope import Payload
from .limits import EVOLVER_VALUES, PUMP_SECONDS_CEILING, BoardValue, HardwarePayload, evolver_value_problem, \
    number_text
from .registry import command, event, state

SERVICE = "samd"

# How a transaction can fail on the line (detail.kind of a hardware_error, and event/error's `kind`).
ErrorKind = Literal[
    "wrong_address",  # the reply names another board
    "no_terminator",  # bytes came, but never the closing `end` (truncated reply)
    "field_count_out",  # an echo reply carries a different number of fields than were sent
    "field_count_in",  # the reply's field count differs from `fields_in`
    "echo_mismatch",  # an `e` reply whose values differ from what was sent
    "bad_response_char",  # the reply's type character is neither `b` nor `e`
    "timeout",  # silence until the transaction's deadline
    "garbled",  # bytes that are not a frame (noise, collisions, non-printable bytes)
    "port_error",  # the serial port failed during the transaction (it is then reopened)
]
ERROR_KINDS: tuple[str, ...] = ErrorKind.__args__  # type: ignore[attr-defined]

PARAM_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"

Value = BoardValue  # the board's text, or a finite JSON number; bounded per board by benchbus_schemas.limits


class TransactRequest(HardwarePayload):
    """Send `<param><type>,<v1>,...,<vn>,_!`, validate the reply, then send the `a` that makes the board apply.

    Every value passes the frame rules (printable ASCII, no separator, at most 32 characters) and, for a board of
    the default eVOLVER (od_90, od_135, od_led, lxml, temp, stir, pump), that board's range (limits.EVOLVER_VALUES;
    pump seconds at most a day here: the scheduler's `max_pump_s` is the configurable maximum per pump event).
    """

    param: str = Field(..., pattern=PARAM_PATTERN, description="the board address, e.g. od_90, temp, stir, pump")
    type: Literal["r", "i"] = Field(..., description="r = recurring, i = immediate (boards treat both alike)")
    values: list[Value] = Field(..., min_length=1, max_length=256,
                                description="the values, written as text (whole numbers as digits, other "
                                            "floats as Python repr)")
    fields_out: int = Field(..., ge=2, le=257, description="conf.yml fields_expected_outgoing; must be len(values)+1")
    fields_in: int = Field(..., ge=2, le=257, description="conf.yml fields_expected_incoming: fields of the reply")
    timeout_s: float | None = Field(None, gt=0, le=30,
                                    description="deadline of one attempt; default from the baud rate and turnaround")
    retries: int | None = Field(None, ge=0, le=10, description="retries after a failed attempt; default from settings")

    @field_validator("values")
    @classmethod
    def _fit_the_board(cls, values: list[Value], info: ValidationInfo) -> list[Value]:
        param = info.data.get("param", "")
        for index, value in enumerate(values):
            problem = evolver_value_problem(param, value_text(value), PUMP_SECONDS_CEILING)
            if problem:
                raise ValueError(f"value {index}: {problem}")
        return values

    @field_validator("fields_out")
    @classmethod
    def _fields_match_values(cls, fields_out: int, info: ValidationInfo) -> int:
        values = info.data.get("values")
        if values is not None and fields_out != len(values) + 1:
            raise ValueError(f"fields_out {fields_out} does not fit {len(values)} values (expected "
                             f"{len(values) + 1}: the <param><type> field plus one per value)")
        return fields_out


def value_text(value: str | int | float) -> str:
    """How a value is written on the line."""
    if isinstance(value, str):
        return value
    return number_text(value)


KNOWN_BOARDS: tuple[str, ...] = tuple(EVOLVER_VALUES)


class TransactResult(Payload):
    param: str
    kind: Literal["data", "echo"] = Field(..., description="data = a `b` reply (readings), echo = an `e` reply")
    values: list[str] = Field(..., description="the reply's values, as the board sent them")
    attempts: int = Field(..., ge=1, description="1 unless a retry was needed")
    duration_ms: float = Field(..., description="from the first byte written to the `a` being on the wire")


class ParamCounters(Payload):
    """Per param: requests == ok + failed + unavailable; attempts == ok + sum(errors.values())."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    unavailable: int = 0
    attempts: int = 0
    errors: dict[str, int] = Field(default_factory=dict, description="failed attempts by error kind")


class LastError(Payload):
    param: str
    kind: ErrorKind
    message: str
    at: str


class BusState(Payload):
    port: str
    connected: bool
    baudrate: int
    transactions: int = Field(0, description="requests that reached the line (ok + failed)")
    ok: int = 0
    failed: int = 0
    unavailable: int = Field(0, description="requests answered `unavailable` (port gone)")
    params: dict[str, ParamCounters] = Field(default_factory=dict)
    last_error: LastError | None = None
    reopened: int = Field(0, description="times the port was reopened after it was lost")


class TransactError(Payload):
    param: str
    type: Literal["r", "i"]
    kind: ErrorKind
    message: str
    sent: str = Field(..., description="the frame written, escaped")
    raw: str = Field(..., description="the bytes received, escaped (\\xNN for non-printables)")
    attempt: int = Field(..., ge=1)
    final: bool = Field(..., description="true when no retry follows (the request failed)")
    at: str


command(SERVICE, "transact", TransactRequest, TransactResult,
        "One serial transaction: send the frame, validate the reply completely, then send the `a` (apply). "
        "Errors: invalid_request (values that do not fit, before any byte is written), hardware_error with "
        "detail.kind (see event/error), unavailable (the port is gone; it is reopened with backoff).",
        timeout_s=30)
state(SERVICE, "bus", BusState, "The serial line: port, connected, counters per param and error kind, last error.")
event(SERVICE, "error", TransactError, "Every failed attempt of a transaction, with the bytes received.")
