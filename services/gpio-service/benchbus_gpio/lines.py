"""The line map: which BCM offset is which line, with the OT-2's as default, and the board-revision differences.

The OT-2 (reference §2): the original board ("2.1", OG) senses door and window on one line (BCM20); the refresh
boards (A, B, C) have a separate front-door switch (BCM12) and top-window switch (BCM16). The revision is read
from two input bits (BCM17, BCM27) where the device tree says they are wired.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

OG = "2.1"
REVISIONS = (OG, "A", "B", "C")
UNKNOWN = "UNKNOWN"

# (rev_0, rev_1) levels -> revision
_REVISION_BY_BITS = {(1, 1): OG, (0, 1): "A", (1, 0): "B", (0, 0): "C"}

OUTPUTS = ("frame_leds", "blue_button", "green_button", "red_button", "halt", "audio_enable", "isp", "reset")
INPUTS = ("button_input", "window_door_sw", "door_sw_filt", "window_sw_filt")
REV_BITS = ("rev_0", "rev_1")

_SEPARATE_SWITCHES = {"door_sw_filt": 12, "window_sw_filt": 16}


class LineMap(BaseModel):
    """Offsets of every line on the chip (BCM numbers on a Raspberry Pi). The defaults are the OT-2's."""

    model_config = ConfigDict(extra="forbid")
    frame_leds: int = Field(6, ge=0, description="rail lights; high = on")
    blue_button: int = Field(13, ge=0)
    green_button: int = Field(19, ge=0)
    red_button: int = Field(26, ge=0)
    halt: int = Field(18, ge=0, description="Smoothie halt/kill; idle high, pulse low")
    audio_enable: int = Field(21, ge=0)
    isp: int = Field(23, ge=0, description="Smoothie ISP; idle high, low during reset = bootloader")
    reset: int = Field(24, ge=0, description="Smoothie reset, active low")
    button_input: int = Field(5, ge=0, description="front button; high when released")
    window_door_sw: int = Field(20, ge=0, description="door and window in series; 1 = closed")
    door_sw_filt: int = Field(20, ge=0, description="front door (the OG board shares window_door_sw)")
    window_sw_filt: int = Field(20, ge=0, description="top window (the OG board shares window_door_sw)")
    rev_0: int = Field(17, ge=0)
    rev_1: int = Field(27, ge=0)
    revisions: dict[str, dict[str, int]] = Field(
        default_factory=lambda: {rev: dict(_SEPARATE_SWITCHES) for rev in ("A", "B", "C")},
        description="per board revision, the lines that differ from the fields above")

    @model_validator(mode="after")
    def _known_names(self) -> LineMap:
        for revision, overrides in self.revisions.items():
            if revision not in REVISIONS:
                raise ValueError(f"revisions: unknown board revision {revision!r}; known: {', '.join(REVISIONS)}")
            unknown = set(overrides) - set(OUTPUTS + INPUTS)
            if unknown:
                raise ValueError(f"revisions.{revision}: unknown line(s) {', '.join(sorted(unknown))}")
        return self


@dataclass(frozen=True)
class BoardLines:
    """The line map resolved for one board revision."""

    revision: str
    offsets: dict[str, int]  # every output and input name -> offset

    @property
    def outputs(self) -> dict[str, int]:
        return {name: self.offsets[name] for name in OUTPUTS}

    @property
    def inputs(self) -> dict[str, int]:
        return {name: self.offsets[name] for name in INPUTS}

    @property
    def separate_window(self) -> bool:
        """Whether the door and the window have switches of their own on this board."""
        return self.offsets["door_sw_filt"] != self.offsets["window_sw_filt"]

    def name_of(self, offset: int) -> str:
        names = [name for name, o in self.offsets.items() if o == offset]
        return "/".join(names) if names else f"line {offset}"


def resolve(line_map: LineMap, revision: str) -> BoardLines:
    """The offsets in use on a board of `revision` (UNKNOWN uses the OG numbers, as the OT-2 does)."""
    offsets = {name: getattr(line_map, name) for name in OUTPUTS + INPUTS}
    offsets.update(line_map.revisions.get(revision, {}))
    outputs = [offsets[name] for name in OUTPUTS]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"two outputs share one line in the map for board {revision}: {offsets}")
    clash = set(outputs) & {offsets[name] for name in INPUTS}
    if clash:
        raise ValueError(f"line(s) {sorted(clash)} are both an input and an output for board {revision}")
    return BoardLines(revision, offsets)


def revision_from_bits(rev_0: int, rev_1: int) -> str:
    return _REVISION_BY_BITS.get((rev_0, rev_1), UNKNOWN)


def bits_of_revision(revision: str) -> tuple[int, int]:
    """The (rev_0, rev_1) levels a board of `revision` shows (used by the simulated chip)."""
    for bits, name in _REVISION_BY_BITS.items():
        if name == revision:
            return bits
    raise ValueError(f"unknown board revision {revision!r}")
