"""Settings of the broadcast-scheduler (every field also from BENCHBUS_SCHEDULER_<FIELD>)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from benchbus import ServiceSettings
from benchbus_schemas.limits import PUMP_SECONDS_CEILING, PUMP_SECONDS_DEFAULT_MAX

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
    max_pump_s: float = Field(PUMP_SECONDS_DEFAULT_MAX, ge=0, le=PUMP_SECONDS_CEILING, allow_inf_nan=False,
                              description="the most seconds one pump event may run (a pump field `t` or the `t` of "
                              "`t|p`); a command or conf asking for more is refused before it is stored")
    start_paused: bool = Field(False, description="start with the loop paused (cmd/resume starts it)")
    ip: str | None = Field(None, description="the `ip` of the broadcast; found from the routing table when unset")
