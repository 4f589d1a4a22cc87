"""The OT-2 robot server's hardware routes, served through the bus by the real gpio-service (simulated chip)."""
from __future__ import annotations

import httpx
import pytest

from benchbus.testing import wait_until

V = {"Opentrons-Version": "*"}


@pytest.fixture
def robot(gateway, serve, make_settings):
    gpio = pytest.importorskip("benchbus_gpio.service", reason="the gpio-service package is not installed")
    from benchbus_gpio.settings import GpioSettings
    serve(gpio.GpioService, make_settings(GpioSettings, backend="sim", claim_retry_s=0.2, status_blink_period_s=0.1))
    return gateway()


def test_version_header_convention(robot):
    base = robot.url
    missing = httpx.get(base + "robot/lights")
    assert missing.status_code == 422 and "Opentrons-Version" in missing.json()["message"]
    assert httpx.get(base + "robot/lights", headers={"Opentrons-Version": "1"}).status_code == 400
    ok = httpx.get(base + "robot/lights", headers={"Opentrons-Version": "3"})
    assert ok.status_code == 200
    assert ok.headers["Opentrons-Version"] == "3" and ok.headers["Opentrons-Min-Version"] == "2"


def test_lights_identify_and_door(robot, bus):
    base = robot.url
    assert httpx.post(base + "robot/lights", json={"on": True}, headers=V).json() == {"on": True}
    assert httpx.get(base + "robot/lights", headers=V).json() == {"on": True}
    assert bus.call("gpio", "get_lights")["on"] is True  # it really reached the gpio-service
    assert httpx.post(base + "robot/lights", json={"on": "yes"}, headers=V).status_code == 422
    assert httpx.post(base + "identify?seconds=1", headers=V).json() == {"message": "identifying"}
    assert httpx.post(base + "identify", headers=V).status_code == 422
    def door_status() -> httpx.Response | None:
        response = httpx.get(base + "robot/door/status", headers=V)
        return response if response.status_code == 200 else None
    status = wait_until(door_status, 5, "the door status")
    assert status.json() == {"data": {"status": "closed", "doorRequiredClosedForProtocol": False}}
    bus.call("gpio", "sim_set_input", {"input": "door", "active": True})
    wait_until(lambda: httpx.get(base + "robot/door/status", headers=V).json()["data"]["status"] == "open", 5,
               "the door showing open")


def test_motion_routes_without_a_smoothie_say_unavailable(robot):
    base = robot.url
    home = httpx.post(base + "robot/home", json={"target": "robot"}, headers=V)
    assert home.status_code in (503, 504) and "errorCode" in home.json()
    assert httpx.post(base + "robot/home", json={"target": "arm"}, headers=V).status_code == 400
    assert httpx.post(base + "motors/disengage", json={"axes": ["q"]}, headers=V).status_code == 422
    assert httpx.get(base + "health", headers=V).status_code == 503  # the OT-2 health waits for the hardware
