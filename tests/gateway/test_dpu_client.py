"""The eVOLVER DPU's own client library (socketIO-client 0.7.2, Engine.IO 3, polling then WebSocket) doing what the
DPU's eVOLVER.py does, against the whole eVOLVER stack on the emulated SAMD21 boards."""
from __future__ import annotations

import logging

import pytest

from benchbus.testing import wait_until as shared_wait_until

import socketIO_client

NAMESPACE = "/dpu-evolver"
logging.getLogger("socketIO-client").setLevel(logging.ERROR)


class Dpu(socketIO_client.BaseNamespace):
    """The DPU's EvolverNamespace, recording what arrives."""

    def on_connect(self, *_args):
        self.__dict__.setdefault("seen", []).append(("connect", None))

    def on_broadcast(self, data):
        self.__dict__.setdefault("seen", []).append(("broadcast", data))

    def on_activecalibrations(self, data):
        self.__dict__.setdefault("seen", []).append(("activecalibrations", data))

    def on_commandbroadcast(self, data):
        self.__dict__.setdefault("seen", []).append(("commandbroadcast", data))

    def got(self, event: str) -> list:
        return [data for name, data in self.__dict__.get("seen", []) if name == event]


def wait_until(socket, predicate, timeout: float = 15.0):
    """benchbus.testing.wait_until, letting the DPU's client handle its events between two looks."""
    return shared_wait_until(lambda: socket.wait(seconds=0.2) or predicate(), timeout, "what the DPU waited for",
                             every=0)


def connect(port: int):
    socket = socketIO_client.SocketIO("localhost", port, wait_for_connection=False)
    namespace = socket.define(Dpu, NAMESPACE)
    return socket, namespace


@pytest.mark.slow
def test_the_dpu_runs_an_experiment_step_and_reconnects(stack):
    gateway, emulator = stack
    socket, dpu = connect(gateway.port)
    assert socket.transport_name == "websocket"  # upgraded from polling, as against the original server

    dpu.emit("getactivecal", {})
    active = wait_until(socket, lambda: dpu.got("activecalibrations"))[0]
    assert {c["calibrationType"] for c in active} >= {"od", "temperature"}
    assert all(any(f["active"] for f in c["fits"]) for c in active)

    broadcast = wait_until(socket, lambda: dpu.got("broadcast"))[-1]
    assert len(broadcast["data"]["od_135"]) == 16 and len(broadcast["data"]["temp"]) == 16
    assert broadcast["config"]["stir"]["value"] and "timestamp" in broadcast and "ip" in broadcast

    # update_stir_rate, update_temperature, fluid_command: exactly the DPU's payloads
    stir = {"param": "stir", "value": ["11"] * 16, "immediate": False, "recurring": True}
    temp = {"param": "temp", "value": ["2100"] * 16, "immediate": False, "recurring": True}
    pump = ["--"] * 48
    pump[0], pump[16] = "3", "8"
    fluid = {"param": "pump", "value": pump, "recurring": False, "immediate": True}
    for command in (stir, temp, fluid):
        dpu.emit("command", command)
    wait_until(socket, lambda: len(dpu.got("commandbroadcast")) >= 3)
    assert stir in dpu.got("commandbroadcast") and fluid in dpu.got("commandbroadcast")

    assert emulator.wait_applied("stir", ["11"] * 16, timeout=10)
    assert emulator.wait_applied("temp", ["2100"] * 16, timeout=10)
    assert emulator.wait_applied("pump", pump, timeout=10)
    programs = emulator.pump_programs()
    assert programs[0] is not None and programs[16] is not None and programs[1] is None

    # the next broadcasts carry the new stored values
    wait_until(socket, lambda: any(b["config"]["stir"]["value"] == ["11"] * 16 for b in dpu.got("broadcast")))

    # the DPU's hourly reconnect: a new session, the namespace joined again, broadcasts keep coming
    socket.disconnect()
    socket, dpu = connect(gateway.port)
    assert wait_until(socket, lambda: dpu.got("broadcast"))
    socket.disconnect()
