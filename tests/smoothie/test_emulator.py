"""The emulator speaks the real board's bytes (opentrons-ot2.md 1.2, 1.5-1.7), checked over pyserial directly."""
import time

import pytest
import serial

from benchbus_smoothie.emulator.board import SmoothieEmulator


def read_until(port, marker: bytes, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data and time.monotonic() < deadline:
        data += port.read(1)
    return data


def settle(port, quiet: float = 0.1, first: float = 10.0) -> bytes:
    """Everything that arrives until the line is quiet, once the answer has begun (every line gets at least an
    `ok`, so the first byte is awaited however slowly a loaded machine schedules the emulator)."""
    port.timeout = first
    data = port.read(1)
    port.timeout = quiet
    while True:
        chunk = port.read(4096)
        if not chunk:
            return data
        data += chunk


@pytest.fixture
def emu():
    emulator = SmoothieEmulator(speedup=400, baud=None)
    emulator.start_tcp()
    yield emulator
    emulator.stop()


@pytest.fixture
def port(emu):
    p = serial.serial_for_url(emu.url, timeout=2)
    yield p
    p.close()


def send(port, line: str) -> str:
    port.reset_input_buffer()
    port.write(f"{line} \r\n\r\n".encode())
    return settle(port).decode()


def test_every_line_gets_an_ok_even_empty_ones(port):
    assert send(port, "G90") == "ok\r\n" * 4  # one content line and three empty ones after CR -> LF
    port.write(b"\r\n")
    assert settle(port) == b"ok\r\nok\r\n"


def test_relative_moves_and_m400_waits_for_the_motion(emu, port):
    send(port, "G28.2 ABCZ")
    send(port, "G91 G0 Z-10 G0 Z-5 G90")
    port.write(b"M400 \r\n\r\n")
    read_until(port, b"ok\r\n")
    assert emu.position["Z"] == pytest.approx(203.0)  # 220 - 2 retract - 15, reached when M400 is acked
    assert "ok MCS: X:0.0000 Y:0.0000 Z:203.0000 A:218.0000 B:18.0000 C:18.0000" in send(port, "M114.2")


def test_hard_limit_halts_until_m999_and_allowed_codes_still_run(emu, port):
    send(port, "G28.2 X")
    reply = send(port, "G0 X430")  # past the switch at 421: acked (queued), then the alarm when X gets there
    assert reply.startswith("ok\r\n") and "ALARM: Hard limit +X\r\n" in reply
    assert emu.position["X"] == pytest.approx(421.0)  # stopped at the switch
    assert send(port, "G0 X100").startswith("error:Alarm lock\r\n")
    assert "MCS:" in send(port, "M114.2")  # M114 is allowed while halted
    assert send(port, "M999").startswith("WARNING: After HALT you should HOME as position is currently unknown\r\nok")
    assert send(port, "G0 X100") == "ok\r\n" * 4


def test_homing_without_a_switch_and_probe_miss_alarm_and_clear_flags(emu, port):
    send(port, "G28.2 Z")
    assert send(port, "G28.6").startswith("X:0 Y:0 Z:1 A:0 B:0 C:0")
    emu.disconnected_switches.add("A")
    assert send(port, "G28.2 A").startswith("ALARM: Homing fail")
    send(port, "M999")
    assert send(port, "G28.6").startswith("X:0 Y:0 Z:0 A:0 B:0 C:0")
    send(port, "G28.2 Z")
    assert send(port, "G38.2 F420 Z100").startswith("ALARM: Probe fail")
    send(port, "M999")
    send(port, "G28.2 Z")  # the miss left Z at 100
    emu.probe_surfaces["Z"] = 150.0
    assert send(port, "G38.2 F420 Z100").startswith("[PRB:0.000,0.000,150.000:1]")


def test_kill_input_and_ctrl_x_halt(emu, port):
    send(port, "G90")  # the board has its connection
    emu.kill()
    assert settle(port).startswith(b"ALARM: Kill button pressed")
    assert send(port, "G0 X1").startswith("error:Alarm lock")
    send(port, "M999")
    port.write(b"\x18")
    assert settle(port).startswith(b"ALARM")
    assert emu.halted.is_set()


def test_pipette_memory_reads_and_writes(emu, port):
    reply = send(port, "M369 L")
    assert reply.startswith("L:" + b"P3HSV2120200101".ljust(32, b"\x00").hex())
    emu.set_pipette("right", None)
    assert send(port, "M371 R").startswith("error:no R instrument found")
    send(port, "M372 L " + b"p10_single_v1.5".hex())
    assert bytes.fromhex(send(port, "M371 L").split()[0][2:]).rstrip(b"\x00") == b"p10_single_v1.5"


def test_switches_version_and_settings_replies(emu, port):
    send(port, "G28.2 Y")  # Y does not retract: it rests on its switch
    assert send(port, "M119").startswith("X_max:0 Y_max:1 Z_max:0 A_max:0 B_max:0 C_max:0 pins- ")
    assert send(port, "version").startswith("Build version: edge-66ec883NOMSD, Build date:")
    assert send(port, "M92 B3200").startswith("X:80.000000 Y:80.000000 Z:400.000000 A:400.000000 B:3200.000000")
    assert send(port, "M365.0 Z172.15").startswith("Z updated 172.15")
    assert send(port, "M365.1").startswith("Error, no axis specified")
    assert send(port, "frobnicate").startswith("error:Unsupported command - frobnicate")


def test_faults_silence_garble_drop_and_close(emu, port):
    emu.inject("silence")
    assert send(port, "M114.2") == ""
    emu.inject("drop_ok")
    assert "ok" not in send(port, "M114.2").replace("ok MCS", "")
    emu.inject("garble")
    garbled = send(port, "G28.6")
    assert "X:0" not in garbled and garbled.endswith("ok\r\n")
    emu.inject("close")
    port.write(b"M114.2 \r\n\r\n")
    with pytest.raises(serial.SerialException):
        for _ in range(20):
            port.read(1)


def test_echo_and_pty_transport():
    emulator = SmoothieEmulator(speedup=400, baud=None, echo=True)
    path = emulator.start_pty()
    try:
        with serial.Serial(path, 115200, timeout=2) as port:
            assert send(port, "G28.6").startswith("G28.6\r\nX:0 Y:0 Z:0 A:0 B:0 C:0")
    finally:
        emulator.stop()
