"""Reading what the Smoothieboard emulator received: the plunger strokes that draw liquid in."""
from __future__ import annotations

import re
from dataclasses import dataclass

CODE = re.compile(r"(?=\b[GM]\d)")
WORD = re.compile(r"([XYZABC])(-?\d+(?:\.\d+)?)")


@dataclass
class Stroke:
    axis: str
    start: float
    end: float
    line: int

    @property
    def distance(self) -> float:
        return self.end - self.start


def codes(line: str) -> list[str]:
    return [part.strip() for part in CODE.split(line) if part.strip()]


def plunger_strokes(lines: list[str], axis: str) -> list[Stroke]:
    """Every move of one plunger axis, one per line (a backlash pair `G0 B+0.3 G0 B` counts as its final target),
    with homing (G28.2) marked as a stroke of end NaN."""
    strokes: list[Stroke] = []
    position: float | None = None
    relative = False
    for number, line in enumerate(lines):
        target = None
        for code in codes(line):
            if code.startswith("G91"):
                relative = True
            elif code.startswith("G90"):
                relative = False
            elif code.startswith("G28.2") and axis in code[5:]:
                strokes.append(Stroke(axis, position if position is not None else float("nan"), float("nan"), number))
                position, target = None, None
            elif re.match(r"G0\b", code) and not relative:
                for letter, value in WORD.findall(code):
                    if letter == axis:
                        target = float(value)
        if target is not None:
            if position is not None:
                strokes.append(Stroke(axis, position, target, number))
            position = target
    return strokes


def intake_strokes(lines: list[str], axis: str, bottom: float) -> list[Stroke]:
    """Upward plunger strokes that are neither the approach of a home (Opentrons' fast home moves the plunger up to
    just short of its switch, then homes it) nor the return to `bottom` (the plunger's empty position, after a
    blow-out): what aspirating (and an air gap) looks like on the board."""
    strokes = plunger_strokes(lines, axis)
    intakes = []
    for index, stroke in enumerate(strokes):
        followed_by_home = index + 1 < len(strokes) and strokes[index + 1].end != strokes[index + 1].end
        if stroke.distance > 1e-6 and not followed_by_home and abs(stroke.end - bottom) > 1e-3:
            intakes.append(stroke)
    return intakes
