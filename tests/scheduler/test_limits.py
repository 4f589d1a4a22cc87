"""Physical limits at the scheduler: a command or conf the boards cannot take is refused before conf.yml is written and
before anything is queued for the line (issue 15). The samd-bridge and its emulator are real; the emulator's frame
log shows what reached the boards."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchbus import BusError

from .conftest import DEFAULT, fast, line_of

LONG = 300  # one cycle per test
INF = float("inf")


def board_frames(emu, param: str) -> list[list[str]]:
    return [f.values for f in emu.frames(param) if f.type in ("r", "i")]


ATTACKS = [
    ("Infinity x48 pumps, immediate", {"param": "pump", "value": [INF] * 48, "immediate": True}, "finite"),
    ("stir 1e9, immediate", {"param": "stir", "value": [1e9] * 16, "immediate": True}, "0..98"),
    ("pump -5, immediate", {"param": "pump", "value": [-5] * 48, "immediate": True}, "pump seconds '-5'"),
    ("pump beyond max_pump_s", {"param": "pump", "value": ["31"] + ["--"] * 47, "immediate": True},
     "maximum per pump event, 30 s"),
    ("od_90 '1,2' (a frame separator)", {"param": "od_90", "value": "1,2"}, "frame separator"),
    ("temp as text 'inf'", {"param": "temp", "value": ["inf"] * 16, "immediate": True}, "0..4095"),
    ("non-ASCII stir", {"param": "stir", "value": ["８"] * 16, "immediate": True}, "ASCII"),
    ("true as a value", {"param": "stir", "value": [True] * 16, "immediate": True}, "true/false"),
    ("immediate as text", {"param": "stir", "value": ["8"] * 16, "immediate": "true"}, "immediate"),
]


@pytest.mark.parametrize("payload,reason", [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_a_command_the_boards_cannot_take_is_never_stored_or_sent(rig, events, bus, payload, reason):
    emu, start = rig
    broadcasts = events("broadcast")
    _svc, path = start(fast(DEFAULT.read_text(), LONG), max_pump_s=30)
    before = path.read_bytes()
    with pytest.raises(BusError) as caught:
        bus.call("scheduler", "command", payload)
    assert caught.value.code == "invalid_request", caught.value
    assert "value" in caught.value.message or "immediate" in caught.value.message
    assert reason in caught.value.message, caught.value.message
    broadcasts.wait(lambda b: b["cycle"] == 1)  # every group boundary of a cycle has passed: an immediate would be out
    assert path.read_bytes() == before, "conf.yml is unchanged"
    assert board_frames(emu, "pump") == []
    stir, od_90 = board_frames(emu, "stir"), board_frames(emu, "od_90")
    assert stir and all(values == ["8"] * 16 for values in stir), stir  # only the recurring stir of the conf
    assert od_90 and all(values == ["1000"] for values in od_90), od_90
    config = bus.call("scheduler", "get_config")["config"]["experimental_params"]
    assert config["pump"]["value"] is None and config["od_90"]["value"] == "1000"


def test_pump_seconds_up_to_max_pump_s_run(rig, events, bus):
    emu, start = rig
    results = events("command_result")
    start(fast(DEFAULT.read_text(), LONG), max_pump_s=30)
    pumps = ["30", "0", "2.50|60"] + ["--"] * 45
    reply = bus.call("scheduler", "command", {"param": "pump", "value": pumps, "immediate": True})
    assert results.wait(lambda r: r["command_id"] == reply["command_id"])["outcome"] == "applied"
    assert emu.wait_applied("pump", pumps)


def test_the_dpus_own_payloads_pass(rig, events, bus):
    """update_stir_rate (ints), update_temperature (int text), update_chemo ('%.2f|%d', '0|0'), stop_all_pumps."""
    emu, start = rig
    start(fast(DEFAULT.read_text(), LONG), start_paused=True)
    bus.call("scheduler", "command", {"param": "stir", "value": [8] * 16, "immediate": False, "recurring": True})
    bus.call("scheduler", "command", {"param": "temp", "value": ["2100"] * 16, "immediate": False,
                                      "recurring": True})
    chemo = ["2.50|120"] * 8 + ["0|0"] * 8 + ["5.00|120"] * 8 + ["0|0"] * 8 + ["--"] * 16
    bus.call("scheduler", "command", {"param": "pump", "value": chemo, "recurring": True, "immediate": True,
                                      "fields_expected_incoming": 49, "fields_expected_outgoing": 49})
    assert emu.wait_applied("pump", chemo)
    bus.call("scheduler", "command", {"param": "pump", "value": ["0"] * 48, "recurring": False, "immediate": True})
    assert emu.wait_applied("pump", ["0"] * 48)
    assert emu.pumps_running() == []


def test_a_conf_with_out_of_range_values_is_refused_by_load_conf_and_not_written(rig, bus):
    _emu, start = rig
    _svc, path = start(fast(DEFAULT.read_text(), LONG), start_paused=True)
    before = path.read_bytes()
    text = DEFAULT.read_text().replace("value: ['8', '8',", "value: ['1000000000', '8',")
    with pytest.raises(BusError) as caught:
        bus.call("scheduler", "load_conf", {"text": text})
    problem = caught.value.detail["errors"][0]
    assert caught.value.code == "invalid_request"
    assert problem["field"] == "experimental_params.stir.value.0" and "0..98" in problem["message"]
    assert problem["line"] == line_of(text, "value: ['1000000000'")
    assert path.read_bytes() == before


def test_a_conf_file_out_of_range_stops_the_service_at_start_with_file_line_and_field(tmp_path, broker, device):
    text = DEFAULT.read_text().replace("value: ['4095', '4095', '4095', '4095', '4095', '4095', '4095', '4095', "
                                       "'4095', '4095', '4095', '4095', '4095', '4095', '4095', '4095']",
                                       "value: ['4095', '5000', '4095', '4095', '4095', '4095', '4095', '4095', "
                                       "'4095', '4095', '4095', '4095', '4095', '4095', '4095', '4095']", 1)
    assert text != DEFAULT.read_text()
    path = tmp_path / "conf.yml"
    path.write_text(text)
    env = dict(os.environ, BENCHBUS_DEVICE=device, BENCHBUS_BROKER_HOST=broker.host,
               BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_SCHEDULER_CONF_PATH=str(path))
    done = subprocess.run([sys.executable, "-m", "benchbus_scheduler.service"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert f"{path}:{line_of(text, '5000')}: experimental_params.od_led.value.1: od_led value 1: '5000'" in done.stderr
    assert path.read_text() == text


BOMB_LEVELS = 9


def alias_bomb() -> str:
    """The issue's conf: a few hundred bytes of nested aliases that expand to 9**9 strings when loaded."""
    lines = ["experimental_params:", "  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, BOMB_LEVELS):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\nbroadcast_timing: 20\n"


def test_an_alias_bomb_is_refused_by_load_conf_and_get_config_stays_the_running_conf(rig, bus):
    _emu, start = rig
    _svc, path = start(fast(DEFAULT.read_text(), LONG), start_paused=True)
    before = path.read_bytes()
    bomb = alias_bomb()
    assert len(bomb.encode()) < 600
    with pytest.raises(BusError) as caught:
        bus.call("scheduler", "load_conf", {"text": bomb}, timeout=10)
    assert caught.value.code == "invalid_request"
    problem = caught.value.detail["errors"][0]
    assert problem["line"] == 2 and "anchors are not allowed (&a0)" in problem["message"]
    assert path.read_bytes() == before
    config = bus.call("scheduler", "get_config", timeout=10)["config"]
    assert set(config["experimental_params"]) == {"od_90", "od_135", "od_led", "temp", "stir", "pump", "lxml"}


def test_a_bombed_conf_file_stops_the_service_at_start(tmp_path, broker, device):
    path = tmp_path / "conf.yml"
    path.write_text(alias_bomb())
    env = dict(os.environ, BENCHBUS_DEVICE=device, BENCHBUS_BROKER_HOST=broker.host,
               BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_SCHEDULER_CONF_PATH=str(path))
    done = subprocess.run([sys.executable, "-m", "benchbus_scheduler.service"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert f"{path}:2: (top level): YAML refused: anchors are not allowed (&a0)" in done.stderr
