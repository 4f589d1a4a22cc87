"""samd-bridge settings (file /etc/benchbus/samd.yaml; every field also from BENCHBUS_SAMD_<FIELD>)."""
from __future__ import annotations

from pydantic import Field

from benchbus import ServiceSettings


class SamdSettings(ServiceSettings):
    port: str = Field("/dev/ttyAMA0", description="a device path or pyserial URL (socket://127.0.0.1:PORT)")
    baudrate: int = Field(9600, ge=300, le=4_000_000)
    reply_delay_s: float = Field(0.1, ge=0, le=5, description="the boards wait this long before replying")
    hold_s: float = Field(0.1, ge=0, le=5, description="the boards hold the line this long after replying")
    hold_overrides: dict[str, float] = Field(default_factory=lambda: {"stir": 0.3},
                                             description="per-param hold (the stir board holds 300 ms)")
    guard_s: float = Field(0.001, ge=0, le=1, description="extra margin on every turnaround")
    release_margin_s: float = Field(0.021, ge=0, le=1, description="an `a` that changes a board's values (or runs "
                                    "pumps) waits this much past the nominal hold: boards may release the line up "
                                    "to 20 ms late; an `a` repeating the applied values goes at the nominal time")
    action_params: list[str] = Field(["pump"], description="params whose `a` always acts (never a mere repeat)")
    timeout_margin_s: float = Field(0.1, gt=0, le=30, description="added to each attempt's computed deadline")
    reply_gap_s: float = Field(0.03, gt=0, le=5, description="silence that ends a reply lacking its 'end'")
    retries: int = Field(2, ge=0, le=10, description="retries of a transaction that failed before its 'a'")
    reopen_min_s: float = Field(0.1, gt=0, description="first wait before reopening a lost port (doubles)")
    reopen_max_s: float = Field(5.0, gt=0, description="longest wait between reopen attempts")
    probe_interval_s: float = Field(1.0, gt=0, description="how often an idle port is checked for vanishing")
    state_interval_s: float = Field(0.5, gt=0, description="state/bus is re-published at most this often")
    extra_boards: list[str] = Field(default_factory=list,
                                    description="addresses of boards beyond the default eVOLVER's (e.g. pres, lux) "
                                    "that transact may address; their values get the frame rules only, since the "
                                    "limits table (benchbus_schemas.limits) knows nothing of them. Any other unknown "
                                    "address is refused")
