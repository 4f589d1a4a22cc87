"""Protocols uploaded, analysed and run over the robot-server's HTTP API (httpx as the client), followed on the
bus; the emulator shows what moved."""
from __future__ import annotations

from pathlib import Path

from .conftest import HEADERS, LABWARE, LONG, PROTOCOLS, emulator_lines, lease_free, moves, wait_steps

CUSTOM = (Path(__file__).parent / "protocols" / "custom_labware_transfer.py").read_text()


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


def test_writes_need_the_token_outside_the_trusted_networks(start_runner):
    import httpx

    runner = start_runner(env={"BENCHBUS_RUNNER_TRUSTED_NETWORKS": "[]"})  # not even loopback is trusted
    token_file = runner.data_dir / "token"
    token = token_file.read_text().strip()
    assert len(token) >= 32 and token_file.stat().st_mode & 0o077 == 0
    for presented in ({}, {"Authorization": "Bearer not-the-token-at-all"}):
        refused = httpx.post(runner.base + "/runs", headers={**HEADERS, **presented}, timeout=10)
        assert refused.status_code == 401 and "token" in refused.text
    assert httpx.get(runner.base + "/runs", headers=HEADERS, timeout=10).status_code == 200  # reads are open
    made = httpx.post(runner.base + "/runs", headers={**HEADERS, "Authorization": f"Bearer {token}"}, timeout=60)
    assert made.status_code == 201, made.text
    run_id = made.json()["data"]["id"]
    assert httpx.delete(f"{runner.base}/runs/{run_id}", headers=HEADERS, timeout=10).status_code == 401
    gone = httpx.delete(f"{runner.base}/runs/{run_id}", headers={**HEADERS, "Authorization": f"Bearer {token}"},
                        timeout=60)
    assert gone.status_code == 200, gone.text
    assert httpx.get(runner.base + "/runs", timeout=10).status_code == 422  # the robot-server wants the header


def test_pause_and_resume_over_http_and_the_bus(runner, bus):
    protocol = runner.upload(LONG.replace("range(400)", "range(30)"), "long.py").json()["data"]
    assert bus.call("runner", "analyse", {"protocol_id": protocol["id"]})["result"] == "ok"
    assert protocol["id"] in [p["id"] for p in bus.call("runner", "list", {})["protocols"]]
    run = bus.call("runner", "create_run", {"protocol_id": protocol["id"]}, timeout=30)
    bus.call("runner", "play", {"run_id": run["id"]}, timeout=30)
    wait_steps(bus, run["id"], 3)
    runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "pause"}})
    assert runner.get(f"/runs/{run['id']}")["data"]["status"] == "paused"
    held = runner.get(f"/runs/{run['id']}")["data"]["progress"]
    bus.wait_for(bus.topic("smoothie", "state", "paused"), lambda _t, d: (d or {}).get("paused") is True, 10)
    assert runner.get(f"/runs/{run['id']}")["data"]["progress"] <= held + 0.05  # at most the moving step ends
    bus.call("runner", "resume", {"run_id": run["id"]})
    done = runner.wait_status(run["id"], ("succeeded", "failed", "stopped"))
    assert done["status"] == "succeeded", done["errors"]
