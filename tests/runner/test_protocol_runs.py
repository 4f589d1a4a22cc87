"""Protocols uploaded, analysed and run over the robot-server's HTTP API (httpx as the client), followed on the
bus; the emulator shows what moved."""
from __future__ import annotations

from .conftest import LABWARE, PROTOCOLS, emulator_lines, lease_free, moves

CUSTOM = '''
requirements = {"robotType": "OT-2", "apiLevel": "2.13"}

def run(protocol):
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    rack = protocol.load_labware("benchtest_6_tuberack_5ml", 2)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])
    p300.pick_up_tip()
    p300.aspirate(100, rack["A1"])
    p300.dispense(100, rack["A2"])
    p300.drop_tip()
'''


def test_upload_analyse_play_to_succeeded(runner, stack, bus):
    commands: list[dict] = []
    bus.subscribe(bus.topic("runner", "event", "command"), lambda _t, data, _m: commands.append(data))
    reply = runner.upload((PROTOCOLS / "api_2_15_engine.py").read_text(), "engine.py")
    assert reply.status_code == 201, reply.text
    protocol = reply.json()["data"]
    assert reply.headers["Opentrons-Version"] and protocol["files"][0] == {"name": "engine.py", "role": "main"}
    analysis = runner.get(f"/protocols/{protocol['id']}/analyses")["data"][0]
    assert analysis["result"] == "ok"
    assert {p["pipetteName"] for p in analysis["pipettes"]} == {"p300_single_gen2", "p20_multi_gen2"}
    assert any(step.startswith("aspirate") for step in analysis["steps"])
    assert protocol["id"] in [p["id"] for p in runner.get("/protocols")["data"]]

    run = runner.post("/runs", {"data": {"protocolId": protocol["id"]}})["data"]
    assert run["status"] == "idle" and run["current"] is True
    _lines, mark = emulator_lines(stack)
    runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "play"}})
    done = runner.wait_status(run["id"], ("succeeded", "failed", "stopped"))
    assert done["status"] == "succeeded", done["errors"]
    log = runner.get(f"/runs/{run['id']}/commands")["data"]
    assert log and all(c["status"] == "succeeded" for c in log)
    assert any("Aspirating" in c["params"]["text"] for c in log)
    lines, _ = emulator_lines(stack, mark)
    assert moves(lines), "the run moved nothing on the board"
    assert {c["status"] for c in commands} >= {"running", "succeeded"}
    lease_free(bus)
    _t, state = bus.wait_for(bus.topic("runner", "state", "run"), lambda _t, d: d.get("id") == run["id"]
                             and d.get("status") == "succeeded")
    assert state["progress"] == 1.0


def test_custom_labware_travels_with_the_protocol(runner):
    reply = runner.upload(CUSTOM, "custom.py", labware=[LABWARE])
    assert reply.status_code == 201, reply.text
    protocol = reply.json()["data"]
    assert {"name": LABWARE.name, "role": "labware"} in protocol["files"]
    run = runner.post("/runs", {"data": {"protocolId": protocol["id"]}})["data"]
    runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "play"}})
    done = runner.wait_status(run["id"], ("succeeded", "failed", "stopped"))
    assert done["status"] == "succeeded", done["errors"]


SYNTAX = 'requirements = {"robotType": "OT-2", "apiLevel": "2.13"}\n\ndef run(protocol)\n    pass\n'
MISSING = ('requirements = {"robotType": "OT-2", "apiLevel": "2.13"}\n\ndef run(protocol):\n'
           '    protocol.load_labware("opentrons_96_tiprack_300ul", 1)\n'
           '    protocol.load_labware("no_such_plate_96", 2)\n')
TOO_MUCH = ('requirements = {"robotType": "OT-2", "apiLevel": "2.16"}\n\ndef run(protocol):\n'
            '    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)\n'
            '    plate = protocol.load_labware("nest_12_reservoir_15ml", 2)\n'
            '    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])\n'
            '    p300.pick_up_tip()\n'
            '    p300.aspirate(450, plate["A1"])\n')


def test_broken_protocols_are_refused_at_upload_with_line_and_message(runner, stack):
    _lines, mark = emulator_lines(stack)
    cases = [(SYNTAX, 3, "expected ':'"), (MISSING, 5, "no_such_plate_96"), (TOO_MUCH, 8, "volume")]
    for source, line, words in cases:
        reply = runner.upload(source, "broken.py")
        assert reply.status_code == 422, reply.text
        error = reply.json()["errors"][0]
        assert f"line {line}" in error["detail"] and words.lower() in error["detail"].lower(), error
    assert runner.get("/protocols")["data"] == []  # nothing kept
    lines, _ = emulator_lines(stack, mark)
    assert moves(lines) == [], "an upload moved the robot"


def test_writes_need_the_token_from_elsewhere(runner):
    import httpx

    reply = httpx.post(runner.base + "/runs", headers={"Opentrons-Version": "*", "Authorization": "Bearer wrong"},
                       timeout=10)
    assert reply.status_code == 201  # loopback is trusted by default
    token = (runner.data_dir / "token").read_text().strip()
    assert len(token) >= 32 and (runner.data_dir / "token").stat().st_mode & 0o077 == 0
    assert httpx.get(runner.base + "/runs", timeout=10).status_code == 422  # the robot-server wants the header
