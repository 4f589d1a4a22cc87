"""samd-bridge over the real broker, talking to the SAMD21 line emulator through a pty and through socket://."""
from __future__ import annotations

import threading

import pytest

from benchbus import BusError
from benchbus.testing import wait_until
from benchbus_samd.emulator.boards import DEFAULT_PARAMS
from benchbus_samd.emulator.faults import FAULT_ERROR_KIND

NEW_VALUES = {
    "od_90": ["500"],
    "od_135": ["750"],
    "od_led": [str(4095 - 100 * i) for i in range(16)],
    "temp": [str(1800 + 10 * i) for i in range(16)],
    "stir": [str(i % 12) for i in range(16)],
    "pump": ["5"] + ["--"] * 15 + ["10"] + ["--"] * 15 + ["2.50|60"] + ["--"] * 14 + ["0|1|1"],
}


class Collector:
    """Keeps every message of a topic filter (event/error, state/bus) for assertions."""

    def __init__(self, bus, topic: str):
        self.items: list[dict] = []
        self._lock = threading.Lock()
        bus.subscribe(topic, self._keep)

    def _keep(self, _topic, data, _message) -> None:
        with self._lock:
            self.items.append(data)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.items)

    def wait_count(self, count: int, timeout: float = 5.0) -> list[dict]:
        wait_until(lambda: len(self.snapshot()) >= count, timeout, f"{count} items")
        return self.snapshot()


@pytest.mark.parametrize("param", list(DEFAULT_PARAMS))
def test_every_param_of_the_default_conf_is_staged_then_applied(emulator, start_bridge, bus, transact_request, param):
    start_bridge(emulator)
    values = NEW_VALUES[param]
    result = bus.call("samd", "transact", transact_request(param, values))

    assert result["param"] == param and result["attempts"] == 1
    if param in ("od_led", "stir", "pump"):
        assert result["kind"] == "echo" and result["values"] == values
    else:
        assert result["kind"] == "data" and len(result["values"]) == 16
        assert all(v.isdigit() for v in result["values"])
    assert emulator.staged(param) == values
    assert emulator.wait_applied(param, values), emulator.applied(param)
    assert emulator.acks(param) == 1


def test_od_readings_are_the_boards_and_temp_moves_towards_its_setpoint(tcp_emulator, start_bridge, bus,
                                                                        transact_request):
    start_bridge(tcp_emulator)
    od = bus.call("samd", "transact", transact_request("od_90"))["values"]
    base = tcp_emulator.boards["od_90"].base  # each vial's photodiode level in the emulator, +-150 of noise
    assert all(abs(int(v) - b) <= 150 for v, b in zip(od, base, strict=True)), (od, base)
    before = [int(v) for v in bus.call("samd", "transact", transact_request("temp"))["values"]]
    hotter = ["1500"] * 16  # lower raw = hotter; the heater pulls the reading down
    bus.call("samd", "transact", transact_request("temp", hotter))
    # the board applies at the `a`, which the emulator's thread takes a moment after the call returns (seen under
    # load: applied after the shift below, which the apply then undid)
    assert tcp_emulator.wait_applied("temp", hotter, 5.0)
    tcp_emulator.boards["temp"].since -= 5.0  # five seconds of heating (tau is 5 s in tests) without waiting
    after = [int(v) for v in bus.call("samd", "transact", transact_request("temp", hotter))["values"]]
    assert all(a < b - 100 for a, b in zip(after, before, strict=True)), (before, after)


FAULT_CASES = [(kind, "stir" if kind == "echo_mismatch" else "temp")
               for kind in FAULT_ERROR_KIND]


@pytest.mark.parametrize("fault,param", FAULT_CASES, ids=[c[0] for c in FAULT_CASES])
def test_each_fault_gives_its_error_kind_and_nothing_is_applied(tcp_emulator, start_bridge, bus, transact_request,
                                                                fault, param):
    start_bridge(tcp_emulator)
    errors = Collector(bus, bus.topic("samd", "event", "error"))
    before = tcp_emulator.applied(param)
    tcp_emulator.inject(param, fault)  # every attempt
    values = ["7"] * 16 if param == "stir" else ["2000"] * 16

    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", transact_request(param, values))

    assert caught.value.code == "hardware_error"
    assert caught.value.detail["kind"] == FAULT_ERROR_KIND[fault]
    assert caught.value.detail["attempts"] == 3  # the default two retries
    assert tcp_emulator.frames(param, "a") == []  # no `a` ever went out
    assert tcp_emulator.applied(param) == before
    assert tcp_emulator.acks(param) == 0
    events = errors.wait_count(3)
    assert [(e["attempt"], e["final"]) for e in events] == [(1, False), (2, False), (3, True)]
    assert {e["kind"] for e in events} == {FAULT_ERROR_KIND[fault]}
    assert events[0]["sent"].startswith(f"{param}r,")
    if fault not in ("silence",):
        assert events[0]["raw"]  # the bytes received, escaped

    tcp_emulator.clear_faults()
    bus.call("samd", "transact", transact_request(param, values))
    assert tcp_emulator.wait_applied(param, values)


def test_a_transient_fault_is_cured_by_the_retry(tcp_emulator, start_bridge, bus, transact_request):
    start_bridge(tcp_emulator)  # counts attempts exactly: bridge_fields' margins keep a paused emulator from faking one
    tcp_emulator.inject("stir", "garbled", count=1)
    values = ["3"] * 16
    result = bus.call("samd", "transact", transact_request("stir", values))
    assert result["attempts"] == 2 and result["values"] == values
    assert tcp_emulator.wait_applied("stir", values)
    assert len(tcp_emulator.frames("stir", "a")) == 1
    state = bus.wait_for(bus.topic("samd", "state", "bus"),
                         lambda _t, d: d["params"].get("stir", {}).get("ok") == 1, 5)[1]
    assert state["params"]["stir"]["errors"] == {"garbled": 1}
    assert state["params"]["stir"]["attempts"] == 2
    assert state["last_error"]["kind"] == "garbled"


def test_retries_can_be_chosen_per_request(tcp_emulator, start_bridge, bus, transact_request):
    start_bridge(tcp_emulator)
    tcp_emulator.inject("od_90", "wrong_address")
    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", transact_request("od_90", retries=0))
    assert caught.value.detail["attempts"] == 1
    assert len(tcp_emulator.frames("od_90", "r")) == 1


@pytest.mark.parametrize("change,field", [
    ({"values": ["1,2"] + ["8"] * 15}, "values"),
    ({"values": ["8_!"] + ["8"] * 15}, "values"),
    ({"values": ["end"] + ["8"] * 15}, "values"),
    ({"values": ["8"] * 15}, "fields_out"),
    ({"fields_out": 18}, "fields_out"),
    ({"type": "a"}, "type"),
    ({"param": "stir,x"}, "param"),
    ({"values": [True] * 16}, "values"),
    ({"surprise": 1}, "surprise"),
])
def test_requests_that_do_not_fit_are_refused_before_a_byte_is_written(tcp_emulator, start_bridge, bus,
                                                                        transact_request, change, field):
    start_bridge(tcp_emulator)
    payload = {**transact_request("stir"), **change}
    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", payload)
    assert caught.value.code == "invalid_request"
    assert field in caught.value.message
    assert tcp_emulator.wire == []  # nothing reached the line
    assert bus.call("samd", "transact", transact_request("stir"))["kind"] == "echo"  # and the service is fine


def test_unknown_address_gets_no_answer(tcp_emulator, start_bridge, bus):
    start_bridge(tcp_emulator)
    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", {"param": "lxml", "type": "i", "values": ["1"] * 16, "fields_out": 17,
                                      "fields_in": 17, "retries": 0})
    assert caught.value.detail["kind"] == "timeout"


def test_the_port_vanishing_and_returning(emulator, start_bridge, bus, device, transact_request):
    service = start_bridge(emulator)
    lifecycle = f"benchbus/{device}/samd/$state"
    emulator.drop_port(down_s=None)  # gone until restored: the call below must meet the missing port

    bus.wait_for(lifecycle, lambda _t, d: d.get("state") == "degraded", 5)
    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", transact_request("stir"))
    assert caught.value.code == "unavailable"
    bus.wait_for(bus.topic("samd", "state", "bus"), lambda _t, d: d["connected"] is False, 5)

    emulator.restore_port()
    bus.wait_for(lifecycle, lambda _t, d: d.get("state") == "ready", 10)
    values = ["4"] * 16
    assert bus.call("samd", "transact", transact_request("stir", values))["values"] == values
    assert emulator.wait_applied("stir", values)
    state = bus.wait_for(bus.topic("samd", "state", "bus"), lambda _t, d: d["params"].get("stir", {}).get("ok"), 5)[1]
    assert state["connected"] is True and state["reopened"] >= 1 and state["unavailable"] == 1
    assert service.state == "ready"


def test_the_port_closing_during_a_transaction(tcp_emulator, start_bridge, bus, device, transact_request):
    start_bridge(tcp_emulator)
    tcp_emulator.inject("temp", "port_close", count=1)
    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", transact_request("temp"))
    assert caught.value.code == "unavailable" and caught.value.detail["kind"] == "port_error"
    assert tcp_emulator.acks("temp") == 0
    bus.wait_for(f"benchbus/{device}/samd/$state", lambda _t, d: d.get("state") == "ready", 10)
    assert bus.call("samd", "transact", transact_request("temp"))["kind"] == "data"


def test_a_port_that_is_not_there_at_start(start_bridge, bus, device, tmp_path, transact_request):
    from types import SimpleNamespace
    from benchbus_samd.emulator.line import SamdEmulator
    from benchbus_samd.emulator.wire import LineTiming

    link = tmp_path / "ttyLATE"
    service = start_bridge(SimpleNamespace(url_for_bridge=str(link)))
    assert service.state == "degraded"
    with pytest.raises(BusError) as caught:
        bus.call("samd", "transact", transact_request("od_90"))
    assert caught.value.code == "unavailable"

    with SamdEmulator(LineTiming.fast()) as emu:
        emu.start_pty(link)
        bus.wait_for(f"benchbus/{device}/samd/$state", lambda _t, d: d.get("state") == "ready", 10)
        assert bus.call("samd", "transact", transact_request("od_90"))["kind"] == "data"
