"""Calibrations stay calibration-store's: a run materialises them into its private Opentrons config folder, and
Opentrons' geometry uses them (the gantry goes where the pipette offset says)."""
from __future__ import annotations

from benchbus_ot2 import Robot

LEFT_ID = "P3HSV2120200101"  # the emulated left pipette (conftest)


def move_over_a1(stack) -> dict:
    """A notebook-style session: put the left pipette 40 mm over A1 of a plate in slot 2; the machine position after."""
    from benchbus_ot2 import RobotSession

    with RobotSession(Robot(stack.device, stack.broker.settings())) as session:
        protocol = session.context("2.13")
        protocol.home()
        plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
        pipette = protocol.load_instrument("p300_single_gen2", "left")
        pipette.move_to(plate["A1"].top(40))
        offset = session.hardware.hardware_instruments[__import__("opentrons.types").types.Mount.LEFT].pipette_offset
        notes = list(session.calibration_notes)
    return {"position": stack.bus.call("smoothie", "position", {}), "offset": offset.offset, "notes": notes}


def test_a_pipette_offset_from_the_store_moves_the_gantry_by_that_offset(stack):
    nominal = move_over_a1(stack)
    assert nominal["notes"] == [] and tuple(nominal["offset"]) == (0, 0, 0)
    stack.bus.call("calibration", "robot_set", {"record": {"kind": "pipette_offset", "mount": "left",
                                                          "pipette_id": LEFT_ID, "offset": [1.5, -2.0, 0.0],
                                                          "uri": "opentrons/opentrons_96_tiprack_300ul/1"}})
    calibrated = move_over_a1(stack)
    assert calibrated["notes"] == [f"pipette offset left {LEFT_ID}"]
    assert tuple(calibrated["offset"]) == (1.5, -2.0, 0.0)
    shift = {axis: calibrated["position"][axis] - nominal["position"][axis] for axis in "XY"}
    assert abs(abs(shift["X"]) - 1.5) < 0.01 and abs(abs(shift["Y"]) - 2.0) < 0.01, shift
    stack.bus.call("calibration", "robot_delete", {"kind": "pipette_offset", "mount": "left", "pipette_id": LEFT_ID})
    assert move_over_a1(stack)["position"] == nominal["position"]  # the folder follows the store, nothing stale


def test_what_a_session_calibrates_goes_back_to_the_store(stack):
    """A notebook calibrates a tip length with Opentrons' own calibration functions; the store keeps it."""
    from benchbus_ot2 import RobotSession
    from opentrons.calibration_storage.ot2 import tip_length
    from opentrons.calibration_storage.ot2.models import v1
    from opentrons.util.helpers import utc_now

    uri = "opentrons/opentrons_96_tiprack_300ul/1"
    stack.bus.call("calibration", "robot_set", {"record": {"kind": "tip_length", "pipette_id": LEFT_ID,
                                                          "tiprack": uri, "tip_length": 51.0}})
    with RobotSession(Robot(stack.device, stack.broker.settings())) as session:
        assert session.calibration_notes == [f"tip length {LEFT_ID} {uri}"]
        assert tip_length.tip_lengths_for_pipette(LEFT_ID)[uri].tipLength == 51.0  # the store's, in the folder
        tip_length.save_tip_length_calibration(LEFT_ID, {uri: v1.TipLengthModel(
            tipLength=52.25, lastModified=utc_now(), definitionHash="")})
    assert session.calibration_notes[-1] == f"stored tip_length {LEFT_ID}"
    stored = stack.bus.call("calibration", "robot_get", {"kind": "tip_length", "pipette_id": LEFT_ID,
                                                         "tiprack": uri})["record"]
    assert stored["tip_length"] == 52.25
    with RobotSession(Robot(stack.device, stack.broker.settings())) as again:  # nothing changed: nothing written
        pass
    assert not any(note.startswith("stored") for note in again.calibration_notes)
