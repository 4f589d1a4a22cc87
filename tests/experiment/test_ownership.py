"""One controller per vial: the scheduler refuses another client's command that would change a vial an on-device
experiment runs, naming the vial and the experiment; the other vials keep working, and the experiment's own
commands pass."""
from __future__ import annotations


import pytest

from benchbus import BusError
from benchbus.testing import wait_until

from .conftest import definition, turbidostat_group

OWNED = [8, 9, 10, 11]


def refused(bus, request: dict) -> BusError | None:
    try:
        bus.call("scheduler", "command", request, timeout=10)
    except BusError as error:
        return error
    return None


def temp_for(vial: int, value: str) -> dict:
    values = ["NaN"] * 16
    values[vial] = value
    return {"param": "temp", "value": values}


def test_a_dpu_command_to_an_owned_vial_is_refused_and_the_others_work(stack, rig_emulator, bus):
    stack()
    bus.call("experiment", "start", {"definition": definition("owner", [turbidostat_group(OWNED)])}, timeout=10)
    # until the scheduler has the retained ownership
    error = wait_until(lambda: refused(bus, temp_for(9, "2000")), 10, "a command to an owned vial refused")
    assert error.code == "conflict"
    assert "vial 9" in error.message and "'owner'" in error.message
    assert error.detail["vials"] == [9] and error.detail["experiments"] == ["owner"]

    assert refused(bus, temp_for(3, "2000")) is None  # vial 3 is the DPU's
    pump = ["--"] * 48
    pump[0], pump[16] = "5", "10"
    assert refused(bus, {"param": "pump", "value": pump, "immediate": True}) is None
    pump[9 + 32] = "1"  # IN2 of vial 9
    error = refused(bus, {"param": "pump", "value": pump, "immediate": True})
    assert error is not None and "vial 9" in error.message

    # the experiment's own setpoints reached the conf; a DPU resending the same stir for every vial passes
    def params_with_setpoints() -> dict | None:  # 30 C through the active temperature fit, sent on the first broadcast
        config = bus.call("scheduler", "get_config", {}, timeout=10)["config"]["experimental_params"]
        return config if all(config["temp"]["value"][v] != "4095" for v in OWNED) else None
    config = wait_until(params_with_setpoints, 10, "the experiment's temperature setpoints in the conf")
    assert [config["stir"]["value"][v] for v in OWNED] == ["8"] * 4
    assert refused(bus, {"param": "stir", "value": ["9"] * 8 + ["8"] * 8}) is None
    error = refused(bus, {"param": "stir", "value": ["9"] * 16})
    assert error is not None and error.detail["vials"] == OWNED

    bus.call("experiment", "stop", {"name": "owner"}, timeout=10)
    wait_until(lambda: refused(bus, temp_for(9, "2000")) is None, 10, "the vial released after stop")


def test_experiment_commands_refuse_bad_input_and_vials_already_owned(stack, bus):
    stack()
    with pytest.raises(BusError) as bad:
        bus.call("experiment", "start", {"definition": definition("bad", [turbidostat_group([1], 0.5, 0.3)])},
                 timeout=10)
    assert bad.value.code == "invalid_request" and "lower_od" in bad.value.message
    bus.call("experiment", "start", {"definition": definition("first", [turbidostat_group([1, 2])])}, timeout=10)
    with pytest.raises(BusError) as taken:
        bus.call("experiment", "start", {"definition": definition("second", [turbidostat_group([2, 3])])},
                 timeout=10)
    assert taken.value.code == "conflict" and "vial 2" in taken.value.message
    edited = bus.call("experiment", "edit", {"definition": definition("first", [turbidostat_group([1, 2, 4])])},
                      timeout=10)
    assert edited["version"] == 2 and [v["vial"] for v in edited["vials"]] == [1, 2, 4]
    assert bus.call("experiment", "pause", {"name": "first"}, timeout=10)["status"] == "paused"
    assert bus.call("experiment", "resume", {"name": "first"}, timeout=10)["status"] == "running"
    listed = bus.call("experiment", "list", {}, timeout=10)["experiments"]
    assert [(e["name"], e["status"]) for e in listed] == [("first", "running")]
    with pytest.raises(BusError) as missing:
        bus.call("experiment", "stop", {"name": "nope"}, timeout=10)
    assert missing.value.code == "not_found"


def test_editing_a_chemostat_away_stops_its_programs_and_stop_releases(stack, rig_emulator, bus):
    from .conftest import chemostat_group, growth_group
    stack()
    emulator = rig_emulator.emulator
    bus.call("experiment", "start", {"definition": definition("edits", [chemostat_group([4, 5], 0.3)])}, timeout=10)
    wait_until(lambda: all(emulator.pump_programs()[p] is not None for p in (4, 5, 20, 21)), 15, "chemostat programs")
    assert emulator.pump_programs()[4].kind == "chemostat"
    edited = {"definition": definition("edits", [chemostat_group([4], 0.3), growth_group([5])])}
    assert bus.call("experiment", "edit", edited, timeout=10)["version"] == 2
    wait_until(lambda: emulator.pump_programs()[5] is None and emulator.pump_programs()[21] is None,
               15, "vial 5's programs stopped")
    assert emulator.pump_programs()[4] is not None  # still a chemostat
    bus.call("experiment", "stop", {"name": "edits"}, timeout=10)
    wait_until(lambda: emulator.pump_programs()[4] is None and emulator.pump_programs()[20] is None,
               15, "vial 4's programs stopped")
