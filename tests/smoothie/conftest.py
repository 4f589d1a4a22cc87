"""Fixtures: the Smoothieboard emulator on a TCP port, and the smoothie-bridge in-process over the real broker."""
from __future__ import annotations

import uuid

import pytest

from benchbus import BusClient
from benchbus_smoothie.emulator.board import SmoothieEmulator
from benchbus_smoothie.service import SmoothieService
from benchbus_smoothie.settings import SmoothieSettings

FAST = 400.0  # motion runs this many times faster than on the robot (tests never measure time)


@pytest.fixture
def emulator():
    emu = SmoothieEmulator(speedup=FAST, baud=None)
    emu.start_tcp()
    yield emu
    emu.stop()


@pytest.fixture
def bridge_settings(make_settings, emulator):
    def make(**fields):
        fields.setdefault("port", emulator.url)
        fields.setdefault("use_gpio", False)
        fields.setdefault("door_safety", fields["use_gpio"])  # no gpio-service: no door state (unknown = open)
        # Short enough that silence tests finish quickly, long enough that a loaded machine (the emulator runs in
        # this process) is never taken for a silent board: 0.5 s was, and the bridge then refused to start.
        fields.setdefault("ack_timeout_s", 2.0)
        fields.setdefault("retries", 1)
        fields.setdefault("boot_timeout_s", 2.0)
        fields.setdefault("recovery_pause_s", 0.0)
        return make_settings(SmoothieSettings, **fields)
    return make


@pytest.fixture
def start_bridge(serve, bridge_settings):
    def start(**fields):
        return serve(SmoothieService, bridge_settings(**fields))
    return start


@pytest.fixture
def bridge(start_bridge):
    return start_bridge()


@pytest.fixture
def client_named(broker, device):
    clients = []

    def make(name: str | None = None) -> BusClient:
        client = BusClient(device, broker.settings(), name=name or f"c-{uuid.uuid4().hex[:8]}")
        client.start()
        clients.append(client)
        return client
    yield make
    for client in clients:
        client.close()


@pytest.fixture
def homed(bus, bridge):
    """A bridge whose robot is homed."""
    bus.call("smoothie", "home", {}, timeout=30)
    return bridge
