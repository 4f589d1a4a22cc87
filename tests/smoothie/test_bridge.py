"""The smoothie-bridge over the real broker, driving the emulator: what a bus client sees."""
from __future__ import annotations

import json
import threading

import pytest

from benchbus import BusError
from benchbus.testing import wait_until

# opentrons-ot2.md 1.13 (b): home all on a "2.1" board, M400s removed
HOME_ALL = [
    "M907 A0.8 B0.05 C0.05 X0.3 Y0.3 Z0.8 G4 P0.005 G28.2 ABCZ",
    "M907 A0.1 B0.05 C0.05 X0.3 Y0.3 Z0.1 G4 P0.005",
    "M203.1 Y50",
    "M907 A0.1 B0.05 C0.05 X0.3 Y0.8 Z0.1 G4 P0.005 G91 G0 Y-28 G0 Y10 G90",
    "M203.1 X80",
    "M907 A0.1 B0.05 C0.05 X1.25 Y0.3 Z0.1 G4 P0.005 G28.2 X",
    "M203.1 A125 B40 C40 X600 Y400 Z125",
    "M907 A0.1 B0.05 C0.05 X0.3 Y0.3 Z0.1 G4 P0.005",
    "M203.1 Y80",
    "M907 A0.1 B0.05 C0.05 X0.3 Y1.25 Z0.1 G4 P0.005 G28.2 Y",
    "M203.1 Y8",
    "G91 G0 Y-3 G90",
    "G28.2 Y",
    "G91 G0 Y-3 G90",
    "M203.1 A125 B40 C40 X600 Y400 Z125",
    "M907 A0.1 B0.05 C0.05 X0.3 Y0.3 Z0.1 G4 P0.005",
    "M114.2",
]


def sent(emulator, since: int = 0) -> list[str]:
    return [line for line in emulator.lines[since:] if line != "M400"]


def retained(bus, name: str, service: str = "smoothie"):
    return bus.wait_for(bus.topic(service, "state", name), timeout=5)[1]


def wait_state(bus, name: str, predicate, timeout: float = 5.0):
    return bus.wait_for(bus.topic("smoothie", "state", name), lambda _t, d: predicate(d), timeout)[1]


def publish_door(bus, door: str) -> None:
    payload = json.dumps({"door": door, "window": None, "since": "2024-01-01T00:00:00.000Z"}).encode()
    bus.connection.publish(bus.topic("gpio", "state", "door"), payload, kind="state", retain=True)


def test_boot_handshake_sends_the_reference_sequence_and_publishes_the_firmware(bus, bridge, emulator):
    boot = [line for line in sent(emulator) if line]
    assert boot[:10] == [
        "M999", "G28.6", "M92 A400 X80 Y80 Z400", "M92 B768 C768", "G90", "M114.2",
        "M203.1 A125 B40 C40 X600 Y400 Z125", "G0 F24000", "M204 S10000 A1500 B200 C200 X3000 Y2000 Z1500", "version",
    ]
    assert retained(bus, "firmware")["version"] == "edge-66ec883"
    assert retained(bus, "pipettes") == {"left": {"id": "P3HSV2120200101", "model": "p300_single_v2.1"},
                                         "right": {"id": "P20MV2020200101", "model": "p20_multi_v2.0"}}
    assert retained(bus, "homed") == {axis: False for axis in "XYZABC"}


def test_home_all_sends_the_exact_ot2_sequence_and_publishes_the_position(bus, bridge, emulator):
    start = len(emulator.lines)
    position = bus.call("smoothie", "home", {}, timeout=30)
    assert sent(emulator, start)[:len(HOME_ALL)] == HOME_ALL
    assert position == {"X": 418.0, "Y": 350.0, "Z": 218.0, "A": 218.0, "B": 18.0, "C": 18.0}
    assert position == emulator.position
    assert wait_state(bus, "position", lambda d: d == position) == position
    assert bus.call("smoothie", "homed") == {axis: True for axis in "XYZABC"}


def test_moves_relative_moves_speeds_currents_and_backlash(bus, homed, emulator):
    assert bus.call("smoothie", "move", {"target": {"X": 100, "Y": 150, "Z": 100}})["X"] == 100
    assert sent(emulator)[-2] == "M907 A0.1 B0.05 C0.05 X1.25 Y1.25 Z0.8 G4 P0.005 G0 X100 Y150 Z100"
    assert bus.call("smoothie", "move_relative", {"delta": {"X": -50.5, "Z": 10}})["X"] == 49.5
    assert emulator.position["X"] == 49.5 and emulator.position["Z"] == 110
    bus.call("smoothie", "move", {"target": {"Y": 100}, "speed": 50})
    assert "G0 F3000 G0 Y100 G0 F24000" in sent(emulator)[-2]
    bus.call("smoothie", "set_current", {"active": {"Y": 1.0}})
    bus.call("smoothie", "move", {"target": {"Y": 120}})
    assert sent(emulator)[-2].startswith("M907 A0.1 B0.05 C0.05 X0.3 Y1 Z0.1 G4 P0.005 G0 Y120")
    bus.call("smoothie", "move", {"target": {"C": 5}})
    bus.call("smoothie", "move", {"target": {"C": 10}})  # a plunger going up overshoots, then comes back
    assert any(line.endswith("G0 C10.3 G0 C10") for line in sent(emulator)[-3:])
    assert bus.call("smoothie", "position") == emulator.position
    speeds = bus.call("smoothie", "set_max_speed", {"speeds": {"X": 300}})
    assert speeds["speeds"]["X"] == 300 and emulator.max_speeds["X"] == 300


def test_targets_outside_travel_are_refused_before_anything_is_sent(bus, homed, emulator):
    before = list(emulator.lines)
    for payload in ({"target": {"X": 419}}, {"target": {"Z": -0.5}}, {"target": {"C": 19.9}}):
        with pytest.raises(BusError) as err:
            bus.call("smoothie", "move", payload)
        assert err.value.code == "invalid_request" and "outside" in err.value.message
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move_relative", {"delta": {"Y": 100}})  # 350 + 100 > 370
    assert err.value.code == "invalid_request"
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"Q": 1}})
    assert err.value.code == "invalid_request" and "target.Q" in err.value.message
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 10}, "sped": 3})
    assert err.value.code == "invalid_request" and "sped" in err.value.message
    assert emulator.lines == before


def test_unhomed_axes_are_not_moved(bus, bridge, emulator):
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 10}})
    assert err.value.code == "conflict" and err.value.detail == {"not_homed": ["X"]}


def test_limit_alarm_recovery_then_refused_until_homed(bus, homed, emulator):
    alarms = []
    bus.subscribe(bus.topic("smoothie", "event", "alarm"), lambda _t, d, _m: alarms.append(d))
    start = len(emulator.lines)
    emulator.inject("limit_alarm")
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 100, "Y": 100}}, timeout=30)
    assert err.value.code == "hardware_error" and "Hard limit -X" in err.value.message
    after = sent(emulator, start)
    assert after[:4] == ["M907 A0.1 B0.05 C0.05 X1.25 Y1.25 Z0.1 G4 P0.005 G0 X100 Y100", "M999", "G28.6",
                         "G28.2 AZ"] or after[3].endswith("G28.2 AZ")  # then the mounts up, then X home
    assert any(line.endswith("G28.2 X") for line in after)
    assert wait_state(bus, "alarm", lambda d: d["active"])["message"] == "ALARM: Hard limit -X"
    wait_until(lambda: alarms, 5, "the alarm event")
    assert alarms[0]["axis"] == "X" and alarms[0]["recovered_by_homing"] == ["Z", "A", "X"]
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 200}})
    assert err.value.code == "conflict" and "alarm" in err.value.message
    bus.call("smoothie", "home", {}, timeout=30)
    assert not retained(bus, "alarm")["active"]
    assert bus.call("smoothie", "move", {"target": {"X": 200}})["X"] == 200


def test_alarm_lock_from_a_halt_we_did_not_cause(bus, homed, emulator):
    emulator.kill()  # someone pressed the kill input
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 300}})
    assert err.value.code == "hardware_error" and "halted" in err.value.message
    assert emulator.position["X"] == 418  # nothing moved
    assert not emulator.halted.is_set()  # the bridge cleared it (M999)
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 300}})
    assert err.value.code == "conflict"
    bus.call("smoothie", "home", {}, timeout=30)
    assert bus.call("smoothie", "move", {"target": {"X": 300}})["X"] == 300


def test_lease_conflicts_between_two_clients(bus, homed, client_named):
    alice, bob = client_named("alice"), client_named("bob")
    lease = alice.call("smoothie", "acquire_motion", {"ttl_s": 30})
    assert lease["holder"] == "dev/alice"  # the principal (the development broker's `dev`), then the session
    with pytest.raises(BusError) as err:
        bob.call("smoothie", "move", {"target": {"X": 10}})
    assert err.value.code == "conflict" and err.value.detail["holder"] == "dev/alice" and "alice" in err.value.message
    with pytest.raises(BusError) as err:
        bob.call("smoothie", "acquire_motion", {})
    assert err.value.detail["holder"] == "dev/alice"
    assert bob.call("smoothie", "position")["X"] == 418  # reads never need the lease
    assert bob.call("smoothie", "switches")["probe"] is False
    assert alice.call("smoothie", "move", {"target": {"X": 10}})["X"] == 10
    assert alice.call("smoothie", "acquire_motion", {"ttl_s": 1})["lease_id"] == lease["lease_id"]  # renewal
    assert wait_state(bus, "lease", lambda d: d["holder"] == "dev/alice")["lease_id"] == lease["lease_id"]
    alice.call("smoothie", "release_motion", {})
    assert bob.call("smoothie", "move", {"target": {"X": 20}})["X"] == 20
    bob.call("smoothie", "acquire_motion", {"ttl_s": 1})
    wait_state(bus, "lease", lambda d: d["holder"] is None, timeout=5)  # lapsed without renewal
    assert alice.call("smoothie", "move", {"target": {"X": 30}})["X"] == 30


def test_door_open_lets_the_move_finish_then_blocks_until_closed_and_resumed(bus, start_bridge, emulator,
                                                                            client_named):
    publish_door(bus, "closed")  # gpio-service itself is absent (reset skipped); this is its retained door state
    start_bridge(use_gpio=True)
    wait_state(bus, "paused", lambda d: d["door"] == "closed")
    bus.call("smoothie", "home", {}, timeout=30)
    events = []
    bus.subscribe(bus.topic("smoothie", "event", "+"), lambda t, d, _m: events.append((t.rsplit("/", 1)[1], d)))
    mover = client_named("mover")
    outcome = {}

    def long_move():
        outcome["reply"] = mover.call("smoothie", "move", {"target": {"X": 10}, "speed": 1}, timeout=30)
    thread = threading.Thread(target=long_move)
    thread.start()
    wait_until(lambda: emulator.position["X"] != 418, 5, "the long move under way", every=0.005)
    publish_door(bus, "open")
    wait_state(bus, "paused", lambda d: d["paused"] and d["door"] == "open")
    thread.join(30)
    assert outcome["reply"]["X"] == 10 == emulator.position["X"]  # the running move finished
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 20}})
    assert err.value.code == "conflict" and "door open" in err.value.message
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "resume")
    assert err.value.code == "conflict"
    publish_door(bus, "closed")
    wait_state(bus, "paused", lambda d: d["door"] == "closed")
    with pytest.raises(BusError):
        bus.call("smoothie", "move", {"target": {"X": 20}})  # closed, but nobody resumed yet
    assert bus.call("smoothie", "resume") == {"paused": False, "reason": None, "door": "closed"}
    assert bus.call("smoothie", "move", {"target": {"X": 20}})["X"] == 20
    assert [name for name, _ in events if name in ("paused", "resumed")] == ["paused", "resumed"]


def test_halt_stops_a_move_and_leaves_the_robot_in_alarm(bus, homed, emulator, client_named):
    mover = client_named("mover")
    outcome = {}

    def long_move():
        try:
            # ~10 s at the emulator's pace: the halt must meet the move under way even on a loaded machine
            mover.call("smoothie", "move", {"target": {"X": 10}, "speed": 0.1}, timeout=30)
        except BusError as exc:
            outcome["error"] = exc
    thread = threading.Thread(target=long_move)
    thread.start()
    wait_until(lambda: emulator.position["X"] != 418, 5, "the long move under way", every=0.005)
    halted = bus.call("smoothie", "halt", timeout=30)
    thread.join(30)
    assert outcome["error"].code == "conflict" and "halt" in outcome["error"].message
    assert 10 < emulator.position["X"] < 418  # stopped on the way
    assert halted["position"] == pytest.approx(emulator.position, abs=1e-3)  # the bridge keeps 3 decimals
    assert "M112" in emulator.lines
    assert retained(bus, "alarm")["active"]
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 100}})
    assert err.value.code == "conflict"
    bus.call("smoothie", "home", {}, timeout=30)
    assert bus.call("smoothie", "move", {"target": {"X": 100}})["X"] == 100


def test_probe_touch_and_miss(bus, homed, emulator):
    emulator.probe_surfaces["Z"] = 150.0
    assert bus.call("smoothie", "probe", {"axis": "Z", "distance": -100})["position"]["Z"] == 150.0
    assert any(line.endswith("G38.2 F420 Z118") for line in emulator.lines)
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "probe", {"axis": "A", "distance": -50}, timeout=30)
    assert err.value.code == "hardware_error" and "Probe fail" in err.value.message
    assert emulator.position["A"] == 218  # the probed axis was homed again


def test_pipettes_disengage_engaged_and_dwell(bus, homed, emulator):
    emulator.set_pipette("right", None)
    assert bus.call("smoothie", "read_pipette", {"mount": "right"})["right"] is None
    assert bus.call("smoothie", "read_pipette", {"mount": "left"})["left"]["model"] == "p300_single_v2.1"
    assert bus.call("smoothie", "engaged")["Z"] is False  # the EEPROM read quieted the motors
    bus.call("smoothie", "move", {"target": {"Z": 100}})
    assert bus.call("smoothie", "engaged")["Z"] is True
    assert bus.call("smoothie", "disengage", {"axes": ["X", "Z"]})["Z"] is False
    assert "M18 XZ" in emulator.lines
    bus.call("smoothie", "dwell", {"seconds": 0.5})
    assert "G4 P0.5" in emulator.lines


def test_raw_gcode_never_carries_realtime_characters(bus, homed, emulator, client_named):
    """Who may send raw G-code is the broker's ACL (tests/trust); here: what may never be sent in-band."""
    admin = client_named("admin-1")
    assert admin.call("smoothie", "gcode", {"lines": ["M119"]})["replies"][0].startswith("X_max:0")
    for bad in ("?", "G0 X1\x18", "M114.2\nG0 X1"):
        with pytest.raises(BusError) as err:
            admin.call("smoothie", "gcode", {"lines": [bad]})
        assert err.value.code == "invalid_request"
    assert not any("?" in line or "\x18" in line for line in emulator.lines)


def test_pause_and_resume_by_a_client(bus, homed):
    assert bus.call("smoothie", "pause")["paused"] is True
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"X": 1}})
    assert err.value.code == "conflict" and "paused" in err.value.message
    bus.call("smoothie", "resume")
    assert bus.call("smoothie", "move", {"target": {"X": 1}})["X"] == 1


def test_a_move_republishes_only_the_states_it_changed(bus, homed, emulator):
    bus.call("smoothie", "move", {"target": {"X": 100}})  # engages X; from here on only the position changes
    live: dict[str, list] = {}
    done = threading.Event()

    def seen(topic_name: str, data, message) -> None:
        if not message.retain:  # what the bridge publishes from now on, not what the broker held
            name = topic_name.rsplit("/", 1)[-1]
            live.setdefault(name, []).append(data)
            if name == "lease":
                done.set()
    bus.subscribe(bus.topic("smoothie", "state", "#"), seen)
    retained(bus, "position")  # subscribed (the retained copy has arrived)
    first = bus.call("smoothie", "move", {"target": {"X": 101}})
    second = bus.call("smoothie", "move", {"target": {"X": 102}})
    bus.call("smoothie", "acquire_motion", {"ttl_s": 5})  # publishes the lease after everything above
    assert done.wait(5)
    assert live["position"] == [first, second]
    assert "homed" not in live and "engaged" not in live and "alarm" not in live
    assert retained(bus, "homed") == {axis: True for axis in "XYZABC"}  # the broker still holds them
