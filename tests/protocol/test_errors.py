"""Every mistake a protocol can make is a clear error raised before the robot moves (the emulator's G-code log
shows no motion)."""
from __future__ import annotations

import pytest

from benchbus import BusError
from benchbus_protocol import LabwareError, PipetteError, VolumeError

from .conftest import motion_codes


def test_loading_mistakes_are_refused_before_anything_moves(stack):
    with stack.connect() as protocol:
        plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
        with pytest.raises(LabwareError, match=r"slot 2 is already taken by 96 Well Plate"):
            protocol.load_labware("benchbus_12_reservoir_15ml", 2)
        with pytest.raises(LabwareError, match="slot 12 is taken by the fixed trash"):
            protocol.load_labware("benchbus_12_reservoir_15ml", 12)
        with pytest.raises(LabwareError, match="no slot '13'"):
            protocol.load_labware("benchbus_12_reservoir_15ml", "13")
        with pytest.raises(LabwareError, match=r"no labware named 'corning_96_wellplate'; known: benchbus_12"):
            protocol.load_labware("corning_96_wellplate", 3)
        for missing in ("Z99", "A13", "I1", "a1"):
            with pytest.raises(LabwareError, match=rf"has no well '{missing}'; its wells run A1..H12"):
                plate[missing]
        with pytest.raises(PipetteError, match=r"the right mount carries a p20_multi_v2.0 .* not a p20_single_gen2"):
            protocol.load_pipette("p20_single_gen2", "right")
        with pytest.raises(PipetteError, match=r"carries a p300_single_v2.1 \(p300_single_gen2\), not a p1000"):
            protocol.load_pipette("p1000_single_gen2", "left")
        with pytest.raises(PipetteError, match="no pipette named 'p300_single'"):
            protocol.load_pipette("p300_single", "left")
        with pytest.raises(PipetteError, match="mount 'middle'"):
            protocol.load_pipette("p300_single_gen2", "middle")
        with pytest.raises(PipetteError, match="is not a tip rack"):
            protocol.load_pipette("p300_single_gen2", "left", tip_racks=[plate])
        assert protocol.pipettes == {} and list(protocol.labware) == ["2"]
    assert motion_codes(stack.emulator) == []


def test_pipetting_mistakes_are_refused_before_anything_moves(stack):
    with stack.connect() as protocol:
        tips = protocol.load_labware("benchbus_96_tiprack_300ul", 1)
        plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
        p300 = protocol.load_pipette("p300_single_gen2", "left", tip_racks=[tips])
        for volume in (500, 300.5, 19.9, 0, -5, float("nan")):
            with pytest.raises(VolumeError, match="aspirate"):
                p300.aspirate(volume, plate["A1"])
        with pytest.raises(VolumeError, match="handles 20 to 300 uL"):
            p300.aspirate(301, plate["A1"])
        with pytest.raises(PipetteError, match="has no tip; pick_up_tip"):
            p300.aspirate(50, plate["A1"])
        with pytest.raises(PipetteError, match="has no tip"):
            p300.dispense(50, plate["B1"])
        with pytest.raises(PipetteError, match="has no tip"):
            p300.drop_tip()
        with pytest.raises(PipetteError, match="not in a tip rack"):
            p300.pick_up_tip(plate["A1"])
        with pytest.raises(PipetteError, match=r"flow_rate.aspirate = 0: give 0 < rate"):
            p300.flow_rate.aspirate = 0
        with pytest.raises(PipetteError, match="flow_rate.dispense"):
            p300.flow_rate.dispense = 10_000
        with pytest.raises(PipetteError, match="is not a well or a location"):
            p300.move_to("A1")
    assert motion_codes(stack.emulator) == []


def test_mid_protocol_mistakes_stop_before_the_next_motion(stack):
    with stack.connect() as protocol:
        tips = protocol.load_labware("benchbus_96_tiprack_300ul", 1)
        plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
        p300 = protocol.load_pipette("p300_single_gen2", "left", tip_racks=[tips])
        p300.pick_up_tip()
        p300.aspirate(200, plate["A1"])
        mark = len(stack.emulator.lines)
        with pytest.raises(VolumeError, match="holds 200 uL already and the p300_single_gen2 takes at most 300"):
            p300.aspirate(150, plate["A1"])
        with pytest.raises(VolumeError, match="holds only 200 uL"):
            p300.dispense(250, plate["B1"])
        with pytest.raises(PipetteError, match="already has a tip"):
            p300.pick_up_tip()
        with pytest.raises(LabwareError, match="no well 'B0'"):
            p300.dispense(100, plate["B0"])
        assert p300.current_volume == 200
        assert motion_codes(stack.emulator, mark) == []
        p300.dispense(200, plate["B1"])  # the protocol carries on after refused calls
        assert motion_codes(stack.emulator, mark) != []
        assert p300.current_volume == 0


def test_an_eight_channel_goes_to_row_a_only(start_stack, emulator):
    emulator.set_pipette("right", ("p300_multi_v2.1", "P3HMV2120200101"))
    stack = start_stack()
    with stack.connect() as protocol:
        tips = protocol.load_labware("benchbus_96_tiprack_300ul", 1)
        plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
        multi = protocol.load_pipette("p300_multi_gen2", "right", tip_racks=[tips])
        with pytest.raises(PipetteError, match="8-channel pipette goes to row A"):
            multi.pick_up_tip(tips["B1"])
        multi.pick_up_tip()
        assert tips.next_tip(8).name == "A2" and tips.next_tip(1).name == "A2"
        with pytest.raises(PipetteError, match="not C3"):
            multi.aspirate(50, plate["C3"])
        multi.aspirate(50, plate["A3"])
        multi.drop_tip()


def test_protocol_clients_configure_pipettes_without_being_admins(stack):
    """The bridge keeps its default admin_clients (["admin"]): load_pipette works through the typed
    configure_pipette, and the protocol's own client is refused raw G-code."""
    with stack.connect() as protocol:
        start = len(stack.emulator.lines)
        protocol.load_pipette("p300_single_gen2", "left")
        assert ["M92 B3200", "M365.0 Z172.15", "M365.1 B60"] == [
            line for line in stack.emulator.lines[start:] if line.startswith(("M92", "M365"))]
        with pytest.raises(BusError) as err:
            protocol.robot.bus.call("smoothie", "gcode", {"lines": ["M92 B1"]}, timeout=10)
        assert err.value.code == "unauthorized" and protocol.robot.name.startswith("protocol-")
    assert motion_codes(stack.emulator) == []
    assert stack.emulator.steps_per_mm["B"] == 3200
