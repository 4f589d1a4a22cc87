"""What the bus backend raises into an Opentrons protocol. They are Opentrons' own `MotionFailedError` (an
`EnumeratedError` with an error code), so the protocol engine reports them as the robot refusing a motion, with
the bridge's words in the message and the bus error code in `detail["bus_code"]`."""
from __future__ import annotations

from typing import Any

from opentrons_shared_data.errors.exceptions import MotionFailedError


class MotionError(MotionFailedError):
    """The robot refused or failed a motion (out of reach, not answering, ...)."""

    def __init__(self, message: str, code: str | None = None, detail: Any = None):
        flat = {"bus_code": str(code)} if code else {}
        if isinstance(detail, dict):
            flat.update({str(key): str(value) for key, value in detail.items()})
        super().__init__(message=message, detail=flat)
        self.bus_code = code  # `code` is Opentrons' own ErrorCodes member: never shadow it
        self.bus_detail = detail

    def __str__(self) -> str:  # Opentrons prints the class and the message; the message alone reads best here
        return self.message


class RobotAlarm(MotionError):
    """The board raised an alarm (a limit switch, a halt): the robot must be homed before it moves again."""


class DoorOpen(MotionError):
    """The door is open (or the robot is paused) and nobody resumed within the pause timeout."""


class LeaseLost(MotionError):
    """Another client holds the robot's motion lease."""


class RobotUnavailable(MotionError):
    """The smoothie-bridge (or the broker) does not answer, or the board is not ready."""
