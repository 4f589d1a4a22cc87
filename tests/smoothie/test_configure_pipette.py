"""configure_pipette: the typed way to set a mount up for its pipette (reference 5.3), with no raw G-code."""
from __future__ import annotations

import pytest

from benchbus import BusError

GEN2_SINGLE_LEFT = {"mount": "left", "steps_per_mm": 3200, "home_position": 172.15, "travel_distance": 60}


def retained(bus, name: str):
    return bus.wait_for(bus.topic("smoothie", "state", name), timeout=5)[1]


def test_configure_sends_the_reference_lines_and_narrows_the_travel(bus, homed, emulator):
    start = len(emulator.lines)
    result = bus.call("smoothie", "configure_pipette", GEN2_SINGLE_LEFT)
    assert [line for line in emulator.lines[start:] if line != "M400"] == ["M92 B3200", "M365.0 Z172.15",
                                                                           "M365.1 B60"]
    assert emulator.steps_per_mm["B"] == 3200 and emulator.axes["Z"].homing_position == 172.15
    assert emulator.axes["B"].max_travel == 60
    assert result == {"steps_per_mm": 3200, "home_position": 172.15, "travel_distance": 60,
                      "travel": {"Z": [0.0, 170.15], "B": [-40.0, 19.5]}}
    assert retained(bus, "mount_config") == {"left": result, "right": None}

    # the mount now homes 2 mm below its new homing position; above that the bridge refuses before sending
    assert bus.call("smoothie", "home", {"axes": ["Z"]}, timeout=30)["Z"] == pytest.approx(170.15)
    before = len(emulator.lines)
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"Z": 200}})
    assert err.value.code == "invalid_request" and err.value.detail["travel"] == {"Z": [0.0, 170.15]}
    assert len(emulator.lines) == before
    assert bus.call("smoothie", "move", {"target": {"Z": 150}})["Z"] == 150
    assert bus.call("smoothie", "move", {"target": {"A": 200}})["A"] == 200  # the other mount is untouched


def test_gen1_travel_keeps_the_plunger_within_its_homing_travel(bus, homed, emulator):
    result = bus.call("smoothie", "configure_pipette", {"mount": "right", "steps_per_mm": 768,
                                                        "home_position": 220, "travel_distance": 30})
    assert result["travel"] == {"A": [0.0, 218.0], "C": [-10.0, 19.5]}
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "move", {"target": {"C": -20}})
    assert err.value.code == "invalid_request" and "outside" in err.value.message
    assert bus.call("smoothie", "move", {"target": {"C": -5}})["C"] == -5


def test_a_halt_keeps_the_configured_steps_per_mm(bus, homed, emulator):
    bus.call("smoothie", "configure_pipette", GEN2_SINGLE_LEFT)
    bus.call("smoothie", "halt", {}, timeout=30)
    assert emulator.steps_per_mm["B"] == 3200  # the re-setup sent the configured value, not the default 768
    assert emulator.steps_per_mm["C"] == 768


@pytest.mark.parametrize("field, value", [
    ("mount", "middle"), ("steps_per_mm", 0), ("steps_per_mm", 1e6), ("home_position", 300),
    ("home_position", -5), ("travel_distance", 500), ("travel_distance", float("nan")), ("steps_per_mm", "768"),
])
def test_absurd_values_are_refused_naming_the_field(bus, homed, emulator, field, value):
    before = len(emulator.lines)
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "configure_pipette", {**GEN2_SINGLE_LEFT, field: value})
    assert err.value.code == "invalid_request" and field in err.value.message
    assert len(emulator.lines) == before


def test_missing_and_extra_fields_are_refused(bus, homed):
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "configure_pipette", {"mount": "left", "steps_per_mm": 3200, "home_position": 172.15})
    assert err.value.code == "invalid_request" and "travel_distance" in err.value.message
    with pytest.raises(BusError) as err:
        bus.call("smoothie", "configure_pipette", {**GEN2_SINGLE_LEFT, "lines": ["M112"]})
    assert err.value.code == "invalid_request" and "lines" in err.value.message


def test_another_clients_configure_gets_conflict_while_the_lease_is_held(bus, homed, emulator, client_named):
    alice, bob = client_named("alice"), client_named("bob")
    alice.call("smoothie", "acquire_motion", {"ttl_s": 30})
    before = len(emulator.lines)
    with pytest.raises(BusError) as err:
        bob.call("smoothie", "configure_pipette", GEN2_SINGLE_LEFT)
    assert err.value.code == "conflict" and err.value.detail["holder"] == "dev/alice"
    assert len(emulator.lines) == before and emulator.steps_per_mm["B"] == 768
    assert alice.call("smoothie", "configure_pipette", GEN2_SINGLE_LEFT)["home_position"] == 172.15
    alice.call("smoothie", "release_motion", {})


def test_configure_is_a_typed_command_not_raw_gcode(bus, homed, client_named):
    """An operator configures a mount without raw G-code (which the broker's ACL keeps for admins: tests/trust)."""
    protocol = client_named("protocol-host-1")
    assert protocol.call("smoothie", "configure_pipette", GEN2_SINGLE_LEFT)["steps_per_mm"] == 3200
