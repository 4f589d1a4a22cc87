"""The `smoothie` service (smoothie-bridge): six-axis OT-2 motion through the Smoothieboard, safely shared.

Axes: X gantry left/right, Y gantry front/back, Z left mount, A right mount, B left plunger, C right plunger.
Positions are machine coordinates in mm, as the board's `M114.2` reports them.

Motion lease. Motion commands (home, move, move_relative, set_current, set_max_speed, disengage, dwell, probe,
halt, resume, configure_pipette, gcode) are served to anyone while nobody holds the lease. `acquire_motion` gives
the calling client (its name, the MQTT 5 user property `client`) the lease for `ttl_s` seconds; while it is held,
motion commands of every other client get `conflict` naming the holder. The holder renews by calling
`acquire_motion` again (same `lease_id` back, the time to live starts over; every motion command of the holder renews
it too) and gives it up with `release_motion` (or lets it expire). Reads (position, switches, homed, engaged,
read_pipette) never need it.
`halt` is the one exception: any client may halt, lease or not, because stopping is always safe.
"""
from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from .envelope import Empty, Payload
from .limits import (AXIS_SPEED_MAX_MM_S, DWELL_MAX_S, GCODE_LINE, MOVE_SPEED_MAX_MM_S, PROBE_SPEED_MAX_MM_S, Amps,
                     AxisSpeed, HardwareNumber)
from .registry import command, event, state

SERVICE = "smoothie"

Axis = Literal["X", "Y", "Z", "A", "B", "C"]
Mount = Literal["left", "right"]
AXES: tuple[str, ...] = ("X", "Y", "Z", "A", "B", "C")


class Strict(Payload):
    """No extra keys, no NaN or infinity (a NaN target must never reach the board)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StrictRequest(Strict):
    """A request: also no strings for numbers (`"100"` is not a target) and no `1`/`"yes"` for booleans.

    Numeric bounds come from benchbus_schemas.limits; axis targets are checked against the travel the bridge holds
    (its settings, narrowed by configure_pipette) before anything is sent."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


# -- shared result shapes -----------------------------------------------------------------------------------------

class SmoothiePosition(Strict):
    """Machine coordinates in mm."""

    X: float
    Y: float
    Z: float
    A: float
    B: float
    C: float


class SmoothieAxisFlags(Strict):
    X: bool
    Y: bool
    Z: bool
    A: bool
    B: bool
    C: bool


class Switches(SmoothieAxisFlags):
    """Endstop (max) switches per axis and the probe input; true = triggered."""

    probe: bool


class Currents(Strict):
    active: dict[Axis, float] = Field(..., description="A, used while an axis moves")
    dwelling: dict[Axis, float] = Field(..., description="A, used while an axis holds still")


class MaxSpeeds(Strict):
    speeds: dict[Axis, float] = Field(..., description="mm/s per axis (M203.1)")


class SmoothiePipetteInfo(Strict):
    id: str | None = Field(None, description="the pipette's serial id from its EEPROM (M369)")
    model: str | None = Field(None, description="the pipette's model string (M371), e.g. p300_single_v2.1")


class Pipettes(Strict):
    left: SmoothiePipetteInfo | None = None
    right: SmoothiePipetteInfo | None = None


class LeaseInfo(Strict):
    holder: str | None = Field(None, description="client name holding the motion lease; null when free")
    lease_id: str | None = None
    ttl_s: float | None = Field(None, description="seconds left when this was produced")


class PauseInfo(Strict):
    paused: bool
    reason: Literal["door", "client"] | None = None
    door: Literal["open", "closed", "unknown"] = "unknown"


# -- requests -----------------------------------------------------------------------------------------------------

class HomeRequest(StrictRequest):
    axes: list[Axis] | None = Field(None, min_length=1, description="axes to home; null or absent = all six. "
                                    "Y also homes X, and X also homes Z and A (the gantry must be clear)")


class MoveRequest(StrictRequest):
    target: dict[Axis, HardwareNumber] = Field(..., min_length=1, description="absolute target per axis, mm")
    speed: HardwareNumber | None = Field(None, gt=0, le=MOVE_SPEED_MAX_MM_S,
                                         description="mm/s for this move only (default: the feed rate)")


class MoveRelativeRequest(StrictRequest):
    delta: dict[Axis, HardwareNumber] = Field(..., min_length=1, description="distance per axis from where it is, mm")
    speed: HardwareNumber | None = Field(None, gt=0, le=MOVE_SPEED_MAX_MM_S)


class SetCurrentRequest(StrictRequest):
    active: dict[Axis, Amps] | None = Field(None, description="A per axis while moving (0..2.5)")
    dwelling: dict[Axis, Amps] | None = Field(None, description="A per axis while still (0..2.5)")


class SetMaxSpeedRequest(StrictRequest):
    speeds: dict[Axis, AxisSpeed] = Field(..., min_length=1,
                                          description=f"mm/s per axis (0 < v <= {AXIS_SPEED_MAX_MM_S:g})")


class DisengageRequest(StrictRequest):
    axes: list[Axis] | None = Field(None, min_length=1, description="null or absent = all six")


class DwellRequest(StrictRequest):
    seconds: HardwareNumber = Field(..., ge=0, le=DWELL_MAX_S)


class ProbeRequest(StrictRequest):
    axis: Literal["X", "Y", "Z", "A"] = Field(..., description="the firmware probes X, Y, Z and A only")
    distance: HardwareNumber = Field(..., description="signed mm to travel toward the switch at most")
    speed: HardwareNumber = Field(7.0, gt=0, le=PROBE_SPEED_MAX_MM_S,
                                  description="mm/s (the OT-2 probes at 7 mm/s = F420)")


class ProbeResult(Strict):
    position: SmoothiePosition


class ReadPipetteRequest(StrictRequest):
    mount: Mount | None = Field(None, description="null or absent = both mounts")


class ConfigurePipetteRequest(StrictRequest):
    """A pipette's mount settings (reference 5.3 `smoothieConfigs`): GEN1 768 / 220 / 30, GEN2 single
    3200 / 172.15 / 60, GEN2 multi 3200 / 155.75 / 60."""

    mount: Mount
    steps_per_mm: float = Field(..., ge=100, le=6400, strict=True, description="plunger steps per mm (M92 B|C)")
    home_position: float = Field(..., ge=100, le=220, strict=True,
                                 description="the mount axis's homing position, mm (M365.0 Z|A); it lands this "
                                 "minus the 2 mm retract after homing")
    travel_distance: float = Field(..., ge=10, le=60, strict=True,
                                   description="the plunger's max travel when homing, mm (M365.1 B|C); the plunger "
                                   "may go no lower than 20 minus this")


class MountConfig(Strict):
    steps_per_mm: float
    home_position: float
    travel_distance: float
    travel: dict[Axis, list[float]] = Field(..., description="the [min, max] mm the bridge now allows for the mount "
                                            "and plunger axes (targets outside are refused)")


class MountConfigs(Strict):
    left: MountConfig | None = None
    right: MountConfig | None = None


class GcodeRequest(StrictRequest):
    lines: list[GCODE_LINE] = Field(..., min_length=1, max_length=64,
                                    description="raw G-code lines (printable ASCII), sent one by one (admin only)")
    timeout_s: HardwareNumber = Field(30.0, gt=0, le=600, description="per line, until its ack")


class GcodeResult(Strict):
    replies: list[str] = Field(..., description="the board's text per line, acks and echo removed")


class AcquireMotionRequest(StrictRequest):
    ttl_s: HardwareNumber = Field(30.0, ge=1, le=3600, description="the lease lapses after this long without a renewal")


class Lease(Strict):
    lease_id: str
    holder: str
    ttl_s: float


class ReleaseMotionRequest(StrictRequest):
    lease_id: str | None = Field(None, max_length=64, description="optional check: release only this lease")


class Halted(Strict):
    position: SmoothiePosition
    homed: SmoothieAxisFlags


# -- retained state and events ------------------------------------------------------------------------------------

class AlarmState(Strict):
    active: bool = Field(..., description="true: motion is refused until a client homes the robot")
    message: str | None = None
    since: str | None = None


class Firmware(Strict):
    version: str = Field(..., description="e.g. edge-66ec883 (NOMSD stripped)")
    raw: str = Field(..., description="the board's whole `version` reply")


class AlarmEvent(Strict):
    message: str = Field(..., description="the board's text, e.g. 'ALARM: Hard limit +C'")
    axis: Axis | None = Field(None, description="the axis the alarm names (homed in recovery)")
    command: str = Field(..., description="the bus command that failed")
    recovered_by_homing: list[Axis] = []


class PausedEvent(Strict):
    reason: Literal["door", "client"]


class ResumedEvent(Strict):
    by: str | None = Field(None, description="the client that resumed")


class HaltedEvent(Strict):
    by: str | None = None


command(SERVICE, "home", HomeRequest, SmoothiePosition, "Home the axes (ZABC, then X with Y backed off, then Y); the "
        "position after homing. Clears the alarm state when every axis is homed. Needs the lease if one is held.",
        timeout_s=60)
command(SERVICE, "move", MoveRequest, SmoothiePosition, "Move to absolute targets (refused with invalid_request when "
        "outside an axis's travel, before anything is sent); the position after the move.", timeout_s=60)
command(SERVICE, "move_relative", MoveRelativeRequest, SmoothiePosition, "Move by distances from the current position.",
        timeout_s=60)
command(SERVICE, "position", Empty, SmoothiePosition, "The position (the cache, refreshed after every motion).")
command(SERVICE, "switches", Empty, Switches, "The endstop switches and probe input, read from the board (M119).")
command(SERVICE, "homed", Empty, SmoothieAxisFlags, "The homed flags, read from the board (G28.6).")
command(SERVICE, "engaged", Empty, SmoothieAxisFlags, "Which motors are energised.")
command(SERVICE, "set_current", SetCurrentRequest, Currents, "Set active and/or dwelling currents per axis.")
command(SERVICE, "set_max_speed", SetMaxSpeedRequest, MaxSpeeds, "Set per-axis max speeds (M203.1).")
command(SERVICE, "disengage", DisengageRequest, SmoothieAxisFlags, "De-energise motors (M18); the engaged flags after.")
command(SERVICE, "dwell", DwellRequest, Empty, "Pause the board's motion queue (G4).", timeout_s=310)
command(SERVICE, "probe", ProbeRequest, ProbeResult, "Probe toward a switch (G38.2); a miss is an alarm.",
        timeout_s=60)
command(SERVICE, "read_pipette", ReadPipetteRequest, Pipettes, "Read id and model of the pipettes (M369/M371).")
command(SERVICE, "halt", Empty, Halted, "Stop at once through the halt line (gpio), then clear and re-setup the "
        "board; motion is refused (alarm) until homed. Any client may halt.", timeout_s=30)
command(SERVICE, "pause", Empty, PauseInfo, "Block every motion command (the running one finishes) until resume.")
command(SERVICE, "resume", Empty, PauseInfo, "Lift a pause; refused with conflict while the door is open.")
command(SERVICE, "configure_pipette", ConfigurePipetteRequest, MountConfig, "Configure a mount for its pipette: "
        "plunger steps/mm (M92), mount homing position (M365.0), plunger max travel (M365.1); narrows the travel the "
        "bridge allows for those axes. Needs the lease if one is held; home the mount afterwards.", timeout_s=15)
command(SERVICE, "gcode", GcodeRequest, GcodeResult, "Raw G-code, admin clients only; `?` and Ctrl-X are refused.")
command(SERVICE, "acquire_motion", AcquireMotionRequest, Lease, "Take or renew the motion lease (conflict when "
        "another client holds it).")
command(SERVICE, "release_motion", ReleaseMotionRequest, LeaseInfo, "Give the motion lease up.")

state(SERVICE, "position", SmoothiePosition, "SmoothiePosition after the last motion (not polled).")
state(SERVICE, "homed", SmoothieAxisFlags, "Homed flags.")
state(SERVICE, "engaged", SmoothieAxisFlags, "Energised motors.")
state(SERVICE, "alarm", AlarmState, "Alarm state: while active, motion is refused until homed.")
state(SERVICE, "paused", PauseInfo, "Paused (door or client) and the door as last seen.")
state(SERVICE, "lease", LeaseInfo, "Who holds the motion lease.")
state(SERVICE, "firmware", Firmware, "The board's firmware version.")
state(SERVICE, "pipettes", Pipettes, "Attached pipettes as last read.")
state(SERVICE, "mount_config", MountConfigs, "Each mount's pipette settings as last configured (null: defaults).")

event(SERVICE, "alarm", AlarmEvent, "The board raised an alarm during motion; the recovery ran, the command failed.")
event(SERVICE, "paused", PausedEvent, "Motion paused (door opened or a client paused).")
event(SERVICE, "resumed", ResumedEvent, "Motion resumed.")
event(SERVICE, "halted", HaltedEvent, "The robot was halted through the halt line.")
