"""Issue 15 on Socket.IO: an unauthenticated client outside the trusted networks reads but cannot write, and is told
so (`benchbus_error`); the same client with `?token=` in its connection URL writes. Real clients: the DPU's
socketIO-client 0.7.2 (Engine.IO 3), python-socketio 5 (Engine.IO 4), the GUI's socket.io-client 2.x on Node.
(An unmodified DPU from a trusted address: test_dpu_client.py, on the default settings, which trust loopback.)"""
from __future__ import annotations

import threading

import pytest

from .conftest import TOKEN, UNTRUSTED
from .test_dpu_client import NAMESPACE, Dpu, wait_until
from .test_gui_client import received, run_gui

import socketIO_client
import socketio

PUMP = ["5"] + ["--"] * 47
PUMP_COMMAND = {"param": "pump", "value": PUMP, "recurring": False, "immediate": True}


class RecordingDpu(Dpu):
    def on_benchbus_error(self, data):
        self.__dict__.setdefault("seen", []).append(("benchbus_error", data))

    def on_broadcastname(self, data):
        self.__dict__.setdefault("seen", []).append(("broadcastname", data))


def dpu_connect(port: int, **kw):
    socket = socketIO_client.SocketIO("localhost", port, wait_for_connection=False, **kw)
    return socket, socket.define(RecordingDpu, NAMESPACE)


@pytest.mark.slow
@pytest.mark.parametrize("stack", [UNTRUSTED], indirect=True)
def test_dpu_without_the_token_reads_but_its_writes_are_refused_then_the_token_works(stack):
    gateway, emulator = stack
    socket, dpu = dpu_connect(gateway.port)
    try:
        dpu.emit("command", PUMP_COMMAND)
        dpu.emit("setdevicename", {"deviceName": "renamed-by-anyone"})
        dpu.emit("setactivecal", {"calibration_names": ["example_od_od90"]})
        errors = wait_until(socket, lambda: len(dpu.got("benchbus_error")) >= 3 and dpu.got("benchbus_error"))
        assert {e["event"] for e in errors} == {"command", "setdevicename", "setactivecal"}
        assert all(e["code"] == "unauthorized" and "?token=" in e["message"] for e in errors)
        dpu.emit("getactivecal", {})  # reads stay open
        assert wait_until(socket, lambda: dpu.got("activecalibrations"))
        assert wait_until(socket, lambda: dpu.got("broadcast"))
        assert dpu.got("commandbroadcast") == [] and dpu.got("broadcastname") == []
        assert all(program is None for program in emulator.pump_programs())  # no pump ran
    finally:
        socket.disconnect()

    # the one-line change of the README: the token in the connection URL
    socket, dpu = dpu_connect(gateway.port, params={"token": TOKEN})
    try:
        assert socket.transport_name == "websocket"  # the token rides along on the upgrade, too
        dpu.emit("command", PUMP_COMMAND)
        assert wait_until(socket, lambda: dpu.got("commandbroadcast"))[0] == PUMP_COMMAND
        assert emulator.wait_applied("pump", PUMP, timeout=10)
        assert dpu.got("benchbus_error") == []
    finally:
        socket.disconnect()


@pytest.mark.slow
@pytest.mark.parametrize("stack", [UNTRUSTED], indirect=True)
def test_engineio4_client_without_the_token_is_refused_with_an_error_and_an_ack(stack):
    gateway, emulator = stack
    errors: list = []
    arrived = threading.Event()

    def on_error(data):
        errors.append(data)
        arrived.set()

    client = socketio.Client(reconnection=False)
    client.on("benchbus_error", on_error, namespace=NAMESPACE)
    client.connect(f"http://localhost:{gateway.port}", namespaces=[NAMESPACE], transports=["websocket"])
    try:
        refused = client.call("command", {"param": "stir", "value": ["9"] * 16, "immediate": True},
                              namespace=NAMESPACE, timeout=10)
        assert refused["ok"] is False and refused["error"]["code"] == "unauthorized"
        assert arrived.wait(10) and errors[0]["event"] == "command"
        config = client.call("getconfig", {}, namespace=NAMESPACE, timeout=10)
        assert config["ok"] is True  # reads stay open
    finally:
        client.disconnect()

    with_token = socketio.Client(reconnection=False)
    with_token.connect(f"http://localhost:{gateway.port}?token={TOKEN}", namespaces=[NAMESPACE],
                       transports=["websocket"])
    try:
        accepted = with_token.call("command", {"param": "stir", "value": ["9"] * 16, "immediate": True},
                                   namespace=NAMESPACE, timeout=10)
        assert accepted["ok"] is True
        assert emulator.wait_applied("stir", ["9"] * 16, timeout=10)
    finally:
        with_token.disconnect()


@pytest.mark.slow
@pytest.mark.parametrize("stack", [UNTRUSTED], indirect=True)
def test_gui_client_token_in_the_namespace_url(stack):
    gateway, emulator = stack
    url = f"http://localhost:{gateway.port}/dpu-evolver"
    rename = {"emit": [["setdevicename", {"deviceName": "gui-name"}]], "wait_for": {"benchbus_error": 1}}
    refused = received(run_gui(url, rename), "benchbus_error")
    assert refused[0]["event"] == "setdevicename" and refused[0]["code"] == "unauthorized"
    allowed = run_gui(f"{url}?token={TOKEN}", {**rename, "wait_for": {"broadcastname": 1}})
    assert received(allowed, "broadcastname")[0]["deviceName"] == "gui-name"
