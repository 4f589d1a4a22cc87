"""The eVOLVER GUI's client library (socket.io-client 2.x on Node) doing what the GUI does, against the whole stack."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


def run_gui(url: str, plan: dict, timeout: float = 30) -> list[dict]:
    assert shutil.which("node"), "node is not installed (./dev installs it)"
    assert (NODE_DIR / "node_modules" / "socket.io-client").is_dir(), \
        "socket.io-client 2.x is not installed: ./dev runs npm ci in tests/gateway/node"
    done = subprocess.run(["node", str(NODE_DIR / "gui_client.js"), url, json.dumps(plan)], capture_output=True,
                          text=True, timeout=timeout)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines and lines[-1].get("done"), (done.stdout[-3000:], done.stderr[-3000:])
    return lines


def received(lines: list[dict], event: str) -> list:
    return [line["data"] for line in lines if line.get("event") == event]


@pytest.mark.slow
def test_the_gui_sets_up_calibrates_and_commands(stack):
    gateway, emulator = stack
    url = f"http://localhost:{gateway.port}/dpu-evolver"
    pump = ["--"] * 48
    pump[5] = "2"
    plan = {
        "emit": [
            ["getactivecal", {}],
            ["getfitnames", {}],
            ["getdevicename", {}],
            ["command", {"param": "stir", "value": ["6"] * 16, "immediate": True}],
            ["command", {"param": "pump", "value": pump, "immediate": True}],
            ["command", {"param": "no_such_board", "value": "1", "immediate": True}],
            ["stopread", {}],
            ["data", {"config": {"od": [0] * 16, "temp": ["NaN"] * 16}}],
            ["getcalibration", {"name": "no such calibration"}],
        ],
        "wait_for": {"broadcast": 1, "activecalibrations": 1, "fitnames": 1, "broadcastname": 1,
                     "commandbroadcast": 2, "benchbus_error": 2},
    }
    lines = run_gui(url, plan)
    assert lines[-1]["transport"] == "websocket"
    fit_names = {f["name"] for f in received(lines, "fitnames")[0]}
    active = received(lines, "activecalibrations")[0]
    assert {f["name"] for c in active for f in c["fits"] if f["active"]} <= fit_names
    assert received(lines, "broadcastname")[0]["deviceName"] == "evolver-test"
    errors = {e["event"]: e for e in received(lines, "benchbus_error")}
    assert errors["command"]["code"] == "invalid_request" or errors["command"]["code"] == "not_found"
    assert errors["getcalibration"]["code"] == "not_found"
    assert len(received(lines, "commandbroadcast")) == 2  # the refused command is not echoed as received
    assert emulator.wait_applied("stir", ["6"] * 16, timeout=10)
    assert emulator.wait_applied("pump", pump, timeout=10)

    # setactivecal with the active fit names: everyone gets activecalibrations; setdevicename: everyone gets the name
    names = [f["name"] for c in active for f in c["fits"] if f["active"]]
    lines = run_gui(url, {"emit": [["setactivecal", {"calibration_names": names}],
                                   ["setdevicename", {"ip": "10.0.0.7", "mac": "b8:27:eb:00:00:01",
                                                      "deviceName": "evolver-renamed"}]],
                          "wait_for": {"activecalibrations": 1, "broadcastname": 1}})
    assert received(lines, "broadcastname")[0] == {"ip": "10.0.0.7", "mac": "b8:27:eb:00:00:01",
                                                   "deviceName": "evolver-renamed"}
    assert sorted(f["name"] for c in received(lines, "activecalibrations")[0] for f in c["fits"] if f["active"]) == \
        sorted(names)
