"""The robot's stack for protocol tests: the Smoothieboard emulator over TCP, and the real smoothie-bridge,
gpio-service (simulated chip) and calibration-store in-process on the real broker. Opentrons' protocol API on the
bus backend talks to them only through the bus; the emulator is read directly to see what the board received."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import pytest

from benchbus import BusClient

from benchbus_calibration.service import CalibrationService
from benchbus_calibration.settings import CalibrationSettings
from benchbus_gpio.service import GpioService
from benchbus_gpio.settings import GpioSettings
from benchbus_smoothie.emulator.board import SmoothieEmulator
from benchbus_smoothie.service import SmoothieService
from benchbus_smoothie.settings import SmoothieSettings

FAST = 400.0  # emulated motion runs this much faster than the robot (tests never measure time)
LEFT = ("p300_single_v2.1", "P3HSV2120200101")
RIGHT = ("p20_multi_v2.0", "P20MV2020200101")
MOTION = re.compile(r"^(G0|G1|G28\.2|G28(?![.\d])|G38)")  # G28.6 only reads the homed flags


def motion_codes(emulator, since: int = 0) -> list[str]:
    """The G-codes that move something (G0 with an axis word, homing, probing) received since a mark."""
    codes = [c for line in emulator.lines[since:] for c in _split(line)]
    return [c for c in codes if MOTION.match(c) and (not c.startswith("G0") or re.search(r"[XYZABC]-?\d", c))]


def _split(line: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?=\b[GM]\d)", line) if part.strip()]


@dataclass
class Stack:
    device: str
    broker: object
    emulator: SmoothieEmulator
    bus: object

    @property
    def broker_address(self) -> str:
        settings = self.broker.settings()
        return f"{settings.host}:{settings.port}"

    def door(self, is_open: bool) -> None:
        self.bus.call("gpio", "sim_set_input", {"input": "door", "active": is_open})
        self.bus.wait_for(self.bus.topic("smoothie", "state", "paused"),
                          lambda _t, d: isinstance(d, dict) and d.get("door") == ("open" if is_open else "closed"))

    def press_button(self) -> None:
        """Press (until gpio-service reports it, past its debounce), then release."""
        pressed = threading.Event()
        topic = self.bus.topic("gpio", "event", "button")
        handle = self.bus.subscribe(topic, lambda _t, d, _m: (d or {}).get("action") == "pressed" and pressed.set())
        try:
            self.bus.call("gpio", "sim_set_input", {"input": "button", "active": True})
            assert pressed.wait(10), "gpio-service never reported the button pressed"
        finally:
            self.bus.unsubscribe(topic, handle)
            self.bus.call("gpio", "sim_set_input", {"input": "button", "active": False})


@pytest.fixture
def emulator():
    emu = SmoothieEmulator(speedup=FAST, baud=None, pipettes={"left": LEFT, "right": RIGHT})
    emu.start_tcp()
    yield emu
    emu.stop()


@pytest.fixture
def start_stack(broker, device, bus, make_settings, serve, emulator, tmp_path):
    def start() -> Stack:
        serve(GpioService, make_settings(GpioSettings, backend="sim", debounce_ms=2.0, long_press_s=5.0))
        serve(CalibrationService, make_settings(CalibrationSettings, data_dir=tmp_path / "calibration"))
        serve(SmoothieService, make_settings(SmoothieSettings, port=emulator.url, ack_timeout_s=2.0, retries=1,
                                          boot_timeout_s=1.0, recovery_pause_s=0.0))
        for segment in ("gpio", "smoothie"):
            bus.wait_for(f"benchbus/{device}/{segment}/$state", lambda _t, d: (d or {}).get("state") == "ready")
        return Stack(device, broker, emulator, bus)
    return start


@pytest.fixture
def stack(start_stack) -> Stack:
    return start_stack()


@pytest.fixture
def client_named(broker, device):
    """Other bus clients (a dashboard, another script) with names of their own."""
    clients = []

    def make(name: str) -> BusClient:
        client = BusClient(device, broker.settings(), name=name)
        client.start()
        clients.append(client)
        return client
    yield make
    for client in clients:
        client.close()
