"""Settings of the recorder (file /etc/benchbus/recorder.yaml, every field also from BENCHBUS_RECORDER_<FIELD>)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from benchbus import ServiceSettings


class RecorderSettings(ServiceSettings):
    data_dir: Path = Field(Path("/var/lib/benchbus/recorder"),
                           description="the SQLite database (recorder.sqlite3) and the export folder live here")
    database_url: str | None = Field(None, description="a SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db "
                                     "for a lab server; unset: SQLite (WAL) in data_dir")
    all_devices: bool = Field(False, description="record every device on the broker (a lab recorder fed by many "
                              "instruments' bridges), not only this device")
    session_expiry_s: int = Field(7 * 86400, ge=60, description="how long the broker keeps the recorder's persistent "
                                  "session (and queues its messages) while the recorder is down")
    ingest_client_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", max_length=100,
                                         description="MQTT client id of the persistent ingest session; unset: "
                                                     "benchbus-<device>-recorder-ingest")
    commit_interval_s: float = Field(0.25, gt=0, le=60, description="a batch is committed at least this often")
    batch_max: int = Field(2000, ge=1, le=100_000, description="messages per transaction at most")
    receive_maximum: int = Field(5000, ge=10, le=65535, description="unacknowledged messages the broker may send "
                                 "(MQTT 5 Receive Maximum): a batch is acknowledged only after its commit")
    skip_internal_audit: list[str] = Field(["samd/transact"], description="audit records of these service/command "
                                           "pairs are not kept when the caller is another service (high-rate "
                                           "internal traffic such as the scheduler's samd transactions)")
    service_principals: list[str] = Field(
        ["scheduler", "samd", "smoothie", "gpio", "calibration", "update", "recorder", "runner", "experiment"],
        description="principals (broker user names, with or without the `benchbus-` prefix) that are services; a "
                    "command of skip_internal_audit called by one of them, for nobody else, is not kept")
    raw_retention_days: float | None = Field(90.0, gt=0, description="readings older than this are deleted; their "
                                             "downsampled rollups stay; unset: keep forever")
    rollup_retention_days: float | None = Field(3650.0, gt=0, description="rollups older than this are deleted")
    event_retention_days: float | None = Field(365.0, gt=0, description="events, audit records and $state changes")
    max_db_bytes: int | None = Field(None, ge=1_000_000, description="when the database grows past this, the oldest "
                                     "raw readings go first (their rollups stay), then the oldest events")
    rollup_levels_s: list[int] = Field([300, 3600], description="downsampled tables (bucket seconds): charts of long "
                                       "ranges read these, and they outlive the raw readings")
    maintenance_interval_s: float = Field(30.0, gt=0, description="rollups and retention run this often")
    http_host: str = Field("127.0.0.1", description="the HTTP endpoint (history, exports, metrics); the gateway "
                           "proxies it, so localhost is enough on a device")
    http_port: int = Field(8095, ge=0, le=65535, description="0 picks a free port (published in state/http)")
    http_url: str | None = Field(None, pattern=r"^https?://[^\s]+$", description="the URL published in state/http for "
                                 "the gateway (e.g. http://recorder:8095 between containers); unset: this host's")
    export_dir: Path | None = Field(None, description="where cmd/export writes files; unset: data_dir/exports")
    export_keep_days: float = Field(7.0, gt=0, description="exported files (and half-written ones a kill left) are "
                                    "deleted after this long")

    @field_validator("rollup_levels_s")
    @classmethod
    def _levels(cls, levels: list[int]) -> list[int]:
        if any(level < 10 for level in levels):
            raise ValueError("each rollup level is at least 10 s")
        return sorted(set(levels))

    @field_validator("skip_internal_audit")
    @classmethod
    def _pairs(cls, pairs: list[str]) -> list[str]:
        for pair in pairs:
            if pair.count("/") != 1:
                raise ValueError(f"{pair!r}: write service/command")
        return pairs

    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'recorder.sqlite3'}"

    def exports(self) -> Path:
        return self.export_dir or self.data_dir / "exports"
