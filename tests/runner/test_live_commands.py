"""The live-command path as `ot_api` (PyPI `opentrons-http-api-client`, the client PyLabRobot's Opentrons backend
uses) drives it: a run without a protocol, a labware definition, then commands executed by Opentrons' protocol
engine on the bus backend; the emulator's G-code shows the plunger and the mount moving."""
from __future__ import annotations

import json
import re

import ot_api
import pytest

from benchbus.testing import wait_until

from .conftest import LABWARE, emulator_lines, lease_free, moves


@pytest.fixture
def client(runner):
    ot_api.set_host("127.0.0.1")
    ot_api.set_port(runner.port)
    yield ot_api
    ot_api.set_run(None)


def plunger_moves(lines: list[str]) -> list[str]:
    return [line for line in moves(lines) if re.search(r"\bG0 B-?\d", line)]


def test_live_session_with_ot_api(client, runner, stack, bus):
    events: list[dict] = []
    statuses: list[dict] = []
    bus.subscribe(bus.topic("runner", "event", "command"), lambda _t, data, _m: events.append(data))
    bus.subscribe(bus.topic("runner", "event", "run"), lambda _t, data, _m: statuses.append(data))
    assert client.health.get()["robot_model"] == "OT-2 Standard"
    run_id = client.runs.create()
    client.set_run(run_id)
    client.health.home()  # POST /robot/home: through the live run's engine, answered when homed

    definition = json.loads(LABWARE.read_text())
    defined = client.labware.define(definition)
    assert defined["data"]["definitionUri"] == "custom_beta/benchtest_6_tuberack_5ml/1"
    rack = client.labware.add("benchtest_6_tuberack_5ml", "custom_beta", 1, 2)["data"]["result"]["labwareId"]
    tips = client.labware.add("opentrons_96_tiprack_300ul", "opentrons", 1, 1)["data"]["result"]["labwareId"]
    pipettes = client.lh.add_mounted_pipettes()  # GET /pipettes, then loadPipette for what the board reports
    left = pipettes[0]
    assert left["name"] == "p300_single_gen2"

    _lines, mark = emulator_lines(stack)
    # ot_api measures from the well's bottom; at offset 0 the nozzle would go through the rack, which the bridge
    # refuses (outside travel), so the tips are taken near their top, as PyLabRobot's offsets do
    client.lh.pick_up_tip(tips, "A1", left["pipetteId"], offset_z=50)
    client.lh.aspirate(rack, "A1", 100, 50, left["pipetteId"], offset_z=10)
    client.lh.dispense(rack, "A2", 100, 50, left["pipetteId"], offset_z=10)
    client.lh.drop_tip(tips, "A1", left["pipetteId"], offset_z=50)
    lines, _ = emulator_lines(stack, mark)
    assert len(plunger_moves(lines)) >= 3, lines  # tip pick-up prep, aspirate, dispense, drop
    assert any("Z" in line for line in moves(lines))

    commands = runner.get(f"/runs/{run_id}/commands")["data"]
    kinds = [c["commandType"] for c in commands]
    for kind in ("home", "loadLabware", "loadPipette", "pickUpTip", "aspirate", "dispense", "dropTip"):
        assert kind in kinds
    assert all(c["status"] == "succeeded" for c in commands)

    # a command with a volume the pipette cannot hold fails in the engine, with its reason; nothing new moves
    waited = runner.post(f"/runs/{run_id}/commands?waitUntilComplete=true",
                         {"data": {"commandType": "aspirateInPlace", "intent": "setup",
                                   "params": {"pipetteId": left["pipetteId"], "volume": 500, "flowRate": 50}}})
    assert waited["data"]["status"] == "failed" and waited["data"]["error"]["detail"]
    # ot_api's commands are setup commands; the first protocol command plays the run, as on the robot-server
    assert runner.get(f"/runs/{run_id}")["data"]["status"] == "idle"
    runner.post(f"/runs/{run_id}/commands?waitUntilComplete=true",
                {"data": {"commandType": "comment", "intent": "protocol", "params": {"message": "hello"}}})
    wait_until(lambda: runner.get(f"/runs/{run_id}")["data"]["status"] == "running", 10, "the run playing")

    runner.post(f"/runs/{run_id}/actions", {"data": {"actionType": "stop"}})
    assert runner.wait_status(run_id, ("stopped",), timeout=15)["status"] == "stopped"
    lease_free(bus)

    # the bus saw each command start and finish, as a protocol run's log, and the run's status changes
    wait_until(lambda: [e["status"] for e in events if e["command_type"] == "aspirateInPlace"] == ["running", "failed"],
               10, "the failed aspirateInPlace's events")
    mine = [e for e in events if e["run_id"] == run_id]
    for kind in ("home", "loadLabware", "loadPipette", "pickUpTip", "aspirate", "dispense", "dropTip"):
        assert [e["status"] for e in mine if e["command_type"] == kind][:2] == ["running", "succeeded"], kind
    aspirate = next(e for e in mine if e["command_type"] == "aspirate")
    assert "100 uL" in aspirate["text"] and "well A1" in aspirate["text"]
    failed = next(e for e in mine if e["status"] == "failed")
    assert failed["error"]  # why it failed, on the bus
    wait_until(lambda: [s["status"] for s in statuses if s["run_id"] == run_id] == [
        "running", "stop-requested", "stopped"], 10, "the live run's status events")


def test_a_command_of_a_kind_the_engine_does_not_know_is_refused(client, runner):
    run_id = client.runs.create()
    reply = runner.post(f"/runs/{run_id}/commands", {"data": {"commandType": "selfDestruct", "params": {}}},
                        expect=422)
    assert "selfDestruct" in json.dumps(reply)
