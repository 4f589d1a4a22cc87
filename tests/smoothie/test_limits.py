"""Strict numbers and the door at the smoothie-bridge (issue 15): a string is not a target, NaN and infinity are not
numbers, and a door the bridge does not know is an open door. The emulator's G-code log proves nothing moved."""
from __future__ import annotations

import json

import pytest

from benchbus import BusError
from benchbus.yamlfile import FileError
from benchbus_smoothie.settings import SmoothieSettings

from .test_bridge import publish_door, wait_state

MOTION_CODES = ("G0", "G1", "G28", "G38")


def moved(emulator, since: int) -> list[str]:
    return [c for line in emulator.lines[since:] for c in line.split() if c.startswith(MOTION_CODES)]


REFUSED = [
    ("target as a string", "move", {"target": {"X": "100"}}, "target.X"),
    ("target true", "move", {"target": {"X": True}}, "target.X"),
    ("target NaN", "move", {"target": {"X": float("nan")}}, "target.X"),
    ("target Infinity", "move", {"target": {"X": float("inf")}}, "target.X"),
    ("speed as a string", "move", {"target": {"X": 100}, "speed": "5"}, "speed"),
    ("delta as a string", "move_relative", {"delta": {"Y": "10"}}, "delta.Y"),
    ("current above 2.5 A", "set_current", {"active": {"X": 2.6}}, "active.X"),
    ("current as a string", "set_current", {"active": {"X": "1.0"}}, "active.X"),
    ("max speed Infinity", "set_max_speed", {"speeds": {"X": float("inf")}}, "speeds.X"),
    ("dwell as a string", "dwell", {"seconds": "1"}, "seconds"),
    ("probe distance NaN", "probe", {"axis": "Z", "distance": float("nan")}, "distance"),
    ("non-ASCII G-code", "gcode", {"lines": ["G0 X１００"]}, "lines.0"),
    ("lease ttl as a string", "acquire_motion", {"ttl_s": "30"}, "ttl_s"),
]


@pytest.mark.parametrize("command,payload,field", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_numbers_given_as_strings_nan_and_infinity_are_refused_before_anything_moves(bus, homed, emulator, command,
                                                                                     payload, field):
    mark = len(emulator.lines)
    before = dict(emulator.position)
    with pytest.raises(BusError) as caught:
        bus.call("smoothie", command, payload)
    assert caught.value.code == "invalid_request", caught.value
    assert f"'{field}" in caught.value.message, caught.value.message
    assert moved(emulator, mark) == [] and emulator.position == before
    assert bus.call("smoothie", "move", {"target": {"X": 100}})["X"] == 100  # a real number still moves


def test_a_door_never_reported_is_open_no_motion(bus, start_bridge, emulator):
    start_bridge(use_gpio=True)  # gpio-service absent: no door state at all
    mark = len(emulator.lines)
    for command, payload in (("home", {}), ("move", {"target": {"X": 100}})):
        with pytest.raises(BusError) as caught:
            bus.call("smoothie", command, payload)
        assert caught.value.code == "conflict" and "door unknown" in caught.value.message
        assert "counts as open" in caught.value.message
    with pytest.raises(BusError) as caught:
        bus.call("smoothie", "resume")
    assert caught.value.code == "conflict" and caught.value.detail == {"door": "unknown"}
    assert moved(emulator, mark) == []
    publish_door(bus, "closed")
    wait_state(bus, "paused", lambda d: d["door"] == "closed")
    assert bus.call("smoothie", "home", {}, timeout=30)["X"] == 418  # known closed: it moves


@pytest.mark.parametrize("door_payload", [b"", b"{}", b'{"door": "ajar", "since": "x"}',
                                          json.dumps({"door": "closed", "window": "half"}).encode()],
                         ids=["empty", "no-fields", "ajar", "bad-window"])
def test_a_door_state_that_is_not_valid_is_open_and_pauses(bus, start_bridge, emulator, door_payload):
    publish_door(bus, "closed")
    start_bridge(use_gpio=True)
    wait_state(bus, "paused", lambda d: d["door"] == "closed")
    bus.call("smoothie", "home", {}, timeout=30)
    bus.connection.publish(bus.topic("gpio", "state", "door"), door_payload, kind="state", retain=False)
    wait_state(bus, "paused", lambda d: d["paused"] and d["door"] == "unknown" and d["reason"] == "door")
    mark = len(emulator.lines)
    with pytest.raises(BusError) as caught:
        bus.call("smoothie", "move", {"target": {"X": 100}})
    assert caught.value.code == "conflict"
    assert moved(emulator, mark) == []


def test_gpio_going_offline_makes_the_door_unknown(bus, start_bridge, emulator, device):
    publish_door(bus, "closed")
    start_bridge(use_gpio=True)
    wait_state(bus, "paused", lambda d: d["door"] == "closed")
    bus.call("smoothie", "home", {}, timeout=30)
    bus.connection.publish(f"benchbus/{device}/gpio/$state", json.dumps({"state": "offline"}).encode(),
                           kind="state", retain=False)
    wait_state(bus, "paused", lambda d: d["paused"] and d["door"] == "unknown")
    with pytest.raises(BusError) as caught:
        bus.call("smoothie", "move", {"target": {"X": 100}})
    assert caught.value.code == "conflict" and "door unknown" in caught.value.message


def test_the_unknown_door_switch_is_gone_and_says_so(make_settings, tmp_path):
    path = tmp_path / "smoothie.yaml"
    path.write_text("door_unknown_is_open: false\n")
    from benchbus.settings import load_settings
    with pytest.raises(FileError) as caught:
        load_settings(SmoothieSettings, "smoothie", path, environ={})
    assert "door_unknown_is_open was removed: an unknown door is always an open door" in str(caught.value)


def test_door_safety_without_gpio_is_refused_at_start(tmp_path):
    path = tmp_path / "smoothie.yaml"
    path.write_text("use_gpio: false\n")
    from benchbus.settings import load_settings
    with pytest.raises(FileError) as caught:
        load_settings(SmoothieSettings, "smoothie", path, environ={})
    assert "door_safety needs use_gpio" in str(caught.value)
    path.write_text("use_gpio: false\ndoor_safety: false\n")
    assert load_settings(SmoothieSettings, "smoothie", path, environ={}).door_safety is False
