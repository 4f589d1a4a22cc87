"""benchbus protocol API: liquid handling on an OT-2-style robot through the bus, from a script or notebook.

    from benchbus_protocol import connect
    with connect("ot2", "localhost:1883") as protocol:
        tips = protocol.load_labware("benchbus_96_tiprack_300ul", 1)
        plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
        p300 = protocol.load_pipette("p300_single_gen2", "left", tip_racks=[tips])
        p300.pick_up_tip()
        p300.aspirate(50, plate["A1"])
        p300.dispense(50, plate["B1"])
        p300.drop_tip()
"""
from .api import InstrumentContext, ProtocolContext, connect
from .errors import (DoorOpen, LabwareError, LeaseLost, MotionError, PipetteError, ProtocolError, RobotAlarm,
                     RobotUnavailable, VolumeError)
from .geometry import Labware, Location, Point, Well

__all__ = ["connect", "ProtocolContext", "InstrumentContext", "Labware", "Location", "Point", "Well",
           "ProtocolError", "LabwareError", "PipetteError", "VolumeError", "MotionError", "RobotAlarm", "DoorOpen",
           "LeaseLost", "RobotUnavailable"]
