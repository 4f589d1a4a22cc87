"""A protocol against the emulator through the real bridge, gpio-service and calibration-store.

Expected numbers are computed here from the shared-data JSON files themselves and the calibration records the
test stores, following the geometry documented in benchbus_protocol/api.py.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from benchbus import BusError
from benchbus_protocol import LeaseLost, RobotAlarm

from .conftest import LEFT, motion_codes

SHARED = Path(__file__).resolve().parents[2] / "shared-data"
TIPRACK_URI = "benchbus/benchbus_96_tiprack_300ul/1"
ATTITUDE = [[1.0, 0.002, 0.0], [-0.002, 1.0, 0.0], [0.0, 0.0, 1.0]]
PIPETTE_OFFSET = [1.2, -0.6, 0.8]
TIP_LENGTH = 52.5


def shared(path: str) -> dict:
    return json.loads((SHARED / path).read_text())


DECK = shared("deck/ot2_standard.json")
PLATE = shared("labware/benchbus_96_wellplate_360ul_flat/1.json")
TIPS = shared("labware/benchbus_96_tiprack_300ul/1.json")
TRASH = shared("labware/benchbus_1_trash_fixed/1.json")
P300 = shared("pipettes/p300_single_gen2.json")


def slot_origin(slot: str) -> list[float]:
    return next(s["position"] for s in DECK["slots"] if s["id"] == slot)


def deck_point(labware: dict, slot_xyz: list[float], well: str, dz: float) -> list[float]:
    w, corner = labware["wells"][well], labware["cornerOffsetFromSlot"]
    return [slot_xyz[0] + corner["x"] + w["x"], slot_xyz[1] + corner["y"] + w["y"], slot_xyz[2] + corner["z"] + w["z"] + dz]


def gantry(point: list[float], tip_length: float, attitude=ATTITUDE, offset=PIPETTE_OFFSET) -> dict:
    q = [sum(attitude[r][c] * point[c] for c in range(3)) for r in range(3)]
    mount, model = DECK["mounts"]["left"]["offset"], P300["modelOffset"]
    x, y, z = (q[i] - mount[i] - model[i] - offset[i] for i in range(3))
    return {"X": x, "Y": y, "Z": z + tip_length}


def ul_per_mm(volume: float) -> float:
    table = P300["ulPerMm"]["aspirate"]
    for (v0, k0), (v1, k1) in zip(table, table[1:]):
        if v0 <= volume <= v1:
            return k0 + (k1 - k0) * (volume - v0) / (v1 - v0)
    return table[-1][1]


def plunger_targets(emulator) -> list[float]:
    """Where each G0 line left the left plunger (B): the last B word of the line (after any backlash)."""
    found = []
    for line in emulator.lines:
        words = re.findall(r"\bB(-?\d+(?:\.\d+)?)", line.split("G4 P0.005")[-1]) if "G0" in line else []
        if words:
            found.append(float(words[-1]))
    return found


def close(position: dict, expected: dict, tol: float = 2e-3) -> bool:
    return all(abs(position[axis] - value) <= tol for axis, value in expected.items())


def store_calibration(bus) -> None:
    bus.call("calibration", "robot_set", {"record": {"kind": "deck", "attitude": ATTITUDE}})
    bus.call("calibration", "robot_set", {"record": {"kind": "pipette_offset", "mount": "left",
                                                     "pipette_id": LEFT[1], "offset": PIPETTE_OFFSET}})
    bus.call("calibration", "robot_set", {"record": {"kind": "tip_length", "pipette_id": LEFT[1],
                                                     "tiprack": TIPRACK_URI, "tip_length": TIP_LENGTH}})


def transfer(protocol):
    tips = protocol.load_labware("benchbus_96_tiprack_300ul", 1)
    plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
    p300 = protocol.load_pipette("p300_single_gen2", "left", tip_racks=[tips])
    p300.pick_up_tip()
    p300.aspirate(50, plate["A1"])
    p300.dispense(50, plate["B1"])
    p300.drop_tip()
    return p300


def test_a_transfer_lands_where_shared_data_and_the_calibration_say(stack):
    store_calibration(stack.bus)
    seen: dict[str, dict] = {}
    with stack.connect() as protocol:
        protocol.step_listeners.append(lambda step: seen.setdefault(step.name, dict(stack.emulator.position)))
        transfer(protocol)
        assert protocol.calibration.notes == []

    emulator = stack.emulator
    codes = emulator.codes()
    # the pipette's firmware configuration went out before anything moved
    config = [codes.index(c) for c in ("M92 B3200", "M365.0 Z172.15", "M365.1 B60")]
    assert max(config) < min(i for i, c in enumerate(codes) if c.startswith("G28.2"))

    bottom = P300["plungerPositions"]["bottom"]
    a1 = gantry(deck_point(PLATE, slot_origin("2"), "A1", 1.0), TIP_LENGTH)
    b1 = gantry(deck_point(PLATE, slot_origin("2"), "B1", 1.0), TIP_LENGTH)
    tip = gantry(deck_point(TIPS, slot_origin("1"), "A1", TIPS["wells"]["A1"]["depth"]), TIP_LENGTH)
    trash_top = deck_point(TRASH, DECK["fixedTrash"]["position"], "A1", TRASH["wells"]["A1"]["depth"])
    aspirated = bottom + 50 / ul_per_mm(50)

    assert close(seen["pick_up_tip"], tip)
    assert close(seen["aspirate"], {**a1, "B": aspirated})
    assert close(seen["dispense"], {**b1, "B": bottom})
    final = emulator.position
    assert close(final, gantry(trash_top, TIP_LENGTH))
    # the plunger homed after the drop: at its switch less the firmware's back-off
    assert final["B"] == emulator.axes["B"].homing_position - DECK["homeRetract"]["B"]

    # the plunger's whole travel: ready at bottom, up by 50 uL, back down, eject, back to bottom, home
    travel = plunger_targets(emulator)
    expected = [bottom, aspirated, bottom, P300["plungerPositions"]["dropTip"], bottom]
    assert len(travel) == len(expected) and all(abs(a - b) < 1e-3 for a, b in zip(travel, expected)), travel
    # the aspirate ran at the flow rate: 94 uL/s over 9.4 uL/mm = 10 mm/s = F600
    flow = P300["defaultFlowRates"]["aspirate"] / ul_per_mm(50) * 60
    assert any(f"G0 F{flow:g} G0 B" in line for line in emulator.lines)
    # the tip was pressed on with the pick-up current, the tip ejected with the drop-tip current
    assert any(f"Z{P300['pickUpTip']['current']:g} " in line and "G0 F600 G0 Z" in line for line in emulator.lines)
    assert any(f"B{P300['dropTipCurrent']:g} " in line and f"B{P300['plungerPositions']['dropTip']:g}" in line
               for line in emulator.lines)


def test_without_calibration_nominal_geometry_is_used_and_said(stack):
    seen = {}
    with stack.connect() as protocol:
        protocol.step_listeners.append(lambda step: seen.setdefault(step.name, dict(stack.emulator.position)))
        transfer(protocol)
        notes = list(protocol.calibration.notes)
    assert any("no deck calibration" in n for n in notes) and any("no pipette offset" in n for n in notes)
    nominal_tip = TIPS["parameters"]["tipLength"] - P300["tipOverlap"][TIPRACK_URI]
    identity = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    a1 = gantry(deck_point(PLATE, slot_origin("2"), "A1", 1.0), nominal_tip, identity, [0, 0, 0])
    assert close(seen["aspirate"], a1)


def test_the_lease_is_held_for_the_protocol_and_released_after(stack, client_named):
    other = client_named("dashboard")
    during = {}

    def try_to_move(step):
        if step.name == "aspirate":
            during["lease"] = other.call("smoothie", "position") and other.wait_for(
                other.topic("smoothie", "state", "lease"), lambda _t, d: d and d.get("holder"))[1]
            with pytest.raises(BusError) as refused:
                other.call("smoothie", "move", {"target": {"X": 10}})
            during["refusal"] = refused.value

    with stack.connect() as protocol:
        protocol.step_listeners.append(try_to_move)
        name = protocol.robot.name
        transfer(protocol)
    assert during["lease"]["holder"] == name
    assert during["refusal"].code == "conflict" and during["refusal"].detail["holder"] == name
    other.wait_for(other.topic("smoothie", "state", "lease"), lambda _t, d: d and d.get("holder") is None)
    assert other.call("smoothie", "acquire_motion", {"ttl_s": 5})["holder"] == "dashboard"


def test_the_lease_is_released_when_the_protocol_fails(stack, client_named):
    other = client_named("dashboard")
    with pytest.raises(ZeroDivisionError):
        with stack.connect() as protocol:
            protocol.load_pipette("p300_single_gen2", "left")
            protocol.home()
            1 / 0
    other.wait_for(other.topic("smoothie", "state", "lease"), lambda _t, d: d and d.get("holder") is None)
    assert other.call("smoothie", "move", {"target": {"X": 100}})["X"] == 100


def test_a_robot_in_use_by_another_client_is_a_clear_error(stack, client_named):
    client_named("someone-else").call("smoothie", "acquire_motion", {"ttl_s": 30})
    with pytest.raises(LeaseLost, match="someone-else"):
        stack.connect()


def test_the_door_opening_mid_protocol_pauses_it_and_resume_continues(stack):
    messages: list[str] = []
    at_pause = {}

    def open_door_after_aspirate(step):
        if step.name == "aspirate":
            at_pause["position"] = dict(stack.emulator.position)
            at_pause["lines"] = len(stack.emulator.lines)
            stack.door(True)

    protocol = stack.connect(on_pause=messages.append)
    protocol.step_listeners.append(open_door_after_aspirate)
    failure = []

    def run():
        try:
            transfer(protocol)
        except Exception as exc:  # surfaced by the assertions below
            failure.append(exc)
    worker = threading.Thread(target=run)
    try:
        worker.start()
        stack.bus.wait_for(stack.bus.topic("smoothie", "state", "paused"), lambda _t, d: d and d.get("paused"))
        _wait(lambda: protocol.paused, "the protocol to wait")
        assert "door" in messages[0]
        assert motion_codes(stack.emulator, at_pause["lines"]) == []  # nothing moved after the door opened
        protocol.resume()  # door still open: refused, still waiting
        _wait(lambda: any("still paused" in m for m in messages), "the refused resume")
        assert protocol.paused and worker.is_alive()
        stack.door(False)
        assert protocol.paused  # closing the door alone does not restart the robot
        stack.press_button()  # the robot's front button resumes, as on the OT-2
        worker.join(timeout=60)
        assert not worker.is_alive() and failure == []
        assert plunger_targets(stack.emulator)[-2:] == [P300["plungerPositions"]["dropTip"],
                                                        P300["plungerPositions"]["bottom"]]
        assert stack.emulator.position["B"] == 18.0
    finally:
        protocol.close()


def test_an_alarm_is_reported_as_robot_alarm_and_homing_clears_it(stack):
    with stack.connect() as protocol:
        tips = protocol.load_labware("benchbus_96_tiprack_300ul", 1)
        p300 = protocol.load_pipette("p300_single_gen2", "left", tip_racks=[tips])
        protocol.home()
        stack.emulator.inject("limit_alarm")
        with pytest.raises(RobotAlarm, match="Hard limit") as raised:
            p300.move_to(tips["A1"])
        assert "home" in str(raised.value)
        protocol.home()
        p300.pick_up_tip()
        assert p300.has_tip


def _wait(condition, what: str, timeout: float = 20.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
