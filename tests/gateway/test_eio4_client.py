"""Engine.IO 4 clients (python-socketio 5's client) reach the same event table and the same broadcasts."""
from __future__ import annotations

import threading

import pytest

import socketio


@pytest.mark.slow
def test_python_socketio_5_client_gets_broadcasts_replies_and_acks(stack):
    gateway, emulator = stack
    client = socketio.Client(reconnection=False)
    seen: dict[str, list] = {}
    arrived = threading.Condition()

    def record(event):
        def handler(data):
            with arrived:
                seen.setdefault(event, []).append(data)
                arrived.notify_all()
        return handler

    for event in ("broadcast", "activecalibrations", "commandbroadcast", "benchbus_error", "config"):
        client.on(event, record(event), namespace="/dpu-evolver")
    client.connect(f"http://localhost:{gateway.port}", namespaces=["/dpu-evolver"], transports=["websocket"])
    try:
        client.emit("getconfig", {}, namespace="/dpu-evolver")
        reply = client.call("command", {"param": "stir", "value": ["9"] * 16, "immediate": True},
                            namespace="/dpu-evolver", timeout=10)
        assert reply == {"ok": True, "result": {"param": "stir", "value": ["9"] * 16, "immediate": True}}
        refused = client.call("setactivecal", {"calibration_names": ["no-such-fit"]}, namespace="/dpu-evolver",
                              timeout=10)
        assert refused["ok"] is False and refused["error"]["code"] == "not_found"
        with arrived:
            assert arrived.wait_for(lambda: all(seen.get(e) for e in ("broadcast", "config", "commandbroadcast",
                                                                        "benchbus_error")), 15), seen.keys()
        assert "stir" in seen["config"][0]["experimental_params"]
        assert len(seen["broadcast"][0]["data"]["od_90"]) == 16
        assert gateway.gateway.client_counts()["socketio_eio4"] == 1
        assert emulator.wait_applied("stir", ["9"] * 16, timeout=10)
    finally:
        client.disconnect()
