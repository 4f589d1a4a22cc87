"""The `experiment` service: the eVOLVER rig's experiments run on the device itself.

An experiment is a declared, versioned definition (`ExperimentDefinition`, JSON or YAML with the same keys):
vial groups, each with a mode and its setpoints, the vial volume, when it runs, and its safety limits. The service
decides on every `scheduler/event/broadcast` exactly as the DPU's `custom_script.py` does (turbidostat, chemostat,
growth curve), sends its commands through `scheduler/cmd/command`, and publishes each decision as `event/decision`.

The modes and the DPU facts they follow:

- turbidostat: the median of the last `od_values_to_average` ODs; above `upper_od` a growth curve ends (its growth
  rate is estimated) and the setpoint drops to `lower_od`; below `lower + (upper - lower) / 3` it goes back to
  `upper_od`; while the median is above the setpoint and `pump_wait_min` has passed since the last dose, the influx
  runs `time_in = -ln(lower / median) * volume / rate_in` s (capped at `max_bolus_s`), the efflux `time_in +
  efflux_extra_s` s.
- chemostat: once `start_after_h` has passed and the median is above `start_od`, a bolus of `bolus_ml` every
  `period = 3600 * bolus / (rate * volume)` s: influx `bolus / rate_in` s, efflux twice that, as `t|p` programs the
  pump board repeats by itself.
- growth_curve: no dilution; the growth rate is estimated over a sliding window.

`schema_version` is the version of this format; `version` counts the edits of one experiment.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .envelope import Empty, Payload
from .registry import command, event, state

SERVICE = "experiment"
SCHEMA_VERSION: Literal[1] = 1
VIALS = 16

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Vial = Annotated[int, Field(ge=0, lt=VIALS)]


class Turbidostat(Payload):
    mode: Literal["turbidostat"] = "turbidostat"
    lower_od: float = Field(..., gt=0, le=5, description="dilute down to this OD")
    upper_od: float = Field(..., gt=0, le=5, description="a growth curve ends above this OD")
    od_values_to_average: int = Field(6, ge=1, le=100, description="the median of this many last ODs (DPU: 6)")
    pump_wait_min: float = Field(3.0, ge=0, le=1440, description="minimum time between doses (DPU: 3 min)")
    max_bolus_s: float = Field(20.0, gt=0, le=120, description="longest influx run of one dose (DPU: 20 s)")
    efflux_extra_s: float = Field(5.0, ge=0, le=60, description="the efflux runs this much longer (DPU: 5 s)")
    stop_after_n_curves: int | None = Field(None, ge=1, description="stop diluting after this many growth curves")

    @model_validator(mode="after")
    def _band(self) -> Turbidostat:
        if self.lower_od >= self.upper_od:
            raise ValueError("lower_od must be below upper_od")
        return self


class Chemostat(Payload):
    mode: Literal["chemostat"] = "chemostat"
    dilution_rate_per_h: float = Field(..., ge=0, le=5, description="dilution rate (1/h) = flow / volume")
    bolus_ml: float = Field(0.5, ge=0.2, le=5, description="volume of one dilution (DPU: 0.5 mL, 0.2 minimum)")
    start_od: float = Field(0.0, ge=0, le=5, description="start once the median OD is above this")
    start_after_h: float = Field(0.0, ge=0, description="... and this many hours have passed")
    od_values_to_average: int = Field(6, ge=1, le=100)


class GrowthCurve(Payload):
    mode: Literal["growth_curve"] = "growth_curve"


Control = Annotated[Turbidostat | Chemostat | GrowthCurve, Field(discriminator="mode")]


class VialGroup(Payload):
    name: Name
    vials: list[Vial] = Field(..., min_length=1, max_length=VIALS)
    control: Control
    temp_c: float | None = Field(None, ge=15, le=50, description="temperature setpoint; None leaves the heater")
    stir: int | None = Field(None, ge=0, le=20, description="stir setting; None leaves it")


class Safety(Payload):
    max_pump_s_per_vial_per_h: float = Field(240.0, gt=0, le=3600,
                                             description="influx seconds one vial may get in any hour")
    efflux_volume_ratio: float = Field(1.2, ge=1.0, le=5, description="each dose's efflux moves at least this many "
                                       "times the influx volume (at the calibrated rates), so no vial overflows")


class ExperimentDefinition(Payload):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: Name
    version: int = Field(1, ge=1, description="bumped by every edit")
    groups: list[VialGroup] = Field(..., min_length=1)
    volume_ml: float = Field(25.0, ge=5, le=40, description="culture volume, set by the efflux straw (DPU: 25 mL)")
    start_at: datetime | None = Field(None, description="wall-clock start; None: at once")
    duration_h: float | None = Field(None, gt=0, description="experiment hours until it finishes; None: until stop")
    growth_window_h: float = Field(1.0, gt=0, le=48, description="window of the growth-curve rate estimate")
    safety: Safety = Field(default_factory=Safety)

    @model_validator(mode="after")
    def _vials_once(self) -> ExperimentDefinition:
        seen: dict[int, str] = {}
        for group in self.groups:
            for vial in group.vials:
                if vial in seen:
                    raise ValueError(f"vial {vial} is in groups '{seen[vial]}' and '{group.name}'")
                seen[vial] = group.name
        return self

    def vials(self) -> list[int]:
        return sorted(v for g in self.groups for v in g.vials)


_EXAMPLE: dict[str, Any] = {"definition": {"name": "turbido-1", "groups": [{
    "name": "a", "vials": [0, 1], "control": {"mode": "turbidostat", "lower_od": 0.2, "upper_od": 0.4},
    "temp_c": 30, "stir": 8}]}}


class StartRequest(Payload):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})
    definition: ExperimentDefinition


class NameRequest(Payload):
    name: Name


class EditRequest(Payload):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})
    definition: ExperimentDefinition = Field(..., description="the new definition; its version is set to the "
                                             "running one's + 1")


ExperimentStatus = Literal["scheduled", "running", "paused", "stopped", "finished"]


class VialStatus(Payload):
    vial: int
    group: str
    mode: str
    od: float | None = Field(None, description="the median OD the last decision saw")
    od_set: float | None = Field(None, description="turbidostat: the current OD setpoint")
    growth_rate_per_h: float | None = None
    doses: int = 0
    influx_s_last_h: float = 0.0


class Status(Payload):
    name: str
    version: int
    status: ExperimentStatus
    started_at: float | None = Field(None, description="UNIX time the experiment started")
    elapsed_h: float = Field(0.0, description="experiment hours (model hours on a time-scaled emulator)")
    vials: list[VialStatus] = []
    definition: ExperimentDefinition
    pending_decisions: int = 0


class ListResult(Payload):
    experiments: list[Status]


class Decision(Payload):
    """One decision of a controller, stored before any command it causes."""

    decision_id: str
    experiment: str
    version: int
    vial: int
    mode: str
    action: Literal["dilute", "chemostat_start", "chemostat_stop", "setpoints", "od_set", "skip"]
    elapsed_h: float
    od: float | None = None
    od_set: float | None = None
    influx_s: float | None = None
    efflux_s: float | None = None
    period_s: float | None = None
    reason: str = ""
    broadcast_cycle: int | None = None
    broadcast_timestamp: float | None = None


class DoseOutcome(Payload):
    """What became of a decision's command."""

    decision_id: str
    experiment: str
    vial: int
    outcome: Literal["sent", "applied", "failed", "resent", "refused"]
    command_id: str | None = None
    message: str = ""


class GrowthRate(Payload):
    experiment: str
    vial: int
    mode: str
    rate_per_h: float
    start_h: float
    end_h: float
    points: int


class VialOwner(Payload):
    experiment: str
    version: int
    status: ExperimentStatus


class Ownership(Payload):
    """Which vials an on-device experiment controls: the scheduler refuses other clients' commands to them."""

    vials: dict[str, VialOwner] = Field(..., description="vial number (as text) -> its experiment")
    principal: str = Field(..., description="the experiment service's caller identity as services see it "
                           "(`<broker principal>/<session>`): only its commands may change these vials")


class ExperimentsState(Payload):
    experiments: list[Status]


command(SERVICE, "start", StartRequest, Status, "Start an experiment (stored before it runs); its vials must be free.")
command(SERVICE, "pause", NameRequest, Status,
        "Stop deciding (running chemostat programs are stopped); the vials stay owned.")
command(SERVICE, "resume", NameRequest, Status, "Decide again from the next broadcast.")
command(SERVICE, "stop", NameRequest, Status, "End the experiment: pumps of its vials stopped, the vials released.")
command(SERVICE, "edit", EditRequest, Status, "Replace a running experiment's definition (version + 1).")
command(SERVICE, "status", NameRequest, Status, "One experiment's status.")
command(SERVICE, "list", Empty, ListResult, "Every experiment this device knows, with its status.")
event(SERVICE, "decision", Decision, "A controller decided (stored before the command it causes).")
event(SERVICE, "dose", DoseOutcome, "A decision's command was sent, applied, failed or re-sent after a restart.")
event(SERVICE, "growth_rate", GrowthRate, "A vial's growth-rate estimate (ln OD against hours).")
state(SERVICE, "ownership", Ownership, "Retained: the vials on-device experiments control.")
state(SERVICE, "experiments", ExperimentsState, "Retained: every experiment's status.")
