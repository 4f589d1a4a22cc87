"""The Smoothieboard's line protocol as the OT-2 driver speaks it (opentrons-ot2.md 1.2-1.6), all pure: how a
line is framed and its numbers written, how a reply is stripped and classified, the reply parsers, and the errors
a reply can carry."""
from __future__ import annotations

import re

AXES: tuple[str, ...] = ("X", "Y", "Z", "A", "B", "C")
ALPHABETICAL: tuple[str, ...] = ("A", "B", "C", "X", "Y", "Z")  # the order the OT-2 driver writes axis letters in
ACK = b"ok\r\nok\r\n"
TERMINATOR = "\r\n\r\n"


# -- errors ---------------------------------------------------------------------------------------------------------

class SmoothieError(Exception):
    """The board said something other than a plain ack. `raw` is its text, for the reply's detail."""

    def __init__(self, message: str, raw: str = "", command: str = ""):
        super().__init__(message)
        self.message = message
        self.raw = raw
        self.command = command


class AlarmResponse(SmoothieError):
    """The reply contains `alarm` (e.g. `ALARM: Hard limit +X`): the board is halted."""


class ErrorResponse(SmoothieError):
    """The reply contains `error`."""


class AlarmLock(ErrorResponse):
    """`error:Alarm lock`: the board was already halted, so the command did not run."""


class NoResponse(SmoothieError):
    """No ack within the timeout after every retry (the board is silent, or the port is gone)."""


class ParseError(SmoothieError):
    """A reply that does not have the expected shape; `raw` holds it."""


class Halted(SmoothieError):
    """A halt (the kill input) interrupted this command."""


class MotionAlarm(SmoothieError):
    """An alarm during a move or probe; the recovery (M999, G28.6, home the named axis) has run."""

    def __init__(self, message: str, raw: str, command: str, axis: str | None, homed_axes: list[str]):
        super().__init__(message, raw, command)
        self.axis = axis
        self.homed_axes = homed_axes


# -- framing and parsing (pure) ---------------------------------------------------------------------------------------

def fmt(value: float) -> str:
    """A number as the OT-2 driver writes it: rounded to 3 decimals, no trailing zeros (100, 100.3, 0.005)."""
    text = f"{round(float(value), 3):.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def axes_words(values: dict[str, float]) -> str:
    return " ".join(f"{axis}{fmt(values[axis])}" for axis in ALPHABETICAL if axis in values)


def frame(command: str) -> bytes:
    """`G28.2 X` -> b'G28.2 X \\r\\n\\r\\n'; the empty command (the boot ping) -> b'\\r\\n\\r\\n'."""
    return ((command + " ") if command else "").encode("ascii") + TERMINATOR.encode("ascii")


def strip_response(raw: bytes | str, command: str) -> str:
    """The board's text: acks removed, the echoed command removed, line breaks removed, trimmed (reference 1.2)."""
    text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else raw
    text = text.replace(ACK.decode(), "")
    if command:
        text = text.replace(command, "")
        for token in command.split():
            if len(token) > 1:  # single letters (L, R) prefix data and must stay
                text = text.replace(token, "")
    return text.replace("\r", "").replace("\n", "").strip()


def classify(text: str, command: str) -> SmoothieError | None:
    """The error a stripped reply carries, if any: alarm before error, case-insensitive (reference 1.4)."""
    if not text:
        return None
    first_of_reply, first_of_command = text.split()[0], (command.split() or [""])[0]
    if first_of_command and first_of_reply == first_of_command:
        return None  # an echo of the command is not an error
    lowered = text.lower()
    if "alarm lock" in lowered:
        return AlarmLock(text, text, command)
    if "alarm" in lowered:
        return AlarmResponse(text, text, command)
    if "error" in lowered:
        return ErrorResponse(text, text, command)
    return None


_PAIR = re.compile(r"(\S+):(\S+)")


def parse_position(text: str) -> dict[str, float]:
    """`ok MCS: X:418.0000 Y:353.0000 Z:218.0000 A:218.0000 B:19.0000 C:19.0000` -> {X: 418.0, ...}."""
    pairs = _PAIR.findall(text)
    values: dict[str, float] = {}
    for key, value in pairs:
        key = key.title()
        if key in AXES:
            try:
                values[key] = round(float(value), 3)
            except ValueError:
                raise ParseError(f"position value {key}:{value} is not a number", text) from None
    if len(pairs) < 6 or set(values) != set(AXES):
        raise ParseError("position reply does not list all six axes", text)
    return values


def parse_switches(text: str) -> dict[str, bool]:
    """`X_max:0 ... C_max:0 pins- (XL)P1.24:0 ... Probe: 0` -> {X: False, ..., Probe: False}."""
    found: dict[str, bool] = {}
    for key, value in _PAIR.findall(text.replace("Probe: ", "Probe:")):
        if "max" not in key and "Probe" not in key:
            continue
        name = key.split("_")[0]
        if value not in ("0", "1"):
            raise ParseError(f"switch {key}:{value} is neither 0 nor 1", text)
        found[name] = value == "1"
    if set(found) != set(AXES) | {"Probe"}:
        raise ParseError("switch reply does not list X, Y, Z, A, B, C and Probe", text)
    return found


def parse_homed(text: str) -> dict[str, bool]:
    """`X:1 Y:0 Z:0 A:0 B:0 C:0` -> {X: True, Y: False, ...}; all six keys are required."""
    found: dict[str, bool] = {}
    for key, value in _PAIR.findall(text):
        if key in AXES and value in ("0", "1"):
            found[key] = value == "1"
    if set(found) != set(AXES):
        raise ParseError("homing-status reply does not list all six axes as 0 or 1", text)
    return found


def parse_version(text: str) -> str:
    """`Build version: edge-66ec883NOMSD, Build date: ...` -> `edge-66ec883`."""
    if ":" not in text or "," not in text.split(":", 1)[1]:
        raise ParseError("version reply has no 'Build version: <version>,'", text)
    version = text.split(":", 1)[1].split(",", 1)[0].strip().replace("NOMSD", "")
    if not version:
        raise ParseError("version reply names no version", text)
    return version


def parse_pipette_memory(text: str, mount_letter: str) -> str:
    """`L:<64 hex>` -> the ASCII text stored, cut at the first 0x00 or 0xFF."""
    prefix = f"{mount_letter}:"
    if not text.startswith(prefix):
        raise ParseError(f"pipette memory reply does not start with {prefix}", text)
    digits = text[len(prefix):].strip()
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        raise ParseError("pipette memory reply is not hex", text) from None
    for stop in (b"\x00", b"\xff"):
        data = data.split(stop, 1)[0]
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ParseError("pipette memory is not ASCII", text) from None


def normalise_model(model: str) -> str:
    """The driver's fix-ups: no `_v` -> `_v1`; `_v13` -> `_v1.3`."""
    if "_v" not in model:
        return model + "_v1"
    if model.endswith("_v13"):
        return model[:-1] + ".3"
    return model


def unsafe_to_repeat(command: str) -> bool:
    """A line that must never be sent twice: a home (homing twice, PR #4553) or a relative move (moves twice)."""
    words = command.split()
    return "G28.2" in words or "G91" in words or "G38.2" in words


def travel_check(targets: dict[str, float], travel: dict[str, tuple[float, float]]) -> list[str]:
    """Problems with targets outside an axis's travel (empty when all are inside)."""
    problems = []
    for axis, value in targets.items():
        low, high = travel[axis]
        if not (low <= value <= high):
            problems.append(f"{axis}={fmt(value)} is outside {axis}'s travel {fmt(low)}..{fmt(high)} mm")
    return problems
