"""The OT-2's numbers the driver works with (opentrons-ot2.md 1.3, 1.9-1.11): mounts and plungers, firmware
defaults, motor current tables, homing timeouts and order, and the driver's own settings."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

PLUNGERS = ("B", "C")
MOUNT_LETTER = {"left": "L", "right": "R"}
MOUNT_AXIS = {"left": "Z", "right": "A"}
PLUNGER_AXIS = {"left": "B", "right": "C"}
# Firmware defaults (reference 1.9): the mount backs off 2 mm after homing, the plunger homes at 20 mm.
MOUNT_RETRACT_MM = 2.0
PLUNGER_HOMING_POSITION_MM = 20.0
BACKLASH_MM = 0.3
CURRENT_SETTLE = "G4 P0.005"

# Homing timeouts (reference 1.3): G28.2 acks only when homing ends, so its ack timeout is long and its M400 short.
HOME_ACK_TIMEOUT_S = {"X": 418 / 80 * 2, "Y": 353 / 80 * 2, "Y_slow": 3 / 8 * 2}
HOME_ACK_TIMEOUT_LONG_S = 12000.0
HOME_M400_TIMEOUT_S = 5.0

CURRENT_TABLES = {
    # board revision "2.1" (OG) and UNKNOWN: (active, dwelling)
    "2.1": ({"X": 1.25, "Y": 1.25, "Z": 0.8, "A": 0.8, "B": 0.05, "C": 0.05},
            {"X": 0.3, "Y": 0.3, "Z": 0.1, "A": 0.1, "B": 0.05, "C": 0.05}),
    # refresh boards (rev A/B/C)
    "default": ({"X": 1.25, "Y": 1.25, "Z": 0.5, "A": 0.5, "B": 0.05, "C": 0.05},
                {"X": 0.7, "Y": 0.7, "Z": 0.1, "A": 0.1, "B": 0.05, "C": 0.05}),
}
DEFAULT_STEPS_PER_MM = {"X": 80.0, "Y": 80.0, "Z": 400.0, "A": 400.0, "B": 768.0, "C": 768.0}
DEFAULT_MAX_SPEEDS = {"X": 600.0, "Y": 400.0, "Z": 125.0, "A": 125.0, "B": 40.0, "C": 40.0}
DEFAULT_ACCELERATION = {"X": 3000.0, "Y": 2000.0, "Z": 1500.0, "A": 1500.0, "B": 200.0, "C": 200.0}
DEFAULT_ACCELERATION_S = 10000.0
DEFAULT_SPEED = 400.0  # mm/s, sent as G0 F24000


@dataclass
class DriverConfig:
    ack_timeout_s: float = 5.0
    retries: int = 3
    execute_timeout_s: float = 12000.0
    boot_timeout_s: float = 3.0
    probe_timeout_s: float = 30.0
    current_table: str = "2.1"
    steps_per_mm: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STEPS_PER_MM))
    max_speeds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_SPEEDS))
    acceleration: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ACCELERATION))
    default_speed: float = DEFAULT_SPEED
    recovery_pause_s: float = 0.1
    home_ack_timeout_cap_s: float | None = None  # caps the homing ack timeouts below (a test or a known-fast robot)


def expand_home_axes(axes: Iterable[str]) -> list[str]:
    """Y needs X home first, X needs the mounts (Z, A) up first; in the homing order ZABC, X, Y."""
    wanted = set(axes)
    if "Y" in wanted:
        wanted.add("X")
    if "X" in wanted:
        wanted.update(("Z", "A"))
    return [axis for axis in ("Z", "A", "B", "C", "X", "Y") if axis in wanted]
