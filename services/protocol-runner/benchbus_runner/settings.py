"""runner settings (file /etc/benchbus/runner.yaml; every field also from BENCHBUS_RUNNER_<FIELD>)."""
from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import Field

from benchbus import ServiceSettings

LOOPBACK: list[IPv4Network | IPv6Network] = [IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")]


class RunnerSettings(ServiceSettings):
    data_dir: Path = Field(Path("/var/lib/benchbus/runner"), description="kept protocols, runs and the write token")
    http: bool = Field(True, description="serve the robot-server's HTTP API (the Opentrons App, ot_api, PyLabRobot)")
    http_host: str = Field("0.0.0.0", description="listen address of the HTTP API; writes need the token or a "
                           "trusted address")
    http_port: int = Field(31950, ge=0, le=65535, description="the OT-2's robot-server port; 0 picks a free port")
    token: str | None = Field(None, min_length=16, description="the HTTP write token; unset: <data_dir>/token, made "
                              "at the first start (mode 0600)")
    trusted_networks: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: list(LOOPBACK), description="client addresses that may write without the token")
    read_requires_token: bool = Field(False, description="also require the token (or a trusted address) for reads")
    max_body_bytes: int = Field(4_000_000, ge=1024, le=100_000_000, description="largest HTTP request body")
    max_protocol_bytes: int = Field(1_000_000, ge=1024, le=10_000_000)
    lease_ttl_s: float = Field(10.0, ge=2, le=120, description="the run's motion lease lapses this long after its "
                               "process dies without giving it back")
    stop_grace_s: float = Field(0.8, gt=0, le=10, description="a run's process that has not stopped this long after "
                                "stop is killed (the runner then halts the robot and releases the lease itself)")
    analysis_timeout_s: float = Field(60.0, gt=0, le=600, description="longest analysis of an upload")
    command_timeout_s: float = Field(120.0, gt=0, le=600, description="longest wait for a live command")
    update_url: str | None = Field("http://127.0.0.1:34000", pattern=r"^https?://[^/?#]+$", description="the "
                                   "update-agent's HTTP address: its /server/* routes are served on this port too "
                                   "(its trusted_proxies must list this runner's address); null: not served")
    server_max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024, description="the largest /server/* "
                                       "request body passed on (the update-agent's own max_body_bytes)")
    server_max_upload_bytes: int = Field(2 * 1024**3 + 64 * 1024, gt=0, description="the largest system bundle "
                                         "upload passed on, streamed (the update-agent's max_upload_bytes and the "
                                         "multipart's room)")
    home_timeout_s: float = Field(120.0, gt=0, le=600, description="longest wait for POST /robot/home")
