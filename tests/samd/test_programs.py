"""The two programs as they run on a laptop: `benchbus-samd-emulator` and the bridge, and `benchbus up --only samd`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from benchbus import BusError
from benchbus.testing.broker import free_port, wait_for_port
from benchbus_samd.emulator.boards import DEFAULT_PARAMS


def _request(param: str, values=None) -> dict:
    default, fields_out, fields_in = DEFAULT_PARAMS[param]
    return {"param": param, "type": "i", "values": values or default, "fields_out": fields_out, "fields_in": fields_in}


def _control(port: int, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data), timeout=5) as r:
        return json.loads(r.read())


def test_emulator_program_with_its_control_interface_and_the_bridge_program(spawn, bus, tmp_path):
    serial_port, control_port = free_port(), free_port()
    emulator = subprocess.Popen([sys.executable, "-m", "benchbus_samd.emulator", "--tcp", str(serial_port),
                                 "--control-port", str(control_port), "--baud", "115200", "--reply-delay", "0.003",
                                 "--hold", "0.003", "--stir-hold", "0.006"], stdout=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", control_port, 10, emulator)
        spawn(["python", "-m", "benchbus_samd"], segment="samd", env={
            "BENCHBUS_SAMD_PORT": f"socket://127.0.0.1:{serial_port}", "BENCHBUS_SAMD_BAUDRATE": "115200",
            "BENCHBUS_SAMD_REPLY_DELAY_S": "0.003", "BENCHBUS_SAMD_HOLD_S": "0.003",
            "BENCHBUS_SAMD_HOLD_OVERRIDES": '{"stir": 0.006}'})
        values = ["2"] * 16
        assert bus.call("samd", "transact", _request("stir", values))["values"] == values
        assert _control(control_port, "/state")["boards"]["stir"]["applied"] == values

        _control(control_port, "/fault", {"param": "stir", "kind": "silence"})
        with pytest.raises(BusError) as caught:
            bus.call("samd", "transact", _request("stir", ["5"] * 16))
        assert caught.value.detail["kind"] == "timeout"
        assert _control(control_port, "/state")["boards"]["stir"]["applied"] == values
    finally:
        emulator.terminate()
        assert emulator.wait(10) == 0  # a clean stop on SIGTERM


def test_benchbus_up_starts_the_emulator_and_the_bridge(broker, bus, device, tmp_path):
    up = subprocess.Popen([sys.executable, "-m", "benchbus", "up", "--only", "samd", "--broker",
                           f"{broker.host}:{broker.port}", "--device", device, "--data-dir", str(tmp_path),
                           "--http-port", str(free_port()), "--timeout", "30"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        state = bus.wait_for(f"benchbus/{device}/samd/$state", lambda _t, d: d.get("state") == "ready", 30)[1]
        assert state["state"] == "ready"
        # the real 9600 baud and turnarounds: one short transaction
        result = bus.call("samd", "transact", _request("od_90"), timeout=10)
        assert result["kind"] == "data" and len(result["values"]) == 16
    finally:
        os.killpg(up.pid, signal.SIGINT)
        output = up.communicate(timeout=30)[0].decode(errors="replace")
    assert "samd" in output, output
