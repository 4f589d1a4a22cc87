"""Settings of the broadcast-scheduler (every field also from BENCHBUS_SCHEDULER_<FIELD>)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from benchbus import ServiceSettings

# In a checkout (and an editable install) the shipped confs sit in shared-data/evolver; an image sets the paths.
SHARED = Path(__file__).resolve().parents[3] / "shared-data" / "evolver"


class SchedulerSettings(ServiceSettings):
    conf_path: Path = Field(Path("/var/lib/benchbus/scheduler/conf.yml"),
                            description="the conf.yml this service owns; created from default_conf when missing")
    default_conf: Path = Field(SHARED / "conf.yml", description="copied to conf_path on first start")
    alternates_dir: Path = Field(SHARED / "alternates", description="confs load_conf accepts by name (<name>.yml)")
    samd_service: str = Field("samd", description="segment of the samd-bridge the loop sends every step to")
    calibration_service: str = Field("calibration", description="segment whose retained state/active gives fits")
    experiment_service: str = Field("experiment", description="segment whose retained state/ownership names the "
                                    "vials on-device experiments control (other clients' commands to them refused)")
    transact_timeout_s: float = Field(15.0, gt=0, description="longest wait for one samd transact reply")
    start_paused: bool = Field(False, description="start with the loop paused (cmd/resume starts it)")
    ip: str | None = Field(None, description="the `ip` of the broadcast; found from the routing table when unset")
