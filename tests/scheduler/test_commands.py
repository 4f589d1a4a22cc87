"""The scheduler's commands over the real broker (loop paused: nothing here needs the samd-bridge)."""
from __future__ import annotations

import pytest
import yaml

from benchbus import BusError

from .conftest import DEFAULT, STIR_PAUSE, line_of


@pytest.fixture
def paused(start_scheduler):
    _svc, path = start_scheduler(start_paused=True, ip="10.0.0.7")
    return path


def test_get_config_is_the_whole_conf_as_the_original_sends_it(paused, bus):
    result = bus.call("scheduler", "get_config")
    config = result["config"]
    assert list(config)[:3] == ["experimental_params", "broadcast_timing", "num_sleeves"]
    assert config["evolver_ip"] == "10.0.0.7" and config["serial_port"] == "/dev/ttyAMA0"
    assert config["experimental_params"]["od_90"] == {"recurring": True, "fields_expected_outgoing": 2,
                                                      "fields_expected_incoming": 17, "value": "1000"}
    assert result["paused"] is True and result["alternates"] == ["odled_normally_off", "stir_pause_on_od"]


def test_command_is_merged_persisted_and_retained(paused, bus):
    reply = bus.call("scheduler", "command", {"param": "temp", "value": ["NaN"] * 15 + ["3000"], "immediate": False,
                                              "recurring": True})
    assert reply["value"] == ["4095"] * 15 + ["3000"] and reply["applies"] == "next_cycle"
    on_disk = yaml.safe_load(paused.read_text())
    assert on_disk["experimental_params"]["temp"]["value"] == ["4095"] * 15 + ["3000"]
    assert list(on_disk) == list(yaml.safe_load(DEFAULT.read_text())), "the user's key order is kept"
    _topic, state = bus.wait_for(bus.topic("scheduler", "state", "config"),
                                 lambda _t, d: d["experimental_params"]["temp"]["value"][-1] == "3000")
    assert state["paused"] is True


def test_command_to_a_param_that_is_not_recurring_is_only_stored(paused, bus):
    reply = bus.call("scheduler", "command", {"param": "lxml", "value": ["1"] * 16})
    assert reply["applies"] == "not_sent"


@pytest.mark.parametrize("payload,code,field", [
    ({"param": "stirr", "value": ["1"] * 16}, "not_found", "param"),
    ({"param": "stir", "value": ["1"] * 15}, "invalid_request", "value"),
    ({"param": "od_90", "value": ["1", "2"]}, "invalid_request", "value"),
    ({"param": "stir", "value": ["1"] * 16, "colour": "red"}, "invalid_request", "colour"),
])
def test_bad_command_is_refused_and_nothing_changes(paused, bus, payload, code, field):
    before = paused.read_text()
    with pytest.raises(BusError) as caught:
        bus.call("scheduler", "command", payload)
    assert caught.value.code == code and field in caught.value.message + str(caught.value.detail)
    assert paused.read_text() == before


def test_bad_conf_through_the_bus_is_refused_with_line_and_field_and_the_running_conf_stays(paused, bus):
    before = paused.read_text()
    text = STIR_PAUSE.read_text().replace("value: 15\n", "value: -1\n")
    with pytest.raises(BusError) as caught:
        bus.call("scheduler", "load_conf", {"text": text})
    assert caught.value.code == "invalid_request"
    problem = caught.value.detail["errors"][0]
    assert problem["field"] == "experimental_params.od_90.pre.1.value"
    assert problem["line"] == line_of(text, "value: -1")
    assert f"load_conf:{problem['line']}: experimental_params.od_90.pre.1.value" in caught.value.message
    assert paused.read_text() == before
    assert bus.call("scheduler", "get_config")["config"]["broadcast_timing"] == 20


def test_load_conf_switches_to_an_alternate_and_keeps_its_text(paused, bus):
    result = bus.call("scheduler", "load_conf", {"alternate": "stir_pause_on_od"})
    assert result["recurring"] == ["od_90", "od_135", "od_led", "temp"] and result["broadcast_timing"] == 60
    assert paused.read_text() == STIR_PAUSE.read_text(), "comments and layout of the loaded conf are kept"
    config = bus.call("scheduler", "get_config")["config"]
    assert config["experimental_params"]["od_90"]["pre"][1] == {"param": "wait", "value": 15.0}


def test_load_conf_of_an_unknown_alternate_is_not_found(paused, bus):
    with pytest.raises(BusError) as caught:
        bus.call("scheduler", "load_conf", {"alternate": "nope"})
    assert caught.value.code == "not_found" and "stir_pause_on_od" in caught.value.message


def test_load_conf_needs_exactly_one_source(paused, bus):
    with pytest.raises(BusError) as caught:
        bus.call("scheduler", "load_conf", {})
    assert caught.value.code == "invalid_request"


def test_pause_and_resume_are_retained_in_state_config(paused, bus):
    topic = bus.topic("scheduler", "state", "config")
    bus.wait_for(topic, lambda _t, d: d["paused"] is True)
    assert bus.call("scheduler", "resume") == {"paused": False}
    bus.wait_for(topic, lambda _t, d: d["paused"] is False)
    assert bus.call("scheduler", "pause") == {"paused": True}
    bus.wait_for(topic, lambda _t, d: d["paused"] is True)
