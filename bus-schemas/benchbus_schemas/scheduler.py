"""The `scheduler` service (broadcast-scheduler): the eVOLVER broadcast loop driven by conf.yml.

`event/broadcast` keeps the eVOLVER Socket.IO `broadcast` shape (`data`, `config`, `ip`, `timestamp`, values as
strings) so the websocket-gateway can forward it unchanged to the DPU and GUI; the keys after those are what the
original lacks. `cmd/command` takes the DPU's `command` payload as it is.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from .envelope import Empty, Payload
from .limits import BoardValue, HardwarePayload, board_scalar
from .registry import command, event, state

SERVICE = "scheduler"

Phase = Literal["pre", "main", "post", "immediate"]


def _command_value(value: Any) -> Any:
    """One clear error naming the element (rather than one per branch of the scalar-or-list union)."""
    if isinstance(value, list):
        for index, element in enumerate(value):
            if element is not None:
                try:
                    board_scalar(element)
                except ValueError as exc:
                    raise ValueError(f"element {index}: {exc}") from None
        return value
    return value if value is None else board_scalar(value)


class CommandRequest(HardwarePayload):
    """The DPU/GUI `command`: a scalar or per-vial list; in a list the text "NaN" keeps the current element.

    Values are the board's text (as the DPU sends them) or finite JSON numbers; the merged conf is validated against
    each board's limits (benchbus_schemas.limits: stir 0..98, temp and LED levels 0..4095, OD samples 1..65535, pump
    seconds 0..the scheduler's `max_pump_s`) before it is stored, so a refused value is never written or sent.
    """

    param: str = Field(..., pattern=r"^[A-Za-z0-9_]{1,64}$")
    value: Annotated[BoardValue | list[BoardValue | None] | None, BeforeValidator(_command_value)] = None
    immediate: bool | None = False
    recurring: bool | None = None
    fields_expected_outgoing: int | None = Field(None, ge=1, le=1000)
    fields_expected_incoming: int | None = Field(None, ge=1, le=1000)
    idempotency_key: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="the caller's name for this command: the same key again from the same principal is answered "
                    "with the first reply and sends nothing (a caller that died mid-call resends it, no double dose)")


class CommandAccepted(Payload):
    """The reply: the command is merged and stored in conf.yml; `event/command_result` follows."""

    command_id: str
    param: str
    value: str | list[str] | None = Field(..., description="the param's stored value after the merge")
    immediate: bool
    applies: Literal["next_boundary", "next_cycle", "not_sent"] = Field(
        ..., description="next_boundary: sent as an immediate command at the next group boundary; next_cycle: sent "
                         "with the next recurring cycle; not_sent: stored only (not immediate, not recurring)")
    repeated: bool = Field(False, description="this idempotency_key was already taken: the first command's reply, "
                                              "nothing new stored or sent")


class StepError(Payload):
    code: str = Field(..., description="the bus error code (hardware_error, timeout, unavailable, ...)")
    kind: str = Field(..., description="the samd-bridge's detail.kind for hardware errors, else the code")
    message: str


class CommandResult(Payload):
    """A command has reached the board (applied: the board echoed and was told to apply) or has failed."""

    command_id: str
    param: str
    client: str | None = None
    outcome: Literal["applied", "failed", "stored", "dropped"] = Field(
        ..., description="stored: kept in conf.yml, nothing to send (not recurring, not immediate); dropped: the "
                         "conf was replaced before it was sent")
    values: list[str] = Field([], description="the values sent to the board")
    reply_kind: Literal["data", "echo"] | None = None
    reply_values: list[str] = []
    error: StepError | None = None
    attempts: int | None = None
    duration_ms: float | None = None


class GetConfigResult(Payload):
    config: dict[str, Any] = Field(..., description="the whole conf as the original `config` event: its keys in file "
                                                    "order plus evolver_ip")
    source: str = Field(..., description="where the running conf was loaded from")
    path: str = Field(..., description="the conf.yml the scheduler persists to")
    paused: bool
    warnings: list[str] = []
    alternates: list[str] = Field([], description="names accepted by load_conf's `alternate`")


class LoadConfRequest(Payload):
    """Replace the running conf: YAML text, or the name of a shipped alternate (e.g. stir_pause_on_od)."""

    text: str | None = Field(None, max_length=1_000_000)
    alternate: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)

    @model_validator(mode="after")
    def _exactly_one(self) -> LoadConfRequest:
        if (self.text is None) == (self.alternate is None):
            raise ValueError("give exactly one of `text` (conf.yml content) or `alternate` (a shipped conf's name)")
        return self


class LoadConfResult(Payload):
    source: str
    recurring: list[str] = Field(..., description="the recurring params, in cycle order")
    broadcast_timing: float
    warnings: list[str] = []


class PauseResult(Payload):
    paused: bool


class StepReport(Payload):
    group: str = Field(..., description="the param whose pre/main/post group this step belongs to")
    phase: Phase
    param: str = Field(..., description="the board address, or `wait`")
    duration_s: float
    status: str = Field(..., description="ok, or the error kind")


class Broadcast(Payload):
    """eVOLVER's `broadcast` (data, config, ip, timestamp) plus status, cycle timing and calibrated values."""

    data: dict[str, list[str]] = Field(..., description="raw board data of params that answered with data (`b`)")
    config: dict[str, Any] = Field(..., description="experimental_params as in conf.yml")
    ip: str
    timestamp: float = Field(..., description="UNIX time the cycle ended")
    status: dict[str, str] = Field(..., description="per recurring param: ok, the error kind of its main command, "
                                                    "or `<phase>:<param>:<kind>` when a pre/post step failed")
    errors: dict[str, str] = Field({}, description="the error message of each param whose status is not ok")
    cycle: int
    cycle_s: float = Field(..., description="how long this cycle took")
    broadcast_timing: float
    calibrated: dict[str, list[float | None]] = Field(
        {}, description="od (from the active OD fit) and temp (degrees C, from the active temperature fit) per vial, "
                        "where an active calibration exists; null where a vial's value is out of the fit's range")
    calibration: dict[str, str] = Field({}, description="the name of the fit behind each calibrated key")


class Overrun(Payload):
    cycle: int
    cycle_s: float
    broadcast_timing: float
    overrun_s: float = Field(..., description="how much longer than broadcast_timing the cycle took")
    steps: list[StepReport] = Field(..., description="every step of the cycle, in the order run")
    slowest: list[StepReport] = Field(..., description="the steps that took the most time, slowest first")


class ConfigState(Payload):
    experimental_params: dict[str, Any]
    broadcast_timing: float
    num_sleeves: int
    source: str
    paused: bool


command(SERVICE, "command", CommandRequest, CommandAccepted,
        "The DPU's `command`: merge into conf.yml and persist; run at the next group boundary when immediate. "
        "Replies once stored; event/command_result says when it was applied or failed.")
command(SERVICE, "get_config", Empty, GetConfigResult, "The whole conf (the original `getconfig`).")
command(SERVICE, "load_conf", LoadConfRequest, LoadConfResult,
        "Replace the conf with a validated one; a bad one is refused with line and field and the running conf stays.")
command(SERVICE, "pause", Empty, PauseResult,
        "Stop starting cycles (the running group finishes; immediates still run).")
command(SERVICE, "resume", Empty, PauseResult, "Start cycles again.")
event(SERVICE, "broadcast", Broadcast, "After each cycle: the eVOLVER broadcast payload plus status and timing.")
event(SERVICE, "overrun", Overrun, "A cycle took longer than broadcast_timing; the next one started at once.")
event(SERVICE, "command_result", CommandResult, "A command was applied by its board, or failed.")
state(SERVICE, "config", ConfigState, "The running experimental params, retained.")
