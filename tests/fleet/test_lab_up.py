"""`benchbus lab up`: the central side from one command (broker, recorder of every device, gateway in lab mode),
seen by what a device's fleet bridge publishes: the recorder stores any device's broadcast, the gateway's /ws
gives any device's states to the fleet page, which it serves.

The gateway picks its own port (`--http-port 0`, read back from the ready line): a port chosen here with free_port()
and bound by the gateway seconds later (after lab up, the recorder and the gateway have started and connected) could
be taken meanwhile by any other process binding port 0, and uvicorn then ends the gateway's web thread (EADDRINUSE):
the failure seen once under the full suite's load. The broker's port is still chosen here (Mosquitto cannot pick
its own), but lab up starts it first, within the moment of its own start."""
from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from websockets.sync.client import connect as ws_connect

from benchbus.testing.broker import free_port

BENCHBUS = str(Path(sys.executable).with_name("benchbus"))


def wait_until(condition, timeout: float, what: str, output: list[str] | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    shown = "\n".join((output or [])[-40:])
    raise AssertionError(f"not within {timeout:g} s: {what}" + (f"; lab up said:\n{shown}" if shown else ""))


LAB_FILE = """\
users:
  bob: {role: viewer, password: bob-password}
devices:
  rig-a: {password: rig-a-password}
"""


def test_lab_up_records_and_shows_every_device(tmp_path):
    """On the ACL and password file generated from the lab file: the device logs in as itself, the recorder and the
    gateway with the passwords lab up made for them; someone without a password is refused."""
    port = free_port()
    (tmp_path / "lab.yaml").write_text(LAB_FILE)
    lab = subprocess.Popen([BENCHBUS, "lab", "up", "--port", str(port), "--http-port", "0", "--bind",
                            "127.0.0.1", "--data-dir", str(tmp_path / "lab"), "--lab", str(tmp_path / "lab.yaml")],
                           stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(lab.stdout.readline, "")), daemon=True).start()
    try:
        ready = wait_until(lambda: [line for line in lines if line.startswith("lab ready")] or lab.poll() is not None,
                           90, "lab ready", lines)
        assert ready is not True, f"lab up exited with {lab.returncode}:\n" + "".join(lines[-40:])
        http_port = int(re.search(r"http://127\.0\.0\.1:(\d+)/fleet\.html", ready[0]).group(1))
        stranger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stranger", protocol=mqtt.MQTTv5)
        refused: list[str] = []
        stranger.on_connect = lambda _c, _u, _f, reason, _p: refused.append(str(reason))
        stranger.connect("127.0.0.1", port)
        stranger.loop_start()
        wait_until(lambda: refused, 10, "the broker's answer to a client without a password")
        stranger.loop_stop()
        assert refused == ["Not authorized"]
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bridge-of-rig-a", protocol=mqtt.MQTTv5)
        device.username_pw_set("rig-a", "rig-a-password")
        device.connect("127.0.0.1", port)
        device.loop_start()
        device.publish("benchbus/rig-a/scheduler/$state", json.dumps({"state": "ready", "since": "x"}), 1,
                       retain=True).wait_for_publish()
        device.publish("benchbus/rig-a/fleet/state/link", "1", 1, retain=True).wait_for_publish()
        broadcast = {"data": {}, "config": {}, "ip": "rig-a", "timestamp": time.time(), "status": {}, "cycle": 7,
                     "cycle_s": 1.0, "broadcast_timing": 20.0}
        device.publish("benchbus/rig-a/scheduler/event/broadcast", json.dumps(broadcast), 1).wait_for_publish()

        with ws_connect(f"ws://127.0.0.1:{http_port}/ws") as ws:
            ws.send(json.dumps({"op": "subscribe", "filter": "benchbus/+/+/$state"}))
            ws.send(json.dumps({"op": "subscribe", "filter": "benchbus/+/fleet/state/link"}))
            seen = set()
            deadline = time.monotonic() + 10
            while {"benchbus/rig-a/scheduler/$state", "benchbus/rig-a/fleet/state/link"} - seen:
                assert time.monotonic() < deadline, f"/ws gave only {seen}"
                message = json.loads(ws.recv(timeout=10))
                if message.get("op") == "message":
                    seen.add(message["topic"])
            ws.send(json.dumps({"op": "subscribe", "filter": "benchbus/+/_client/#"}))  # replies stay private
            while (message := json.loads(ws.recv(timeout=10))).get("op") != "error":
                assert message.get("op") != "subscribed", message
            assert message["error"]["code"] == "unauthorized"
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/fleet.html", timeout=5) as page:
            assert b"fleet.js" in page.read()

        database = tmp_path / "lab/recorder/recorder.sqlite3"

        def recorded() -> list:
            if not database.exists():
                return []
            with sqlite3.connect(database) as db:
                return db.execute("SELECT cycle FROM broadcasts WHERE device = 'rig-a'").fetchall()
        assert wait_until(recorded, 15, "rig-a's broadcast in the lab recorder") == [(7,)]
        device.loop_stop()
        device.disconnect()
    finally:
        lab.send_signal(signal.SIGINT)
        assert lab.wait(20) == 0, "\n".join(lines[-30:])


def test_lab_up_without_a_lab_file_starts_nothing(tmp_path):
    """No anonymous central broker: without its lab file lab up refuses to start, naming the file."""
    missing = tmp_path / "lab.yaml"
    result = subprocess.run([BENCHBUS, "lab", "up", "--port", str(free_port()), "--data-dir", str(tmp_path / "lab"),
                             "--lab", str(missing)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert not (tmp_path / "lab/mosquitto.conf").exists()
