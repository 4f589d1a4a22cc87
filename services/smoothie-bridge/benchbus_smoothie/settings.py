"""Settings of the smoothie-bridge (file /etc/benchbus/smoothie.yaml, variables BENCHBUS_SMOOTHIE_<FIELD>)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args

from pydantic import Field, field_validator, model_validator

from benchbus.settings import ServiceSettings

from .robot import DEFAULT_ACCELERATION, DEFAULT_MAX_SPEEDS, DEFAULT_SPEED, DEFAULT_STEPS_PER_MM

Axis = Literal["X", "Y", "Z", "A", "B", "C"]
AXIS_NAMES: tuple[Axis, ...] = get_args(Axis)
V = TypeVar("V")


def per_axis(table: Mapping[str, V]) -> dict[Axis, V]:
    """A table keyed by plain axis names (the driver's), keyed by Axis."""
    return {axis: table[axis] for axis in AXIS_NAMES}


def by_name(table: Mapping[Axis, V]) -> dict[str, V]:
    """A table keyed by Axis (the settings'), keyed by plain axis names as the driver takes them."""
    return {str(axis): value for axis, value in table.items()}

# Travel the bridge allows (reference 1.9: driver bounds; Y 0-370 as the driver overrides it). Plungers (B, C) are
# not bounded by the OT-2 driver; ours stop below the switch (20) so the 0.3 mm backlash overshoot never reaches it,
# and above the deepest drop-tip position (-37).
DEFAULT_TRAVEL: dict[str, tuple[float, float]] = {
    "X": (0.0, 418.0), "Y": (0.0, 370.0), "Z": (0.0, 218.0), "A": (0.0, 218.0), "B": (-40.0, 19.5), "C": (-40.0, 19.5),
}


class SmoothieSettings(ServiceSettings):
    port: str = Field("/dev/ttyAMA0", description="pyserial URL of the board: a device, socket://host:port, a pty")
    baudrate: int = Field(115200, gt=0)
    ack_timeout_s: float = Field(5.0, gt=0, description="wait for a command's ack (then close, reopen, resend)")
    retries: int = Field(3, ge=0, le=10, description="resends after a silent ack (never for G28.2, G91, G38.2)")
    execute_timeout_s: float = Field(12000.0, gt=0, description="wait for M400 (motion finished)")
    boot_timeout_s: float = Field(3.0, gt=0, description="wait for the boot ping's ack")
    probe_timeout_s: float = Field(30.0, gt=0)
    home_ack_timeout_cap_s: float | None = Field(None, gt=0, description="cap on the homing ack timeouts "
                                                 "(default: the reference's, up to 12000 s for Z/A/B/C)")
    recovery_pause_s: float = Field(0.1, ge=0, description="pause before M999 after an alarm")
    current_table: Literal["2.1", "default"] = Field("2.1", description="'2.1' (OG/unknown board) or 'default' "
                                                     "(refresh boards A/B/C)")
    steps_per_mm: dict[Axis, float] = Field(default_factory=lambda: per_axis(DEFAULT_STEPS_PER_MM))
    max_speeds: dict[Axis, float] = Field(default_factory=lambda: per_axis(DEFAULT_MAX_SPEEDS))
    acceleration: dict[Axis, float] = Field(default_factory=lambda: per_axis(DEFAULT_ACCELERATION))
    default_speed: float = Field(DEFAULT_SPEED, gt=0, le=1000, description="mm/s (G0 F<x60>)")
    travel: dict[Axis, tuple[float, float]] = Field(default_factory=lambda: per_axis(DEFAULT_TRAVEL),
                                                    description="allowed target range per axis, mm (min, max)")
    require_homed: bool = Field(True, description="refuse moves of axes the board does not report homed")
    door_safety: bool = Field(True, description="an open door blocks motion until closed and resumed; a door "
                              "state gpio-service has not reported (or not validly) counts as open. Needs use_gpio; "
                              "only a robot without door switches turns it off")
    use_gpio: bool = Field(True, description="use gpio-service for the reset and halt lines and the door")
    gpio_timeout_s: float = Field(2.0, gt=0)
    halt_via: Literal["auto", "gpio", "serial", "both"] = Field(
        "auto", description="how `halt` stops the board: the gpio halt line, an in-band M112, or both; auto = the "
        "line when gpio-service is ready, else M112")
    reconnect_interval_s: float = Field(5.0, gt=0, description="while the board is unreachable, retry this often")
    read_pipettes_at_boot: bool = True

    @field_validator("steps_per_mm", "max_speeds", "acceleration", "travel", mode="before")
    @classmethod
    def _over_defaults(cls, value, info):
        """A file may name only the axes it changes; the others keep their defaults."""
        defaults = {"steps_per_mm": DEFAULT_STEPS_PER_MM, "max_speeds": DEFAULT_MAX_SPEEDS,
                    "acceleration": DEFAULT_ACCELERATION, "travel": DEFAULT_TRAVEL}[info.field_name]
        return {**defaults, **value} if isinstance(value, dict) else value

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_door_switch(cls, data: Any) -> Any:
        if isinstance(data, dict) and "door_unknown_is_open" in data:
            raise ValueError("door_unknown_is_open was removed: an unknown door is always an open door. On a robot "
                             "without door switches set door_safety: false instead")
        return data

    @model_validator(mode="after")
    def _door_needs_gpio(self) -> SmoothieSettings:
        if self.door_safety and not self.use_gpio:
            raise ValueError("door_safety needs use_gpio (the door state comes from gpio-service; without it the "
                             "door is unknown, which is open, and nothing would ever move). On a robot without door "
                             "switches set door_safety: false")
        return self

    @model_validator(mode="after")
    def _sane_travel(self) -> SmoothieSettings:
        for axis, (low, high) in self.travel.items():
            if low >= high:
                raise ValueError(f"travel of {axis}: min {low} must be below max {high}")
        return self
