"""The SAMD21 line emulator on its own, spoken to in raw bytes through pyserial's socket:// (as the bridge does)."""
from __future__ import annotations

import time

import pytest
import serial

from benchbus.testing import wait_until
from benchbus_samd.driver import LineSettings, SamdLine, TransactionFailed
from benchbus_samd.emulator.line import SamdEmulator
from benchbus_samd.emulator.wire import LineTiming


@pytest.fixture
def emu():
    emulator = SamdEmulator(LineTiming.fast(), adc_sample_s=0.43e-3)
    emulator.port = emulator.start_tcp(0)
    yield emulator
    emulator.close()


@pytest.fixture
def raw(emu):
    port = serial.serial_for_url(f"socket://127.0.0.1:{emu.port}", timeout=0.5)
    yield port
    port.close()


@pytest.fixture
def line(emu):
    timing = emu.timing
    driver = SamdLine(LineSettings(url=f"socket://127.0.0.1:{emu.port}", baudrate=timing.baudrate,
                                   reply_delay_s=timing.reply_delay_s, hold_s=timing.hold_s,
                                   hold_overrides={"stir": timing.stir_hold_s},
                                   # the emulator's output thread can be descheduled mid-reply on a loaded machine
                                   # (a real board cannot): neither its pause nor its lateness may pass for a reply
                                   # that ended or never came (seen with four test workers: 46 of 88 bytes by the
                                   # 0.3 s margin; seen in CI: 46 of 91 by a 0.5 s gap). No test here is about the
                                   # line's timeouts: a truncated reply costs its test the gap once.
                                   timeout_margin_s=3.0, reply_gap_s=2.0))
    driver.open()
    yield driver
    driver.close()


def read_reply(port: serial.SerialBase) -> bytes:
    return port.read_until(b",end")


def test_the_documented_od_90_exchange(emu, raw):
    raw.write(b"od_90r,500,_!")
    reply = read_reply(raw)
    assert reply.startswith(b"od_90b,") and reply.endswith(b",end") and reply.count(b",") == 17
    assert emu.staged("od_90") == ["500"] and emu.applied("od_90") == ["1000"]  # staged, not yet applied
    time.sleep(emu.timing.hold_s * 3)  # the host's side of the turnaround (the protocol's wait, not a condition)
    raw.write(b"od_90a,,_!")
    assert emu.wait_applied("od_90", ["500"])


def test_an_a_sent_while_the_board_still_holds_the_line_is_corrupted():
    # The stir board holds the line 1 s after its reply (300 ms on the rig; not the fast timing's 5 ms, which a loaded
    # machine can let pass between reading the reply and writing the `a`: then the `a` rightly arrives intact).
    timing = LineTiming(baudrate=230400, reply_delay_s=0.002, hold_s=0.002, stir_hold_s=1.0)
    with SamdEmulator(timing) as emu:
        raw = serial.serial_for_url(f"socket://127.0.0.1:{emu.start_tcp(0)}", timeout=5)
        stage, ack = b"stiri," + b"0," * 16 + b"_!", b"stira," + b"," * 16 + b"_!"
        raw.write(stage)
        assert read_reply(raw).endswith(b",end")
        raw.write(ack)  # at once, well inside the hold
        wait_until(lambda: sum(len(e.data) for e in emu.wire if e.source == "host") == len(stage) + len(ack), 5,
                   "the `a` reached the line")
        raw.close()
    assert emu.applied("stir") == ["8"] * 16  # the collided `a` never reached the board
    assert emu.acks("stir") == 0
    assert any(event.corrupted for event in emu.wire if event.source == "host")


def test_unknown_addresses_and_wrong_field_counts_get_no_answer(emu, raw):
    raw.timeout = 0.1
    raw.write(b"lxmli," + b"1," * 16 + b"_!")
    assert raw.read(100) == b""
    raw.write(b"tempr,1,2,3,_!")  # temp expects 17 fields
    assert raw.read(100) == b""
    assert emu.staged("temp") is None
    assert len(emu.ignored) == 2


def test_od_boards_answer_from_their_last_completed_sweep(line, emu):
    line.transact("od_135", "r", ["100000"], 2, 17)  # 43 s per vial: no vial completes during the test
    first = line.transact("od_135", "r", ["100000"], 2, 17).values
    second = line.transact("od_135", "r", ["100000"], 2, 17).values
    assert first == second  # no averaging completed in between: the same cached values


def test_pumps_run_as_programmed(line, emu):
    programs = ["--"] * 48
    programs[0] = "30"  # influx of vial 0 once for 30 s
    programs[16] = "2.5|10"  # efflux of vial 0: chemostat, 2.5 s every 10 s
    programs[32] = "10|3|2"  # IN2 of vial 0: IPP 3, solenoid 2 at 10 Hz
    reply = line.transact("pump", "i", programs, 49, 49)
    assert reply.kind == "echo" and reply.values == programs
    # the programs start at the `a`, which the emulator's thread takes in a moment after transact returns
    wait_until(lambda: emu.pumps_running(time.monotonic()) == [0, 16, 32], 5, "the programs applied")
    now = time.monotonic()
    assert emu.pumps_running(now + 5) == [0, 32]  # the chemostat pump is in its off phase
    assert emu.pumps_running(now + 31) == [16, 32]  # the one-off run ended; the chemostat's next period

    started = emu.pump_programs()[16].start
    again = ["--"] * 48
    again[16] = "2.5|10"  # the DPU re-sends its chemostat every cycle: the firmware keeps the phase
    again[0] = "0"  # and stops the influx
    line.transact("pump", "r", again, 49, 49)
    wait_until(lambda: emu.pump_programs()[0] is None, 5, "the influx stopped")
    assert emu.pump_programs()[16].start == started
    assert emu.pump_programs()[0] is None
    assert emu.pump_programs()[32].spec == "10|3|2"  # `--` left it alone


def test_temperature_follows_the_setpoint_first_order(emu, line):
    board = emu.boards["temp"]
    board.tau_s = 10.0
    line.transact("temp", "r", ["1000"] * 16, 17, 17)
    # the board applies at the `a`, which the emulator's thread takes in a moment after transact returns
    wait_until(lambda: board.applied[0] == "1000", 5, "the setpoint applied")
    now = time.monotonic()
    start = board.readings(now)
    one_tau = board.readings(now + 10.0)
    for s, r in zip(start, one_tau, strict=True):
        assert abs((r - 1000) - (s - 1000) * 0.3679) < 2  # e^-1 of the way left after one time constant
    line.transact("temp", "r", ["4095"] * 16, 17, 17)  # heater off: back towards ambient, never to 4095
    assert max(board.readings(time.monotonic() + 1000)) <= board.ambient_raw


@pytest.mark.parametrize("fault,kind", [("truncated", "no_terminator"), ("no_end", "no_terminator"),
                                        ("field_count", "field_count_in"), ("stray_burst", "garbled")])
def test_faults_are_what_they_say_on_the_wire(emu, line, fault, kind):
    emu.inject("od_90", fault, count=1)
    with pytest.raises(TransactionFailed) as caught:
        line.transact("od_90", "r", ["1000"], 2, 17)
    assert caught.value.kind == kind
    assert line.transact("od_90", "r", ["1000"], 2, 17).kind == "data"  # transient: the next one is fine


def test_probability_faults_fire_at_about_their_rate(emu, line):
    emu.inject("od_led", "bad_char", probability=0.5)
    failures = 0
    for _ in range(40):
        try:
            line.transact("od_led", "r", ["4095"] * 16, 17, 17)
        except TransactionFailed as failure:
            assert failure.kind == "bad_response_char"
            failures += 1
    assert 5 <= failures <= 35


def test_physical_limit_counts_bytes_and_turnarounds():
    timing = LineTiming(baudrate=9600)
    with SamdEmulator(timing) as emu:
        emu.port = emu.start_tcp(0)
        driver = SamdLine(LineSettings(url=f"socket://127.0.0.1:{emu.port}"))
        driver.open()
        reply = driver.transact("stir", "r", ["8"] * 16, 17, 17)
        driver.close()
        frame = b"stirr," + b"8," * 16 + b"_!"
        ack = b"stira," + b"," * 16 + b"_!"
        expected = (len(frame) + len(reply.raw) + len(ack)) * 10 / 9600 + 0.1 + 0.3
        assert emu.physical_limit_s() == pytest.approx(expected)
