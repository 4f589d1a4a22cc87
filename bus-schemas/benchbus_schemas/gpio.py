"""The `gpio` service: the robot's rail lights, front button (LED and switch), door/window switches and the
Smoothieboard's board lines (reset, halt, ISP), held by one process and shared by every client through the bus.

The board-line commands (`smoothie_reset`, `smoothie_halt`, `enter_bootloader`) are meant for the smoothie-bridge
only; the deployment's Mosquitto ACL enforces that.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .envelope import Empty, Payload
from .limits import BLINK_PERIOD_S, IDENTIFY_MAX_S, PULSE_S, SETTLE_MAX_S, HardwareNumber, HardwarePayload
from .registry import command, event, state

SERVICE = "gpio"

ButtonColor = Literal["off", "red", "green", "blue", "yellow", "cyan", "magenta", "white"]
Pattern = Literal["solid", "blink"]
LightSource = Literal["status", "manual", "identify"]
SwitchState = Literal["open", "closed"]
BoardRevision = Literal["2.1", "A", "B", "C", "UNKNOWN"]


# -- lights -----------------------------------------------------------------------------------------------------------

class ButtonLight(Payload):
    """What the front button's LED shows now, and who chose it."""

    color: ButtonColor
    pattern: Pattern = "solid"
    period_s: float = Field(1.0, description="a full blink period (on + off), when pattern is blink")
    source: LightSource = Field("status", description="status: follows the services' health; manual: a client's "
                                                      "set_button_light; identify: an identify in progress")


class Lights(Payload):
    """Retained at state/lights and the reply of the light commands. `on` is the rail (frame) lights."""

    on: bool = Field(..., description="the rail (frame) lights, BCM6")
    button: ButtonLight


class SetRailLights(HardwarePayload):
    on: bool


class SetButtonLight(HardwarePayload):
    """Either a color (with a pattern), or `auto: true` to hand the LED back to the status light."""

    color: ButtonColor | None = None
    pattern: Pattern = "solid"
    period_s: HardwareNumber = Field(1.0, ge=BLINK_PERIOD_S[0], le=BLINK_PERIOD_S[1],
                                     description="a full blink period (on + off)")
    auto: bool = Field(False, description="give the LED back to the status light (health display)")

    @model_validator(mode="after")
    def _color_or_auto(self) -> SetButtonLight:
        if self.auto and self.color is not None:
            raise ValueError("give either color or auto, not both")
        if not self.auto and self.color is None:
            raise ValueError("color is required (or auto: true)")
        return self


class Identify(HardwarePayload):
    seconds: HardwareNumber = Field(..., gt=0, le=IDENTIFY_MAX_S, description="how long to blink the button LED")
    color: ButtonColor = "blue"
    period_s: HardwareNumber = Field(0.5, ge=BLINK_PERIOD_S[0], le=10,
                                     description="a full blink period; the OT-2 toggles every 0.25 s")


class IdentifyResult(Payload):
    message: Literal["identifying"] = "identifying"
    seconds: float
    until: str = Field(..., description="ISO 8601 UTC time the LED returns to what it showed before")


# -- board lines ------------------------------------------------------------------------------------------------------

class Pulse(HardwarePayload):
    pulse_s: HardwareNumber = Field(0.25, ge=PULSE_S[0], le=PULSE_S[1],
                                    description="how long the line is held active (low)")
    settle_s: HardwareNumber = Field(0.25, ge=0, le=SETTLE_MAX_S,
                                     description="wait after releasing the line, before replying")


class PulseResult(Payload):
    lines: list[str] = Field(..., description="the lines pulsed, in the order they were driven")
    pulse_s: float
    settle_s: float


class Audio(HardwarePayload):
    enabled: bool


class AudioResult(Payload):
    enabled: bool


# -- inputs -----------------------------------------------------------------------------------------------------------

class DoorState(Payload):
    """Retained at state/door. `window` is null on boards where one switch senses both (OG "2.1")."""

    door: SwitchState
    window: SwitchState | None = None
    since: str = Field(..., description="ISO 8601 UTC time of the last change")


class DoorEvent(Payload):
    switch: Literal["door", "window"]
    state: SwitchState
    at: str = Field(..., description="ISO 8601 UTC time of the (debounced) edge")


class ButtonEvent(Payload):
    action: Literal["pressed", "released", "long_press"]
    at: str = Field(..., description="ISO 8601 UTC time of the (debounced) edge")
    held_s: float | None = Field(None, description="on released and long_press: how long the button was held")


class Board(Payload):
    """Retained at state/board: what the service holds."""

    backend: Literal["sim", "gpiod"]
    chip: str
    revision: BoardRevision
    lines: dict[str, int] = Field(..., description="line name -> offset (BCM) in use on this board")
    audio: bool
    debounce_ms: float


# -- simulated backend only -------------------------------------------------------------------------------------------

class SimSetInput(HardwarePayload):
    """Drive an input of the simulated chip, as a hand on the robot would (refused with the real backend)."""

    input: Literal["button", "door", "window"]
    active: bool = Field(..., description="button: pressed; door/window: open")
    bounces: int = Field(0, ge=0, le=200, description="contact bounces (extra edge pairs) before the level settles")
    bounce_gap_ms: HardwareNumber = Field(1.0, ge=0.01, le=1000, description="time between two bounce edges")


class SimSetInputResult(Payload):
    line: str
    offset: int
    level: Literal[0, 1] = Field(..., description="the physical level the line settled at")
    edges: int


command(SERVICE, "set_rail_lights", SetRailLights, Lights, "Switch the rail (frame) lights on or off.")
command(SERVICE, "get_lights", Empty, Lights, "The rail lights and the button LED.")
command(SERVICE, "set_button_light", SetButtonLight, Lights,
        "Set the button LED to a color, solid or blinking; `auto` hands it back to the status light.")
command(SERVICE, "identify", Identify, IdentifyResult,
        "Blink the button LED for N seconds, then show again what it showed before.")
command(SERVICE, "smoothie_reset", Pulse, PulseResult,
        "Pulse the Smoothieboard's reset line low (board line: for the smoothie-bridge only, ACL-enforced).")
command(SERVICE, "smoothie_halt", Pulse, PulseResult,
        "Pulse the Smoothieboard's halt (kill) line low (board line: for the smoothie-bridge only, ACL-enforced).")
command(SERVICE, "enter_bootloader", Pulse, PulseResult,
        "ISP low with a reset pulse, so the Smoothieboard starts its bootloader (board lines: smoothie-bridge only).")
command(SERVICE, "audio", Audio, AudioResult, "Enable or disable the speaker amplifier.")
command(SERVICE, "sim_set_input", SimSetInput, SimSetInputResult,
        "Simulated backend only: flip an input (button, door, window), optionally with a bounce train.")
state(SERVICE, "door", DoorState, "The door (and window) switches, debounced.")
state(SERVICE, "lights", Lights, "The rail lights and the button LED.")
state(SERVICE, "board", Board, "The backend, chip, board revision and line map in use.")
event(SERVICE, "door", DoorEvent, "A door or window switch changed (debounced).")
event(SERVICE, "button", ButtonEvent, "The front button was pressed, released, or held past the long-press time.")
