"""experiment settings (file /etc/benchbus/experiment.yaml; every field also from BENCHBUS_EXPERIMENT_<FIELD>)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from benchbus import ServiceSettings


class ExperimentSettings(ServiceSettings):
    data_dir: Path = Field(Path("/var/lib/benchbus/experiment"), description="where state.json lives")
    scheduler_service: str = Field("scheduler", description="segment of the broadcast-scheduler")
    calibration_service: str = Field("calibration", description="segment whose retained state/active gives fits")
    time_scale: float = Field(1.0, gt=0, le=100_000, description="experiment seconds per wall second: 1 on a rig; "
                              "the emulator's --time-scale on an emulated rig whose cultures run faster")
    command_timeout_s: float = Field(10.0, gt=0, le=120, description="longest wait for the scheduler's reply")
    persist_interval_s: float = Field(5.0, gt=0, description="how often the OD windows are saved when nothing "
                                      "happens (every action is saved before it is sent)")
    log_size: int = Field(2000, ge=10, le=100_000, description="decisions kept in the state file's log")
