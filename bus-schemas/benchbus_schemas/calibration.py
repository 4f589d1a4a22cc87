"""The `calibration` service (calibration-store): eVOLVER calibrations.json and the OT-2's robot calibrations.

eVOLVER commands map 1:1 to the original server's Socket.IO events, and their results carry what the GUI and the
DPU expect in that event's reply, under one key the gateway can pass through:

| Socket.IO event        | command            | reply event the gateway emits, from the result   |
|------------------------|--------------------|--------------------------------------------------|
| getcalibrationnames    | list_calibrations  | calibrationnames      = result.calibrations     |
| getfitnames            | list_fits          | fitnames              = result.fits             |
| getcalibration         | get_calibration    | calibration           = result.calibration      |
| setrawcalibration      | set_raw            | calibrationrawcallback = result.status ('success') |
| setfitcalibration      | set_fit            | (the original sent nothing; we reply)            |
| setactivecal           | set_active         | activecalibrations    = result.activecalibrations |
| getactivecal           | get_active         | activecalibrations    = result.activecalibrations |

Files from real rigs load unchanged: numbers written as strings ("0.75") inside coefficient and data arrays are
accepted and written back as clean numbers; `measuredData` may be a flat list or a list of lists.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from .envelope import Empty, Payload
from .registry import command, event, state

SERVICE = "calibration"

FIT_TYPES = ("sigmoid", "3d", "linear", "constant")
FitType = Literal["sigmoid", "3d", "linear", "constant"]
CalibrationType = Literal["od", "temperature", "pump"]


def _number(value: Any) -> Any:
    """Real rigs' files hold some numbers as strings; accept those, refuse booleans and non-finite values."""
    if isinstance(value, bool):
        raise ValueError("a number is required, not a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if isinstance(value, (int, float)) and not math.isfinite(value):
        raise ValueError("the number must be finite")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # "60584" stays 60584, as it was measured
    return value


Number = Annotated[int | float, BeforeValidator(_number)]
# A blank cell of the GUI's calibration tables: `parseFloat('')` is NaN, which JSON.stringify sends as null; an
# uncalibrated IN2 pump is sent as ''. The original server stored both as given; fits skip them.
Point = Number | None | Literal[""]
# vialData holds per vial a list of points, each a number or a list of samples (3 levels at most)
NumberTree = Point | list[Point] | list[list[Point]]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class EvolverPayload(Payload):
    """An object of calibrations.json: optional fields that are absent are left out (never written as null),
    so what the GUI and the DPU read looks like what the original server wrote."""

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class Fit(EvolverPayload):
    """One fit of a calibration (eVOLVER format). `coefficients` holds one entry per vial (a list: sigmoid 4,
    3d 6, linear [m, b]) or, for `constant`, one number per pump (48)."""

    name: Name
    type: FitType
    coefficients: list[Number | list[Number]] = Field(..., max_length=256)
    params: list[str] = Field(default_factory=list, description="the broadcast params the fit reads, e.g. ['od_90']")
    active: bool = False
    timeFit: Number | None = Field(None, description="when the fit was made, seconds since the epoch")


class RawData(EvolverPayload):
    param: str = Field(..., min_length=1)
    vialData: list[NumberTree] = Field(default_factory=list, max_length=256)
    timeCollected: Number | None = None
    name: str | None = None


class Calibration(EvolverPayload):
    """One calibration of calibrations.json, as the eVOLVER GUI writes it (`setrawcalibration`)."""

    name: Name
    calibrationType: CalibrationType
    timeCollected: Number | None = Field(None, description="milliseconds since the epoch (the GUI's clock)")
    measuredData: list[Point | list[Point]] = Field(default_factory=list, max_length=256)
    raw: list[RawData] = Field(default_factory=list)
    fits: list[Fit] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _null_lists_are_empty(cls, data: Any) -> Any:
        # the original server's bug stored `"fits": null` (`[].append(fit)`); such files must still load
        if isinstance(data, dict):
            data = {k: ([] if k in ("fits", "raw", "measuredData") and v is None else v) for k, v in data.items()}
        return data


class NameAndType(Payload):
    name: str
    calibrationType: str


# -- eVOLVER commands ------------------------------------------------------------------------------------------------

class CalibrationNames(Payload):
    calibrations: list[NameAndType] = Field(..., description="as `calibrationnames`: [{name, calibrationType}]")


class FitNames(Payload):
    fits: list[NameAndType] = Field(..., description="as `fitnames`: [{name: fit name, calibrationType}]")


class ByName(Payload):
    name: Name


class CalibrationResult(Payload):
    calibration: Calibration


class Written(Payload):
    """Sent only after the new file is on disk (fsync of the file and its directory)."""

    status: Literal["success"] = "success"
    store: Literal["evolver", "robot"] = "evolver"
    version: int = Field(..., description="the version number now current (see cmd/history)")
    name: str | None = None
    replaced: bool | None = Field(None, description="set_raw/set_fit/robot_set: an entry of that name was replaced")


class SetFitRequest(Payload):
    name: Name = Field(..., description="the calibration to add the fit to")
    fit: Fit


class SetActiveRequest(Payload):
    calibration_names: list[Name] = Field(..., max_length=256, description=(
        "FIT names, as the GUI sends them: every fit of every calibration becomes active iff its name is listed. "
        "An unknown fit name is `not_found` and changes nothing."))


class ActiveCalibrations(Payload):
    activecalibrations: list[Calibration] = Field(..., description="as `activecalibrations`: every calibration with "
                                                  "an active fit")


class FitRequest(Payload):
    """Fit a calibration's raw data against its measured values, per vial (what the DPU's calibrate.py does)."""

    name: Name = Field(..., description="the calibration")
    fit_name: Name
    type: FitType
    params: list[str] | None = Field(None, description="raw params to fit: default od_90 (sigmoid), od_90+od_135 "
                                     "(3d), temp (linear), pump (constant)")
    active: bool = False
    replace: bool = Field(True, description="replace a fit of the same name (false: conflict)")


class VialQuality(Payload):
    vial: int
    points: int
    rms: float | None = Field(None, description="root-mean-square residual in measured units; null if not fitted")
    error: str | None = None


class FitResult(Payload):
    name: str
    fit: Fit
    version: int
    quality: list[VialQuality]


# -- durability commands ---------------------------------------------------------------------------------------------

StoreName = Literal["evolver", "robot"]


class HistoryRequest(Payload):
    store: StoreName = "evolver"


class VersionInfo(Payload):
    version: int
    saved_at: str = Field(..., description="ISO 8601 UTC")
    size: int
    sha256: str
    current: bool


class History(Payload):
    store: StoreName
    keep: int = Field(..., description="how many versions are kept")
    versions: list[VersionInfo] = Field(..., description="newest first")


class RestoreRequest(Payload):
    store: StoreName = "evolver"
    version: int = Field(..., ge=1)


class Restored(Payload):
    store: StoreName
    restored_from: int
    version: int = Field(..., description="the new current version (a restore is itself a new version)")


# -- robot calibrations (OT-2) ---------------------------------------------------------------------------------------

Mount = Literal["left", "right"]
CalibrationSource = Literal["user", "factory", "default", "legacy", "unknown"]
Vector3 = Annotated[list[Number], Field(min_length=3, max_length=3)]


class CalibrationStatus(Payload):
    marked_bad: bool = False
    source: str | None = None
    marked_at: str | None = None


class DeckCalibration(Payload):
    """The deck attitude: a 3x3 matrix mapping deck coordinates to gantry coordinates."""

    kind: Literal["deck"] = "deck"
    schema_version: Literal[1] = 1
    attitude: Annotated[list[Vector3], Field(min_length=3, max_length=3)]
    pipette_calibrated_with: str | None = None
    tiprack: str | None = Field(None, description="the tip rack's definition hash or URI")
    last_modified: str | None = Field(None, description="ISO 8601 UTC; set by the store when absent")
    source: CalibrationSource = "user"
    status: CalibrationStatus = CalibrationStatus()


class PipetteOffset(Payload):
    """Offset [x, y, z] in mm of one pipette (by serial id) on one mount."""

    kind: Literal["pipette_offset"] = "pipette_offset"
    schema_version: Literal[1] = 1
    mount: Mount
    pipette_id: Name
    offset: Vector3
    tiprack: str | None = None
    uri: str | None = Field(None, description="the tip rack's labware URI")
    last_modified: str | None = None
    source: CalibrationSource = "user"
    status: CalibrationStatus = CalibrationStatus()


class TipLength(Payload):
    """Length in mm of the tips of one tip rack on one pipette."""

    kind: Literal["tip_length"] = "tip_length"
    schema_version: Literal[1] = 1
    pipette_id: Name
    tiprack: Name = Field(..., description="the tip rack's definition hash or URI")
    tip_length: Annotated[float, Field(gt=0, lt=200)]
    uri: str | None = None
    last_modified: str | None = None
    source: CalibrationSource = "user"
    status: CalibrationStatus = CalibrationStatus()


RobotRecord = Annotated[DeckCalibration | PipetteOffset | TipLength, Field(discriminator="kind")]
RobotKind = Literal["deck", "pipette_offset", "tip_length"]


class RobotFile(Payload):
    """The whole robot calibration file (robot-calibrations.json)."""

    schema_version: Literal[1] = 1
    records: list[RobotRecord] = Field(default_factory=list)


class RobotKey(Payload):
    """Which record: deck (nothing else), pipette_offset (mount + pipette_id), tip_length (pipette_id + tiprack)."""

    kind: RobotKind
    mount: Mount | None = None
    pipette_id: str | None = None
    tiprack: str | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> RobotKey:
        needed = {"deck": (), "pipette_offset": ("mount", "pipette_id"), "tip_length": ("pipette_id", "tiprack")}
        missing = [f for f in needed[self.kind] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.kind} key needs {', '.join(missing)}")
        return self


class RobotListRequest(Payload):
    kind: RobotKind | None = None


class RobotRecords(Payload):
    records: list[RobotRecord]


class RobotSetRequest(Payload):
    record: RobotRecord


class RobotRecordResult(Payload):
    record: RobotRecord


# -- state and events ------------------------------------------------------------------------------------------------

class ActiveFit(Payload):
    """Everything a consumer needs to apply a fit (benchbus_calibration.fits does the math)."""

    calibration: str
    calibrationType: str
    fit: str
    type: FitType
    params: list[str]
    coefficients: list[Number | list[Number]]
    timeFit: Number | None = None


class ActiveState(Payload):
    by_type: dict[str, ActiveFit] = Field(..., description="calibrationType -> its active fit (the last one in the "
                                          "file when several are active, as the DPU picks it)")
    fits: list[ActiveFit] = Field(..., description="every active fit, in file order")
    ambiguous: list[str] = Field(default_factory=list, description="calibration types with more than one active fit")
    version: int


class StoreInfo(Payload):
    version: int
    path: str
    entries: int
    keep: int


class StoreState(Payload):
    evolver: StoreInfo
    robot: StoreInfo


class Recovered(Payload):
    store: StoreName
    path: str
    reason: str = Field(..., description="what was wrong with the current file")
    moved_aside: list[str] = Field(default_factory=list,
                                   description="where unreadable files were moved (never deleted)")
    loaded_version: int | None = Field(None, description="the history version loaded; null when started empty")
    started_empty: bool = False


class Changed(Payload):
    store: StoreName
    command: str
    name: str | None = None
    version: int


command(SERVICE, "list_calibrations", Empty, CalibrationNames, "getcalibrationnames: [{name, calibrationType}].")
command(SERVICE, "list_fits", Empty, FitNames, "getfitnames: every fit as [{name, calibrationType}].")
command(SERVICE, "get_calibration", ByName, CalibrationResult, "getcalibration: one calibration by name; "
        "not_found when there is none (the original sent nothing).")
command(SERVICE, "set_raw", Calibration, Written, "setrawcalibration: store a calibration, replacing one of the "
        "same name; status 'success' after it is on disk.")
command(SERVICE, "set_fit", SetFitRequest, Written, "setfitcalibration: add a fit to a calibration or replace the "
        "fit of the same name (both original bugs fixed); not_found for an unknown calibration.")
command(SERVICE, "set_active", SetActiveRequest, ActiveCalibrations, "setactivecal: by FIT names; every fit listed "
        "becomes active, every other inactive. An unknown fit name is not_found and changes nothing.")
command(SERVICE, "get_active", Empty, ActiveCalibrations, "getactivecal: every calibration with an active fit.")
command(SERVICE, "delete", ByName, Written, "Delete a calibration by name; not_found when there is none.")
command(SERVICE, "fit", FitRequest, FitResult, "Fit a calibration's raw data to its measured data per vial "
        "(sigmoid, 3d, linear, constant) and store the result as a fit.", timeout_s=30)
command(SERVICE, "history", HistoryRequest, History, "The kept versions of a store's file, newest first.")
command(SERVICE, "restore", RestoreRequest, Restored, "Make a kept version current again (as a new version).")
command(SERVICE, "robot_list", RobotListRequest, RobotRecords, "Robot calibration records, optionally of one kind.")
command(SERVICE, "robot_get", RobotKey, RobotRecordResult, "One robot calibration record; not_found if absent.")
command(SERVICE, "robot_set", RobotSetRequest, Written, "Store a robot calibration record (replacing the one with "
        "the same key: deck; mount+pipette_id; pipette_id+tiprack). Reply after it is on disk.")
command(SERVICE, "robot_delete", RobotKey, Written, "Delete a robot calibration record; not_found if absent.")
state(SERVICE, "active", ActiveState, "The active fit of each calibration type, with type, params and coefficients "
      "(what the scheduler and the DPU need); retained.")
state(SERVICE, "store", StoreState, "The current version and size of each file; retained.")
event(SERVICE, "recovered", Recovered, "At start a file did not parse or validate: it was moved aside and the newest "
      "valid version loaded (or, when none was valid, the store started empty).")
event(SERVICE, "changed", Changed, "A store's file was written (a new version is on disk).")
