"""Boards that release the line later than their nominal hold (firmware delay() after a buffered print, UART
latency): with the bridge's release margin every command is applied; without it the `a` collides and is lost."""
from __future__ import annotations

import pytest

from benchbus_samd.emulator.line import SamdEmulator
from benchbus_samd.emulator.wire import LineTiming


LATE_S = 0.020


def emulator_releasing_late(late_s: float):
    emu = SamdEmulator(LineTiming.fast(), temp_tau_s=5.0, late_release_s=late_s)
    emu.url_for_bridge = f"socket://127.0.0.1:{emu.start_tcp(0)}"
    return emu


@pytest.fixture
def late_emulator():
    emu = emulator_releasing_late(LATE_S)
    yield emu
    emu.close()


@pytest.fixture
def very_late_emulator():
    """Late by more than any scheduling delay of a loaded machine: without the margin, a delayed bridge thread
    could otherwise send its `a` after a 20 ms late release and hide the collision the test shows."""
    emu = emulator_releasing_late(0.25)
    yield emu
    emu.close()


def changing_commands(bus, emu, rounds: int, settle_s: float) -> tuple[int, int]:
    """The bus call returns once the bridge wrote its `a`; the emulator's thread takes it a moment later, so each
    command counts as applied if the board shows it within `settle_s` (seen in CI: 22 of 24 read too early)."""
    applied = total = 0
    for round_ in range(rounds):
        for param, values in (("stir", [str(8 + round_ % 3)] * 16), ("temp", [str(4000 - round_)] * 16)):
            bus.call("samd", "transact", {"param": param, "type": "r", "values": values, "fields_out": 17,
                                          "fields_in": 17}, timeout=5)
            total += 1
            applied += emu.wait_applied(param, values, settle_s)
        pump = ["--"] * 48
        pump[round_ % 16] = "1"
        bus.call("samd", "transact", {"param": "pump", "type": "i", "values": pump, "fields_out": 49,
                                      "fields_in": 49}, timeout=5)
        total += 1
        applied += emu.wait_applied("pump", pump, settle_s)
    return applied, total


def test_every_changing_command_is_applied_with_a_release_20_ms_late(late_emulator, start_bridge, bus):
    start_bridge(late_emulator)
    applied, total = changing_commands(bus, late_emulator, 8, settle_s=5.0)
    assert applied == total


def test_without_the_margin_a_late_release_loses_commands(very_late_emulator, start_bridge, bus):
    # tight margins: each collision costs the next transaction a timeout, and this test counts no attempts
    start_bridge(very_late_emulator, release_margin_s=0.0, timeout_margin_s=0.3, reply_gap_s=0.03)
    applied, total = changing_commands(bus, very_late_emulator, 8, settle_s=0.3)
    assert applied < total  # the knob bites: the bridge said ok, the board never applied


def test_repeated_values_go_at_the_nominal_turnaround(tcp_emulator, start_bridge, bus):
    """The default cycle repeats its values: those `a`s do not wait the margin (the cycle stays at the limit)."""
    start_bridge(tcp_emulator, release_margin_s=0.2)
    request = {"param": "stir", "type": "r", "values": ["8"] * 16, "fields_out": 17, "fields_in": 17}
    first = bus.call("samd", "transact", request, timeout=5)
    repeated = bus.call("samd", "transact", request, timeout=5)
    assert first["duration_ms"] >= 200  # unknown to the bridge: it waits the margin
    assert repeated["duration_ms"] < 150
