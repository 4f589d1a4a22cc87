"""A port that vanishes between a board's reply and the bridge's `a` (a cable pulled, the emulator's /drop): the
board never receives the `a`, so the transaction must not be reported applied. Over a socket the write of that
`a` still succeeds (the peer's close only shows on the next read), which once let the bridge report a command
applied that no board applied (tests/system/test_faults.py, a stir command right at the samd port drop)."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from benchbus_samd.driver import LineSettings, PortLost, SamdLine
from benchbus_samd.emulator.line import SamdEmulator
from benchbus_samd.emulator.wire import LineTiming

# The stir board holds the line this long after its reply; the port is pulled inside that hold, before the `a`.
HOLD_S = 2.0
TIMING = replace(LineTiming.fast(), stir_hold_s=HOLD_S)
STIR = ["17", "0"] + ["8"] * 14


@pytest.fixture(params=["socket", "pty"])
def emulator_and_line(request, tmp_path):
    emu = SamdEmulator(TIMING, temp_tau_s=5.0)
    url = f"socket://127.0.0.1:{emu.start_tcp(0)}" if request.param == "socket" else emu.start_pty(tmp_path / "tty")
    line = SamdLine(LineSettings(url=url, baudrate=TIMING.baudrate, reply_delay_s=TIMING.reply_delay_s,
                                 hold_s=TIMING.hold_s, hold_overrides={"stir": HOLD_S}, timeout_margin_s=0.5))
    line.open()
    yield emu, line
    line.close()
    emu.close()


def await_condition(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def stir_in_thread(line: SamdLine) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["reply"] = line.transact("stir", "r", STIR, 17, 17)
        except PortLost as lost:
            outcome["lost"] = lost
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def reply_delivered(emu: SamdEmulator) -> bool:
    replies = [e for e in emu.wire if e.source == "board" and e.param == "stir"]
    return bool(replies) and time.monotonic() > replies[-1].end + 0.05


def test_a_port_pulled_before_the_a_is_reported_lost_not_applied(emulator_and_line):
    emu, line = emulator_and_line
    thread, outcome = stir_in_thread(line)
    await_condition(lambda: reply_delivered(emu), 10)
    emu.drop_port(down_s=30)  # the bridge is waiting out the board's hold: its `a` goes into a pulled cable
    thread.join(HOLD_S + 10)
    assert not thread.is_alive()
    assert emu.frames("stir", type="a") == []  # the board never heard the `a` ...
    assert emu.applied("stir") != STIR
    assert "reply" not in outcome, "reported applied, never applied by the board"  # ... so it is not applied
    assert isinstance(outcome.get("lost"), PortLost)


def test_without_the_pull_the_same_transaction_is_applied(emulator_and_line):
    emu, line = emulator_and_line
    thread, outcome = stir_in_thread(line)
    thread.join(HOLD_S + 10)
    assert outcome["reply"].kind == "echo"
    await_condition(lambda: emu.applied("stir") == STIR, 5)
