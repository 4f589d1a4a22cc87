"""The `recorder` service: the one owner of the device's database of readings, commands (the audit trail), events and
`$state` changes.

It reads everyone's topics (it subscribes, never commands); clients ask it for history. Exports of any size do not
fit a bus reply: `cmd/export` writes the file on the device and says where; over HTTP (through the gateway's port,
`/api/recorder/export?...`) the same export is streamed. Times are UNIX seconds (UTC).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .envelope import Empty, Payload
from .registry import command, state

SERVICE = "recorder"

DEVICE_PATTERN = r"^[A-Za-z0-9_.-]+$"
NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
ExportFormat = Literal["csv_wide", "csv_tidy", "dpu_zip"]


class TimeRange(Payload):
    device: str | None = Field(None, pattern=DEVICE_PATTERN, max_length=100,
                               description="whose data (a lab recorder holds many devices); unset: the recorder's own")
    start: float | None = Field(None, ge=0, description="UNIX seconds, inclusive; unset: the oldest kept")
    end: float | None = Field(None, ge=0, description="UNIX seconds, exclusive; unset: now")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("`end` must be after `start`")
        return self


class SeriesFilter(TimeRange):
    vials: list[int] | None = Field(None, max_length=256, description="vial numbers (0-based); unset: every vial")
    params: list[str] | None = Field(None, max_length=64,
                                     description="params (od_90, temp, od, ...); unset: every param")

    @model_validator(mode="after")
    def _bounded_lists(self) -> SeriesFilter:
        for vial in self.vials or []:
            if not 0 <= vial < 1024:
                raise ValueError(f"vial {vial} is outside 0..1023")
        for param in self.params or []:
            if not param or len(param) > 64 or not all(c.isalnum() or c in "_.:-" for c in param):
                raise ValueError(f"param {param!r}: letters, digits and _ . : - only, at most 64")
        return self


class QueryRequest(SeriesFilter):
    points: int = Field(1000, ge=1, le=20000, description="at most this many points per series (time buckets, mean)")


class Series(Payload):
    param: str
    vial: int
    fit: str | None = Field(None, description="the fit behind the newest calibrated value in the range")
    t: list[float] = Field(..., description="bucket mid-time (or the reading's time when not downsampled)")
    raw: list[float | None]
    calibrated: list[float | None]


class QueryResult(Payload):
    device: str
    start: float
    end: float
    bucket_s: float = Field(..., description="width of one point; 0 when every reading is returned as it is")
    source: str = Field(..., description="`raw`, or `rollup_<seconds>` when read from the downsampled tables")
    series: list[Series]


class ExportRequest(SeriesFilter):
    format: ExportFormat = Field("csv_tidy", description="csv_wide: a row per time, a column per param and vial; "
                                 "csv_tidy: time, device, vial, param, raw, calibrated, fit; dpu_zip: the DPU's "
                                 "OD/vialN_OD.txt and temp/vialN_temp.txt (time in hours, value) in one zip")


class ExportResult(Payload):
    path: str = Field(..., description="the file written on the recorder's host (its export folder)")
    bytes: int
    rows: int
    format: ExportFormat
    http_path: str = Field(..., description="the same export streamed over HTTP through the gateway's port")


class AuditQuery(TimeRange):
    principal: str | None = Field(None, max_length=200)
    service: str | None = Field(None, pattern=NAME_PATTERN, max_length=64)
    command: str | None = Field(None, pattern=NAME_PATTERN, max_length=64)
    ok: bool | None = None
    limit: int = Field(500, ge=1, le=10000, description="the newest records first, at most this many")


class AuditRow(Payload):
    device: str
    time: float
    service: str
    command: str
    principal: str
    on_behalf_of: str | None = None
    ok: bool
    error: dict[str, Any] | None = None
    request: Any = None
    duration_ms: float | None = None


class AuditResult(Payload):
    records: list[AuditRow]


class EventQuery(TimeRange):
    service: str | None = Field(None, pattern=NAME_PATTERN, max_length=64)
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_./:-]+$", max_length=200,
                             description="the event name; `$state` for lifecycle changes")
    limit: int = Field(500, ge=1, le=10000, description="the newest first, at most this many")


class EventRow(Payload):
    device: str
    time: float
    service: str
    name: str
    payload: Any


class EventResult(Payload):
    records: list[EventRow]


class TableStatus(Payload):
    rows: int
    oldest: float | None = None
    newest: float | None = None


class StatusResult(Payload):
    backend: Literal["sqlite", "postgresql"]
    database: str = Field(..., description="where (a file, or a URL without its password)")
    schema_revision: str
    bytes: int = Field(..., description="the database's size on disk")
    tables: dict[str, TableStatus]
    devices: list[str]
    pending: int = Field(..., description="messages received and not yet committed")
    committed: int = Field(..., description="messages committed since the start")
    last_commit: float | None = None
    commit_lag_p99_s: float | None = Field(None, description="arrival to commit, over the last 1000 messages")
    http_url: str | None = None


class HttpState(Payload):
    url: str = Field(..., description="base URL of the recorder's HTTP endpoint (history, exports, metrics); the "
                                      "gateway proxies /api/recorder/... to it")
    metrics_path: str = "/metrics"


command(SERVICE, "query", QueryRequest, QueryResult,
        "Readings of a time range (vials, params), downsampled to at most `points` per series for charts.")
command(SERVICE, "export", ExportRequest, ExportResult,
        "Write an export (csv_wide, csv_tidy, dpu_zip) to the recorder's export folder, streamed; reply with its "
        "path and the HTTP path that streams the same export.")
command(SERVICE, "audit", AuditQuery, AuditResult, "The audit trail: who ran which command, when, and the result.")
command(SERVICE, "events", EventQuery, EventResult, "Recorded events and `$state` changes, newest first.")
command(SERVICE, "status", Empty, StatusResult, "What the database holds, its size and the commit lag.")
state(SERVICE, "http", HttpState, "Where the recorder's HTTP endpoint listens (retained), for the gateway's proxy.")
