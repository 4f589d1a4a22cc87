"""Settings of the calibration-store (file /etc/benchbus/calibration.yaml, env BENCHBUS_CALIBRATION_<FIELD>)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from benchbus.settings import ServiceSettings


class CalibrationSettings(ServiceSettings):
    data_dir: Path = Field(Path("/var/lib/benchbus/calibration"), description="where the files and their history live")
    evolver_file: str = Field("calibrations.json", pattern=r"^[^/]+$")
    robot_file: str = Field("robot-calibrations.json", pattern=r"^[^/]+$")
    keep_versions: int = Field(20, ge=1, le=10000,
                               description="versions of each file kept for cmd/history, cmd/restore")
    seed_example: bool = Field(False, description="a device with no calibrations.json at all starts with the shipped "
                               "example (for `benchbus up` on emulated hardware; never on a real rig)")
    # one fit of 16 vials takes well under a second; a bound keeps a pathological request from holding the store
    handler_threads: int = Field(4, ge=1, le=64)
