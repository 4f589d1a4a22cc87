"""Each attack of the trust audit, on the Pi's broker configuration with the real services logged in as
themselves: each test failed on the main of before (a claimed name, a chosen response topic, a retained command)."""
from __future__ import annotations

import json
import threading

import pytest

from benchbus import BusError
from benchbus_gpio.service import GpioService
from benchbus_gpio.settings import GpioSettings
from benchbus_smoothie.emulator.board import SmoothieEmulator
from benchbus_smoothie.service import SmoothieService
from benchbus_smoothie.settings import SmoothieSettings

from .conftest import NOT_AUTHORIZED


@pytest.fixture
def robot(pi_broker, serve, make_settings):
    """gpio-service (simulated chip) and the smoothie-bridge on its emulator, each as its own broker user."""
    emulator = SmoothieEmulator(speedup=400.0, baud=None)
    emulator.start_tcp()
    serve(GpioService, make_settings(GpioSettings, backend="sim", broker=pi_broker.settings("benchbus-gpio")))
    serve(SmoothieService, make_settings(SmoothieSettings, port=emulator.url, use_gpio=True, ack_timeout_s=0.5,
                                        retries=1, boot_timeout_s=0.5, recovery_pause_s=0.0,
                                        broker=pi_broker.settings("benchbus-smoothie")))
    yield emulator
    emulator.stop()


def motion_lines(emulator, since: int = 0) -> list[str]:
    return [line for line in emulator.lines[since:] if line.startswith(("G0", "G28", "G38"))]


def door_seen_by_bridge(client, door: str) -> None:
    client.wait_for(client.topic("smoothie", "state", "paused"), lambda _t, d: d["door"] == door, timeout=15)


def test_a_reply_aimed_at_gpio_state_door_is_never_published_and_the_robot_stays_put(robot, client_as, login,
                                                                                    device):
    admin, operator = client_as("benchbus-admin"), client_as("benchbus-client")
    door_seen_by_bridge(operator, "closed")
    operator.call("smoothie", "home", {}, timeout=60)
    admin.call("gpio", "sim_set_input", {"input": "door", "active": True})
    door_seen_by_bridge(operator, "open")
    doors: list[dict] = []
    operator.subscribe(operator.topic("gpio", "state", "door"), lambda _t, d, _m: doors.append(d))
    audits: list[dict] = []
    audited = threading.Event()
    def on_audit(_t, batch, _m):
        audits.extend(batch["records"])
        if any(not record["ok"] for record in batch["records"]):
            audited.set()
    operator.subscribe(f"benchbus/{device}/gpio/$audit", on_audit)
    attacker = login("benchbus-client")
    code = attacker.publish_acked(f"benchbus/{device}/gpio/cmd/get_lights/benchbus-client",
                                  response_topic=f"benchbus/{device}/gpio/state/door")
    assert code == 0  # the command itself is the operator's to call ...
    assert audited.wait(10)  # ... but gpio refused to answer onto a topic the caller chose
    refused = [record for record in audits if not record["ok"]]
    assert refused[-1]["error"]["code"] == "unauthorized" and "outside" in refused[-1]["error"]["message"]
    assert attacker.publish_acked(f"benchbus/{device}/gpio/state/door", b"{}") == NOT_AUTHORIZED
    assert all(d.get("door") == "open" for d in doors), doors
    start = len(robot.lines)
    for command, payload in (("resume", {}), ("move", {"target": {"X": 150}})):
        with pytest.raises(BusError) as err:
            operator.call("smoothie", command, payload, timeout=10)
        assert err.value.code == "conflict", command
    assert motion_lines(robot, start) == []


def test_raw_gcode_by_a_claimed_name_is_refused_by_the_broker(robot, client_as, login, device):
    operator, admin = client_as("benchbus-client"), client_as("benchbus-admin")
    start = len(robot.lines)
    with pytest.raises(BusError) as err:
        operator.call("smoothie", "gcode", {"lines": ["G0 X500"]}, timeout=10)
    assert err.value.code == "unauthorized" and "broker refused" in err.value.message
    attacker = login("benchbus-client")
    for claimed in ("benchbus-admin", "admin", "dev"):
        topic = f"benchbus/{device}/smoothie/cmd/gcode/{claimed}"
        assert attacker.publish_acked(topic, json.dumps({"lines": ["G0 X500"]}).encode()) == NOT_AUTHORIZED
    assert "G0 X500" not in robot.lines[start:]
    assert admin.call("smoothie", "gcode", {"lines": ["M119"]}, timeout=10)["replies"][0].startswith("X_max")


def test_the_lease_belongs_to_the_proven_session_and_cannot_be_claimed(robot, client_as, login, device):
    alice = client_as("benchbus-client", name="alice")
    gateway = client_as("benchbus-gateway")
    door_seen_by_bridge(alice, "closed")
    alice.call("smoothie", "home", {}, timeout=60)
    lease = alice.call("smoothie", "acquire_motion", {"ttl_s": 60})
    for thief in (gateway, client_as("benchbus-client", name="bob")):
        with pytest.raises(BusError) as err:
            thief.call("smoothie", "move", {"target": {"X": 100}}, timeout=10)
        assert err.value.code == "conflict"
        with pytest.raises(BusError):
            thief.call("smoothie", "release_motion", {"lease_id": lease["lease_id"]}, timeout=10)
    # publishing as alice's principal from another user never reaches the bridge
    attacker = login("benchbus-gateway")
    topic = f"benchbus/{device}/smoothie/cmd/release_motion/benchbus-client"
    assert attacker.publish_acked(topic, json.dumps({"lease_id": lease["lease_id"]}).encode()) == NOT_AUTHORIZED
    holder = alice.wait_for(alice.topic("smoothie", "state", "lease"), timeout=5)[1]["holder"]
    assert holder == "benchbus-client/alice"
    assert alice.call("smoothie", "move", {"target": {"X": 100}}, timeout=30)["X"] == 100


def test_a_viewer_reads_but_moves_nothing(robot, client_as):
    viewer = client_as("benchbus-viewer")
    assert "X" in viewer.call("smoothie", "position", {}, timeout=10)
    for command, payload in (("home", {}), ("move", {"target": {"X": 1}}), ("resume", {})):
        with pytest.raises(BusError) as err:
            viewer.call("smoothie", command, payload, timeout=10)
        assert err.value.code == "unauthorized", command
