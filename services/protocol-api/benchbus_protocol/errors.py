"""What a protocol can raise. Every message says what was wrong and what to do; checks run before any motion."""
from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error of the protocol API."""


class LabwareError(ProtocolError):
    """Unknown labware, a slot that does not exist or is taken, a well the labware does not have, no tips left."""


class PipetteError(ProtocolError):
    """Unknown pipette, a mount taken twice, the wrong pipette attached, a tip missing or already on."""


class VolumeError(ProtocolError):
    """A volume outside the pipette's range, or more than the tip holds or the well has."""


class MotionError(ProtocolError):
    """The robot refused or failed a motion (out of reach, not answering, ...)."""

    def __init__(self, message: str, code: str | None = None, detail=None):
        super().__init__(message)
        self.code = code
        self.detail = detail


class RobotAlarm(MotionError):
    """The board raised an alarm (a limit switch, a halt): the robot must be homed before it moves again."""


class DoorOpen(MotionError):
    """The door is open (or the robot is paused) and the protocol could not wait for a resume."""


class LeaseLost(MotionError):
    """Another client holds the robot's motion lease."""


class RobotUnavailable(MotionError):
    """The smoothie-bridge (or the broker) does not answer, or the board is not ready."""
