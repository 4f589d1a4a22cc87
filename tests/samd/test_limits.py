"""Physical limits at the samd-bridge: a value its board cannot take is refused (invalid_request naming the field and
the allowed range) before a byte is written; the emulator's wire log proves nothing reached the line."""
from __future__ import annotations

import pytest

from benchbus import BusError
from benchbus_samd.emulator.boards import DEFAULT_PARAMS

INF, NAN = float("inf"), float("nan")  # the client writes them as JSON's Infinity and NaN tokens


def _request(param: str, values: list) -> dict:
    _default, fields_out, fields_in = DEFAULT_PARAMS[param]
    return {"param": param, "type": "i", "values": values, "fields_out": fields_out, "fields_in": fields_in}


def _pumps(first, rest="--") -> list:
    return [first] + [rest] * 47


REFUSED = [
    ("pump Infinity x48", "pump", [INF] * 48, "finite"),
    ("pump NaN", "pump", _pumps(NAN), "finite"),
    ("stir Infinity", "stir", [INF] * 16, "finite"),
    ("temp NaN", "temp", [NAN] * 16, "finite"),
    ("non-ASCII value", "stir", ["é"] * 16, "ASCII"),
    ("non-ASCII digits", "stir", ["٨"] * 16, "ASCII"),  # int("٨") == 8 in Python: the board would not agree
    ("true as a value", "stir", [True] * 16, "true/false"),
    ("stir above its 98 steps", "stir", ["99"] * 16, "0..98"),
    ("stir 1e9 as a number", "stir", [1e9] * 16, "0..98"),
    ("stir as text 'inf'", "stir", ["inf"] * 16, "0..98"),
    ("temp setpoint above 12 bits", "temp", ["4096"] * 16, "0..4095"),
    ("temp setpoint negative", "temp", [-1] * 16, "0..4095"),
    ("od_led fraction", "od_led", ["1.5"] * 16, "0..4095"),
    ("od samples zero", "od_90", ["0"], "1..65535"),
    ("pump -5", "pump", _pumps("-5"), "0..86400"),
    ("pump seconds beyond a day", "pump", _pumps("1e9"), "maximum per pump event"),
    ("pump seconds as text 'inf'", "pump", _pumps("inf"), "not a number"),
    ("chemostat that never stops", "pump", _pumps("60|60"), "never stop"),
    ("chemostat period not whole", "pump", _pumps("1|2.5"), "period"),
    ("IPP solenoid 4", "pump", _pumps("5|1|4"), "solenoid"),
    ("value with a space", "stir", ["8 "] * 16, "space"),
]


@pytest.mark.parametrize("case,param,values,reason", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_value_the_board_cannot_take_never_reaches_the_line(tcp_emulator, start_bridge, bus, case, param, values,
                                                              reason):
    start_bridge(tcp_emulator)
    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", _request(param, values))
    assert caught.value.code == "invalid_request", caught.value
    assert "values.0" in caught.value.message or "value 0" in caught.value.message, caught.value.message
    assert reason in caught.value.message, caught.value.message
    assert tcp_emulator.wire == []  # not one byte was written
    stir = DEFAULT_PARAMS["stir"][0]
    assert bus.call("samd", "transact", _request("stir", stir))["values"] == stir  # and the bridge is fine


def test_values_inside_the_limits_reach_the_board(tcp_emulator, start_bridge, bus):
    start_bridge(tcp_emulator)
    edges = {"stir": [0, 98] * 8, "temp": ["0", "4095"] * 8, "od_led": [0.0, 4095.0] * 8, "od_90": ["65535"],
             "pump": ["86400", "0", "--", "2.50|60", "0|1|1", "1e-05", "0|0", "5|0"] + ["--"] * 40}
    for param, values in edges.items():
        sent = [v if isinstance(v, str) else str(int(v)) for v in values]
        result = bus.call("samd", "transact", _request(param, values))
        assert result["param"] == param
        assert tcp_emulator.wait_applied(param, sent), (param, tcp_emulator.applied(param))


def test_a_chemostat_stopped_the_dpu_way_stops(tcp_emulator, start_bridge, bus):
    """The DPU's update_chemo stops a vial's chemostat with `0|0` (the firmware's interval 0 means no repeat)."""
    start_bridge(tcp_emulator)
    bus.call("samd", "transact", _request("pump", _pumps("2.50|60", "--")))
    assert tcp_emulator.pump_programs()[0] is not None
    bus.call("samd", "transact", _request("pump", _pumps("0|0", "--")))
    assert tcp_emulator.wait_applied("pump", _pumps("0|0", "--"))
    assert tcp_emulator.pump_programs()[0] is None


def test_an_address_without_known_limits_is_refused_unless_the_rig_names_it(tcp_emulator, start_bridge, bus):
    request = {"param": "pres", "type": "i", "values": ["1"] * 16, "fields_out": 17, "fields_in": 17, "retries": 0}
    start_bridge(tcp_emulator)
    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", request)
    assert caught.value.code == "invalid_request" and "'param'" in caught.value.message
    assert "extra_boards" in caught.value.message
    assert tcp_emulator.wire == []


def test_an_extra_board_named_in_the_settings_is_addressed(tcp_emulator, start_bridge, bus):
    start_bridge(tcp_emulator, extra_boards=["pres"])
    with pytest.raises(BusError) as caught:  # the emulator has no pressure board: nobody answers
        bus.call("samd", "transact", {"param": "pres", "type": "i", "values": ["1"] * 16, "fields_out": 17,
                                      "fields_in": 17, "retries": 0})
    assert caught.value.code == "hardware_error" and caught.value.detail["kind"] == "timeout"
    assert any(event.data.startswith(b"presi,1,") for event in tcp_emulator.wire if event.source == "host")
