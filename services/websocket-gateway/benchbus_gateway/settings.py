"""The gateway's settings (file /etc/benchbus/gateway.yaml, environment BENCHBUS_GATEWAY_<FIELD>)."""
from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import Field

from benchbus.settings import ServiceSettings

LOOPBACK: list[IPv4Network | IPv6Network] = [IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")]


class GatewaySettings(ServiceSettings):
    host: str = Field("0.0.0.0", description="the listen address: all interfaces on the Pi (the DPU and the GUI "
                      "reach it over the lab network; writes need the token or a trusted address); 127.0.0.1 "
                      "keeps the gateway to this machine")
    port: int = Field(8081, ge=0, le=65535, description="the eVOLVER clients expect 8081; 0 picks a free port")
    data_dir: Path = Field(Path("/var/lib/benchbus/gateway"), description="the gateway's data folder: the write "
                           "token is kept in <data_dir>/token (mode 0600), made at the first start")
    token: str | None = Field(None, min_length=16, description="the write token, when the lab sets its own (for "
                              "example from a secret store); unset: the token of <data_dir>/token")
    trusted_networks: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: list(LOOPBACK),
        description="client addresses (CIDRs) that may write without the token; the default trusts loopback only. "
                    "Add the DPU's network (e.g. 192.168.1.0/24) to keep an unmodified DPU script working")
    read_requires_token: bool = Field(False, description="also require the token (or a trusted address) for reads: "
                                      "subscriptions, GETs, Socket.IO connections")
    namespace: str = Field("/dpu-evolver", pattern=r"^/[A-Za-z0-9_-]+$")
    ping_interval_s: float = Field(25.0, gt=0, le=600)
    ping_timeout_s: float = Field(60.0, gt=0, le=600)
    max_payload_bytes: int = Field(1_000_000, ge=1024, le=100_000_000, description="the largest request body, "
                                   "polling POST and WebSocket message; a longer one is refused (413) as it streams")
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
    lab: bool = Field(False, description="a lab's central gateway (docs/lab.md): follow every device on the broker, "
                      "let /ws filters name any device (benchbus/+/...), serve the fleet page at /fleet.html")
    websocket_compression: bool = Field(False, description="offer permessage-deflate on WebSockets. Off: a "
                                        "broadcast is then one encoding for every client; with it on, each "
                                        "client's copy is deflated on its own (measured: the largest per-client "
                                        "cost of a fan-out, bench/gateway_fanout.py), for ~1 kB saved on a LAN")
