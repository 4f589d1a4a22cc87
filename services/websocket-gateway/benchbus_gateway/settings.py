"""The gateway's settings (file /etc/benchbus/gateway.yaml, environment BENCHBUS_GATEWAY_<FIELD>)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from benchbus.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    host: str = "0.0.0.0"
    port: int = Field(8081, ge=0, le=65535, description="the eVOLVER clients expect 8081; 0 picks a free port")
    token: str | None = Field(None, min_length=8, description="bearer token for writes through /ws and HTTP; "
                              "without one every write is refused")
    read_requires_token: bool = Field(False, description="also require the token for reads (subscriptions, GETs)")
    socketio_token: str | None = Field(None, description="when set, Socket.IO clients must pass ?token=... in the "
                                       "connection query (the eVOLVER clients cannot, so it is off by default)")
    robot_routes_require_token: bool = Field(False, description="require the bearer token on the OT-2 robot routes' "
                                             "writes (OT-2 scripts send none, so off by default)")
    namespace: str = Field("/dpu-evolver", pattern=r"^/[A-Za-z0-9_-]+$")
    ping_interval_s: float = Field(25.0, gt=0, le=600)
    ping_timeout_s: float = Field(60.0, gt=0, le=600)
    max_payload_bytes: int = Field(1_000_000, ge=1024, le=100_000_000)
    max_outbox: int = Field(1000, ge=10, description="packets waiting for one client before it is dropped")
    call_timeout_s: float = Field(10.0, gt=0, le=120)
    history_size: int = Field(5000, ge=1, le=100_000, description="at most this many recent broadcasts are kept "
                              "for GET /api/history (24 h at the default 20 s cycle is 4320)")
    history_max_age_s: float = Field(86400.0, gt=0, description="broadcasts older than this leave the history; "
                                     "long-term storage belongs to a recorder on the bus")
    static_dir: Path | None = Field(None, description="served at / when the directory exists; unset: the "
                                    "dashboard of this checkout (services/websocket-gateway/dashboard/public)")
    dashboard: bool = Field(True, description="serve the bundled dashboard at / when static_dir is unset")
    max_ws_subscriptions: int = Field(64, ge=1)
