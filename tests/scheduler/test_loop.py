"""The broadcast loop with the real broker, the real samd-bridge and its emulator (real bytes on a TCP line)."""
from __future__ import annotations

import json

import pytest

from .conftest import DEFAULT, ODLED_OFF, STIR_PAUSE, fast
from benchbus import BusClient
from benchbus.testing import wait_until

LONG = 300  # a broadcast_timing that lets exactly one cycle run during a test


def sent(emu, since: int = 0) -> list[tuple[str, str, list[str]]]:
    """(param, type, values) of every r/i frame the boards understood, in wire order."""
    return [(f.param, f.type, f.values) for f in emu.frames()[since:] if f.type in ("r", "i")]


def test_default_cycle_order_content_and_broadcast(rig, events, bus):
    emu, start = rig
    broadcasts = events("broadcast")
    start(fast(DEFAULT.read_text(), LONG), ip="10.1.2.3")
    first = broadcasts.wait(lambda b: b["cycle"] == 1)
    assert sent(emu) == [("od_90", "r", ["1000"]), ("od_135", "r", ["1000"]), ("od_led", "r", ["4095"] * 16),
                         ("temp", "r", ["4095"] * 16), ("stir", "r", ["8"] * 16)]
    assert set(first["data"]) == {"od_90", "od_135", "temp"}, "echo-only boards have no data, as in the original"
    assert all(len(v) == 16 and all(isinstance(x, str) and x.isdigit() for x in v) for v in first["data"].values())
    assert first["status"] == {p: "ok" for p in ("od_90", "od_135", "od_led", "temp", "stir")}
    assert first["ip"] == "10.1.2.3" and isinstance(first["timestamp"], float)
    assert first["config"]["stir"] == {"recurring": True, "fields_expected_outgoing": 17,
                                       "fields_expected_incoming": 17, "value": ["8"] * 16}
    assert list(first["config"]) == ["od_90", "od_135", "od_led", "temp", "stir", "pump", "lxml"]
    assert first["cycle_s"] > 0 and emu.wait_applied("stir", ["8"] * 16)


def test_stir_pause_conf_stops_stirring_for_the_read_and_waits_for_real(rig, events):
    emu, start = rig
    broadcasts = events("broadcast")
    start(fast(STIR_PAUSE.read_text(), LONG))
    broadcasts.wait(lambda b: b["cycle"] == 1)
    assert sent(emu) == [("stir", "i", ["0"] * 16), ("od_90", "r", ["1000"]), ("stir", "i", ["8"] * 16),
                         ("od_135", "r", ["1000"]), ("od_led", "r", ["4095"] * 16), ("temp", "r", ["4095"] * 16)]
    frames = [f for f in emu.frames() if f.type in ("r", "i")]
    assert frames[1].t - frames[0].t >= 0.2, "the wait is a real pause between stopping the stir and the read"


def test_odled_conf_lights_the_leds_only_around_the_reads(rig, events):
    emu, start = rig
    broadcasts = events("broadcast")
    start(fast(ODLED_OFF.read_text(), LONG))
    broadcasts.wait(lambda b: b["cycle"] == 1)
    assert sent(emu) == [("od_led", "i", ["4095"] * 16), ("od_90", "r", ["1000"]), ("od_135", "r", ["1000"]),
                         ("od_led", "i", ["0"] * 16), ("temp", "r", ["4095"] * 16), ("stir", "r", ["8"] * 16)]
    assert emu.wait_applied("od_led", ["0"] * 16), emu.applied("od_led")


def test_values_follow_the_current_conf(rig, events, bus):
    """`value: values` sends the param's value as it is now: a stored stir command reaches the board in `post`."""
    emu, start = rig
    broadcasts = events("broadcast")
    start(fast(STIR_PAUSE.read_text(), 0.2))
    broadcasts.wait(lambda b: b["cycle"] == 1)
    reply = bus.call("scheduler", "command", {"param": "stir", "value": ["5"] * 16})
    assert reply["applies"] == "not_sent", "stir is not recurring in this conf; only its `post` sends it"
    # Two whole cycles after the reply (cycles run fast; under load several may pass while the reply travels).
    stored_during = broadcasts.items[-1]["cycle"]
    broadcasts.wait(lambda b: b["cycle"] >= stored_during + 2)
    assert ("stir", "i", ["5"] * 16) in sent(emu)
    assert emu.applied("stir") == ["5"] * 16


def test_immediate_command_waits_for_the_group_boundary_then_runs_first(rig, events, bus):
    emu, start = rig
    broadcasts = events("broadcast")
    results = events("command_result")
    # a 3 s wait inside the od_90 group: long enough that the command lands inside it on a loaded machine too
    start(fast(STIR_PAUSE.read_text(), LONG).replace("value: 0.2\n", "value: 3.0\n"))
    wait_until(lambda: sent(emu))  # the group has begun: the stir is stopped and the wait runs
    reply = bus.call("scheduler", "command", {"param": "temp", "value": ["3000"] * 16, "immediate": True})
    assert reply["applies"] == "next_boundary"
    broadcasts.wait(lambda b: b["cycle"] == 1)
    assert sent(emu) == [("stir", "i", ["0"] * 16), ("od_90", "r", ["1000"]), ("stir", "i", ["8"] * 16),
                         ("temp", "i", ["3000"] * 16), ("od_135", "r", ["1000"]),
                         ("od_led", "r", ["4095"] * 16), ("temp", "r", ["3000"] * 16)]
    result = results.wait(lambda r: r["command_id"] == reply["command_id"])
    assert result["outcome"] == "applied" and result["values"] == ["3000"] * 16


def test_overrun_is_reported_and_the_next_cycle_starts_at_once(rig, events):
    emu, start = rig
    broadcasts = events("broadcast")
    overruns = events("overrun")
    start(fast(STIR_PAUSE.read_text(), 0.05))
    report = overruns.wait()
    assert report["overrun_s"] > 0 and report["cycle_s"] > report["broadcast_timing"] == 0.05
    assert report["slowest"][0]["param"] == "wait" and report["slowest"][0]["group"] == "od_90"
    assert [(s["phase"], s["param"]) for s in report["steps"]][:4] == [("pre", "stir"), ("pre", "wait"),
                                                                        ("main", "od_90"), ("post", "stir")]
    broadcasts.wait(lambda b: b["cycle"] >= 3)
    assert [b["cycle"] for b in broadcasts.items[:3]] == [1, 2, 3], "no cycle is skipped"


def test_serial_fault_in_one_param_leaves_the_others_data_and_the_loop_running(rig, events):
    emu, start = rig
    emu.inject("od_135", "garbled")
    broadcasts = events("broadcast")
    start(fast(DEFAULT.read_text(), 0.2))
    faulty = broadcasts.wait(lambda b: b["cycle"] == 2)
    assert faulty["status"]["od_135"] == "garbled" and "od_135" in faulty["errors"]
    assert set(faulty["data"]) == {"od_90", "temp"}
    assert {p: s for p, s in faulty["status"].items() if p != "od_135"} == {p: "ok" for p in
                                                                            ("od_90", "od_led", "temp", "stir")}
    emu.clear_faults()
    healed = broadcasts.wait(lambda b: b["status"]["od_135"] == "ok")
    assert set(healed["data"]) == {"od_90", "od_135", "temp"}


def test_command_result_arrives_when_the_board_has_applied_it(rig, events, bus):
    emu, start = rig
    results = events("command_result")
    start(fast(DEFAULT.read_text(), LONG))
    events("broadcast").wait(lambda b: b["cycle"] == 1)
    reply = bus.call("scheduler", "command", {"param": "stir", "value": ["NaN"] * 8 + ["12"] * 8, "immediate": True,
                                              "recurring": True})
    result = results.wait(lambda r: r["command_id"] == reply["command_id"])
    assert result["outcome"] == "applied" and result["reply_kind"] == "echo"
    assert emu.wait_applied("stir", ["8"] * 8 + ["12"] * 8)
    assert result["values"] == ["8"] * 8 + ["12"] * 8


def test_a_failed_command_is_reported(rig, events, bus):
    emu, start = rig
    results = events("command_result")
    start(fast(DEFAULT.read_text(), LONG))
    events("broadcast").wait(lambda b: b["cycle"] == 1)
    emu.inject("stir", "echo_mismatch")
    reply = bus.call("scheduler", "command", {"param": "stir", "value": ["20"] * 16, "immediate": True})
    result = results.wait(lambda r: r["command_id"] == reply["command_id"])
    assert result["outcome"] == "failed" and result["error"]["kind"] == "echo_mismatch"
    assert emu.applied("stir") == ["8"] * 16, "a board whose echo was wrong is never told to apply"


def test_recurring_command_is_reported_when_the_next_cycle_applied_it(rig, events, bus):
    emu, start = rig
    results = events("command_result")
    broadcasts = events("broadcast")
    start(fast(DEFAULT.read_text(), 0.3))
    broadcasts.wait(lambda b: b["cycle"] == 1)
    reply = bus.call("scheduler", "command", {"param": "temp", "value": ["2500"] * 16, "immediate": False,
                                              "recurring": True})
    assert reply["applies"] == "next_cycle"
    result = results.wait(lambda r: r["command_id"] == reply["command_id"])
    assert result["outcome"] == "applied" and result["values"] == ["2500"] * 16
    assert emu.wait_applied("temp", ["2500"] * 16)


def test_calibrated_values_from_the_active_calibration(rig, events, bus):
    emu, start = rig
    slope, intercept = -0.028, 83.0
    active = {"by_type": {"temperature": {"calibration": "t1", "calibrationType": "temperature", "fit": "temp_lin",
                                          "type": "linear", "params": ["temp"],
                                          "coefficients": [[slope, intercept]] * 16}},
              "fits": [], "ambiguous": [], "version": 1}
    bus.connection.publish(bus.topic("calibration", "state", "active"), json.dumps(active).encode(),
                           kind="state", retain=True)
    broadcasts = events("broadcast")
    start(fast(DEFAULT.read_text(), 0.2))
    shown = broadcasts.wait(lambda b: "temp" in b["calibrated"])
    raw = [float(v) for v in shown["data"]["temp"]]
    assert shown["calibrated"]["temp"] == pytest.approx([slope * r + intercept for r in raw])
    assert shown["calibration"] == {"temp": "temp_lin"} and "od" not in shown["calibrated"]


def test_no_calibration_means_no_calibrated_values(rig, events):
    _emu, start = rig
    broadcasts = events("broadcast")
    start(fast(DEFAULT.read_text(), LONG))
    assert broadcasts.wait(lambda b: b["cycle"] == 1)["calibrated"] == {}


def test_a_command_repeated_with_its_idempotency_key_reaches_the_board_once(rig, events, bus, broker):
    """The experiment service's resend of a batch in doubt: the scheduler took it while the caller was down."""
    emu, start = rig
    results = events("command_result")
    start(fast(DEFAULT.read_text(), LONG))
    events("broadcast").wait(lambda b: b["cycle"] == 1)
    request = {"param": "pump", "value": ["4.5"] + ["--"] * 47, "immediate": True, "idempotency_key": "batch-1"}
    first = bus.call("scheduler", "command", request)
    again = bus.call("scheduler", "command", request)
    assert again == {**first, "repeated": True} and first["repeated"] is False
    results.wait(lambda r: r["command_id"] == first["command_id"] and r["outcome"] == "applied")
    # a key is the caller's own: another principal's same key is a command of its own
    another = BusClient(bus.device, broker.settings().model_copy(update={"username": "another-principal"}))
    another.start()
    try:
        other = another.call("scheduler", "command", request)
    finally:
        another.close()
    assert other["repeated"] is False and other["command_id"] != first["command_id"]
    results.wait(lambda r: r["command_id"] == other["command_id"] and r["outcome"] == "applied")
    assert [values[0] for param, _kind, values in sent(emu) if param == "pump"] == ["4.5", "4.5"]
