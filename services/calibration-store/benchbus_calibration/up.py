"""`benchbus up` plug-in: the calibration-store, its files in the up data directory (seeded with the example)."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    env = {
        "BENCHBUS_CALIBRATION_DATA_DIR": str(ctx.service_dir("calibration")),
        "BENCHBUS_CALIBRATION_SEED_EXAMPLE": "true",
    }
    return [Unit("calibration", [sys.executable, "-m", "benchbus_calibration.service"], env=env, segment="calibration")]
