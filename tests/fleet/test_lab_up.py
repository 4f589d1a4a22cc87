"""`benchbus lab up`: the central side from one command (broker, recorder of every device, gateway in lab mode),
seen by what a device's fleet bridge publishes: the recorder stores any device's broadcast, the gateway's /ws
gives any device's states to the fleet page, which it serves."""
from __future__ import annotations

import json
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


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def test_lab_up_records_and_shows_every_device(tmp_path):
    port, http_port = free_port(), free_port()
    lab = subprocess.Popen([BENCHBUS, "lab", "up", "--port", str(port), "--http-port", str(http_port), "--bind",
                            "127.0.0.1", "--data-dir", str(tmp_path / "lab")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(lab.stdout.readline, "")), daemon=True).start()
    try:
        wait_until(lambda: any(line.startswith("lab ready") for line in lines), 90, "lab ready")
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bridge-of-rig-a", protocol=mqtt.MQTTv5)
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
