"""`benchbus-recorder`: the bus wiring of the recorder (the only place that subscribes and publishes).

Two connections: the runtime's `Service` (lifecycle, commands, `state/http`, the retained states metrics read),
and the ingest's own persistent session (ingest.py), whose messages are acknowledged only after their commit.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

import sqlalchemy.exc

from benchbus import BusError, RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler
from benchbus_schemas import topics
from benchbus_schemas.envelope import Empty
from benchbus_schemas.recorder import AuditQuery, EventQuery, ExportRequest, HttpState, QueryRequest

from .api import RecorderApi
from .http import HttpEndpoint
from .ingest import Inbound, Ingest
from .metrics import Instruments, registry_for
from .records import Rows
from .settings import RecorderSettings
from .store import DAY, Store

SERVICE = "recorder"
log = logging.getLogger("benchbus.recorder")


class Maintenance:
    """Rollups and retention every `maintenance_interval_s`, on a thread of their own: a long delete on a slow SD
    card must never hold up the main loop that feeds the systemd watchdog."""

    def __init__(self, store: Store, settings: RecorderSettings):
        self.store = store
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="recorder-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.maintenance_interval_s):
            try:
                done = self.run()
            except Exception:  # the database is away: the next round tries again
                log.exception("maintenance failed")
                continue
            if any(v for k, v in done.items() if k != "rollups"):
                log.info("retention: %s", done)

    def run(self, now: float | None = None) -> dict[str, int]:
        now = time.time() if now is None else now
        done = {"rollups": self.store.refresh_rollups(now), "raw_deleted": 0, "rollups_deleted": 0,
                "events_deleted": 0}
        s = self.settings
        if s.raw_retention_days is not None:
            done["raw_deleted"] += self.store.delete_raw_before(now - s.raw_retention_days * DAY)
        if s.rollup_retention_days is not None:
            done["rollups_deleted"] += self.store.delete_rollups_before(now - s.rollup_retention_days * DAY)
        if s.event_retention_days is not None:
            done["events_deleted"] += self.store.delete_events_before(now - s.event_retention_days * DAY)
        if s.max_db_bytes is not None:
            self._within_size(s.max_db_bytes, done)
        done["exports_deleted"] = self._old_exports(now - s.export_keep_days * DAY)
        return done

    def _old_exports(self, cutoff: float) -> int:
        folder = self.settings.exports()
        if not folder.is_dir():
            return 0
        deleted = 0
        for path in folder.iterdir():
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                deleted += 1
        return deleted

    def _within_size(self, limit: int, done: dict[str, int]) -> None:
        """Past the size limit: the oldest day of raw readings goes first (their rollups stay), then events."""
        for _ in range(10_000):
            if self.store.used_bytes() <= limit:
                return
            oldest = self.store.oldest_reading()
            if oldest is not None:
                done["raw_deleted"] += self.store.delete_raw_before(oldest + DAY)
                continue
            oldest_event = min((x for x in (self.store.oldest(table) for table in _event_tables()) if x is not None),
                               default=None)
            if oldest_event is None:
                return
            done["events_deleted"] += self.store.delete_events_before(oldest_event + DAY)


def _event_tables():
    from . import tables
    return (tables.events, tables.audit, tables.service_states)


def watch_metrics(svc: Service, instruments: Instruments, who: str) -> None:
    """Retained states the metrics show but the database does not keep (counters, robot flags)."""
    def samd_bus(topic_name: str, data: Any) -> None:
        parsed = topics.parse(topic_name)
        if parsed and isinstance(data, dict):
            instruments.samd_bus(parsed[0], data)

    def robot(topic_name: str, data: Any) -> None:
        parsed = topics.parse(topic_name)
        if parsed and isinstance(data, dict):
            instruments.robot_state(parsed[0], parsed[3], data)

    svc.watch(f"benchbus/{who}/samd/state/bus", samd_bus)
    for name in ("alarm", "paused", "homed"):
        svc.watch(f"benchbus/{who}/smoothie/state/{name}", robot)


def after_commit(instruments: Instruments):
    """Feed the metrics from what was just committed (so a metric never shows what the database lacks)."""
    def update(batch: list[Inbound], _rows: Rows) -> None:
        for item in batch:
            parsed = topics.parse(item.topic)
            if parsed is None or not item.payload:
                continue
            device, service, kind, name = parsed
            try:
                if kind == "$state":
                    instruments.service_state(device, service, json.loads(item.payload).get("state", ""))
                elif kind == "event" and service == "scheduler" and name == "broadcast":
                    instruments.broadcast(device, json.loads(item.payload))
                elif kind == "event" and service == "scheduler" and name == "overrun":
                    instruments.overrun(device)
            except (ValueError, AttributeError, TypeError):
                continue
    return update


class RecorderService(Service[RecorderSettings]):
    """The store, the ingest session, the HTTP endpoint and the maintenance thread, and the commands over them."""

    segment = SERVICE

    def __init__(self, settings: RecorderSettings):
        super().__init__(settings)
        self.store = Store(settings.sqlalchemy_url())
        self.store.load_rollup_marks(settings.rollup_levels_s)
        instruments = Instruments()
        self.ingest = Ingest(
            self.store, settings.broker, settings.ingest_client_id or f"benchbus-{settings.device}-recorder-ingest",
            None if settings.all_devices else settings.device, settings.session_expiry_s, settings.commit_interval_s,
            settings.batch_max, settings.receive_maximum, set(settings.skip_internal_audit),
            set(settings.service_principals), after_commit(instruments),
            lambda reason: self.ready() if reason is None else self.degraded(reason))
        instruments.ingest_stats = self.ingest
        self.api = RecorderApi(self.store, settings.device, settings.exports(), self.ingest)
        self.http = HttpEndpoint(self.api, registry_for(instruments), settings.http_host, settings.http_port)
        self.maintenance = Maintenance(self.store, settings)
        watch_metrics(self, instruments, "+" if settings.all_devices else settings.device)

    def on_start(self) -> None:
        self.http.start()
        self.api.http_url = self.settings.http_url or self.http.url
        self.set_state("http", HttpState(url=self.api.http_url))
        self.ingest.start()
        self.maintenance.start()
        if not self.ingest.subscribed.wait(10.0):  # ready means recording: the persistent session exists
            self.log.warning("the ingest session is not subscribed yet; it keeps trying")
        log.info("recording to %s (schema %s); HTTP on %s", self.store.describe(), self.store.revision(),
                 self.http.url)

    def stop(self) -> None:
        """First commit and acknowledge what the ingest holds, then the service stops, then the database closes."""
        self.maintenance.stop()
        self.ingest.stop()
        self.http.stop()
        super().stop()
        self.store.close()

    @handler("query")
    def query(self, request: QueryRequest, _ctx: RequestContext) -> dict:
        return self.api.query(request)

    @handler("export")
    def export(self, request: ExportRequest, _ctx: RequestContext) -> dict:
        return self.api.export_to_file(request)

    @handler("audit")
    def audit(self, request: AuditQuery, _ctx: RequestContext) -> dict:
        return self.api.audit(request)

    @handler("events")
    def events(self, request: EventQuery, _ctx: RequestContext) -> dict:
        return self.api.events(request)

    @handler("status")
    def status(self, _request: Empty, _ctx: RequestContext) -> dict:
        return self.api.status()


def main(argv: list[str] | None = None) -> int:
    try:
        return run_service(RecorderService, argv)
    except (BusError, sqlalchemy.exc.OperationalError) as error:
        # e.g. the lab's PostgreSQL is unreachable at start: say so in one line; systemd starts us again
        print(f"benchbus-{SERVICE}: cannot open the database: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
