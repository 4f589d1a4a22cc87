"""The pure parts of the driver: framing, stripping, classification, the reply parsers (opentrons-ot2.md 1.2-1.6)."""
import pytest

from benchbus_smoothie.gcode import (AlarmLock, AlarmResponse, ErrorResponse, ParseError, classify, fmt, frame,
                                     normalise_model, parse_homed, parse_pipette_memory, parse_position, parse_switches,
                                     parse_version, strip_response, travel_check, unsafe_to_repeat)
from benchbus_smoothie.robot import expand_home_axes


def test_frame_ends_every_line_with_space_and_two_crlf():
    assert frame("G28.2 X") == b"G28.2 X \r\n\r\n"
    assert frame("") == b"\r\n\r\n"


def test_numbers_are_written_like_the_ot2_driver():
    assert [fmt(100.0), fmt(100.3), fmt(0.005), fmt(-0.0001), fmt(24000)] == ["100", "100.3", "0.005", "0", "24000"]


def test_strip_removes_acks_echo_and_line_breaks_but_keeps_mount_letters():
    raw = b"M114.2\r\n\r\nok MCS: A:0.0 B:0.0 C:0.0 X:0.0 Y:0.0 Z:0.0\r\n\r\nok\r\nok\r\n"
    assert strip_response(raw, "M114.2") == "ok MCS: A:0.0 B:0.0 C:0.0 X:0.0 Y:0.0 Z:0.0"
    assert strip_response(b"L:5032\r\nok\r\nok\r\n", "M369 L") == "L:5032"


def test_position_parser_needs_all_six_axes_and_rounds():
    text = "ok MCS: X:418.0000 Y:353.0000 Z:218.0000 A:218.0000 B:19.12345 C:19.0000"
    assert parse_position(text) == {"X": 418.0, "Y": 353.0, "Z": 218.0, "A": 218.0, "B": 19.123, "C": 19.0}
    with pytest.raises(ParseError) as err:
        parse_position("ok MCS: X:1 Y:2")
    assert err.value.raw == "ok MCS: X:1 Y:2"


def test_switch_parser_reads_both_firmware_variants():
    real = ("X_max:0 Y_max:0 Z_max:0 A_max:1 B_max:0 C_max:0 pins- (XL)P1.24:0 (YL)P1.26:0 (ZL)P1.28:0 "
            "(AL)P1.25:1 (BL)P1.27:0 (CL)P1.29:0 Probe: 0")
    assert parse_switches(real) == {"X": False, "Y": False, "Z": False, "A": True, "B": False, "C": False,
                                    "Probe": False}
    variant = "X_max:0 Y_max:0 Z_max:0 A_max:0 B_max:0 C_max:0 _pins (XL)2.01:0 Probe: 1"
    assert parse_switches(variant)["Probe"] is True
    with pytest.raises(ParseError):
        parse_switches("X_max:0 Probe: 0")


def test_homed_version_and_pipette_memory_parsers():
    assert parse_homed("X:1 Y:0 Z:0 A:0 B:0 C:1 ") == {"X": True, "Y": False, "Z": False, "A": False, "B": False,
                                                       "C": True}
    with pytest.raises(ParseError):
        parse_homed("X:1 Y:0")
    assert parse_version("Build version: edge-66ec883NOMSD, Build date: Jan 28 2018, MCU: LPC1769") == "edge-66ec883"
    with pytest.raises(ParseError):
        parse_version("garbage")
    memory = "L:" + b"P3HSV2120200101".ljust(32, b"\x00").hex()
    assert parse_pipette_memory(memory, "L") == "P3HSV2120200101"
    assert parse_pipette_memory("R:" + (b"p10" + b"\xff" * 29).hex(), "R") == "p10"
    with pytest.raises(ParseError):
        parse_pipette_memory("R:zz", "R")
    assert normalise_model("p10_single") == "p10_single_v1"
    assert normalise_model("p300_multi_v13") == "p300_multi_v1.3"


def test_classification_alarm_before_error_and_echo_is_not_an_error():
    assert isinstance(classify("ALARM: Hard limit +X", "M400"), AlarmResponse)
    assert isinstance(classify("error:Alarm lock", "G0 X1"), AlarmLock)
    assert isinstance(classify("error:no L instrument found", "M369 L"), ErrorResponse)
    assert classify("M369 error-looking echo", "M369 L") is None
    assert classify("WARNING: After HALT you should HOME", "M999") is None


def test_homing_expansion_and_unsafe_repeats_and_travel():
    assert expand_home_axes(["Y"]) == ["Z", "A", "X", "Y"]
    assert expand_home_axes(["C"]) == ["C"]
    assert unsafe_to_repeat("M907 X1 G4 P0.005 G28.2 X") and unsafe_to_repeat("G91 G0 Y-3 G90")
    assert not unsafe_to_repeat("G0 X100")
    assert travel_check({"X": 419}, {"X": (0, 418)}) == ["X=419 is outside X's travel 0..418 mm"]
