"""The recorder's database: SQLite (WAL) on the device or PostgreSQL for a lab, through SQLAlchemy Core.

The schema is versioned by Alembic (migrations/versions); opening a store upgrades an older database to the newest
revision first. One writer (the ingest thread) commits batches; readers (queries, exports) run beside it (SQLite's
WAL lets them). Every write is idempotent: a batch written twice leaves the database as written once.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from . import tables as t
from .records import Block, Rows

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger("benchbus.recorder.store")
MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0002_rollups"  # the newest revision in migrations/versions (test_migration holds it to alembic's own head)
VERSION_TABLE = "alembic_version"
DAY = 86400.0


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the schema to `revision` (an older database opens in a newer recorder this way)."""
    from alembic import command as alembic_command
    config = alembic_config()
    config.attributes["connection"] = connection
    alembic_command.upgrade(config, revision)


def schema_revision(connection: Connection) -> str | None:
    """The database's revision as alembic keeps it (None before the first migration), read without alembic."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    heads = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(heads) > 1:
        raise RuntimeError(f"{VERSION_TABLE} names more than one revision: {', '.join(heads)}")
    return heads[0] if heads else None


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on the card before the broker hears the acknowledgement, even across a power cut.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@dataclass
class SeriesKey:
    id: int
    device: str
    param: str
    vial: int


class Store:
    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        self.backend = "sqlite" if self.engine.dialect.name == "sqlite" else "postgresql"
        self._insert = sqlite_dialect.insert if self.backend == "sqlite" else pg_dialect.insert
        self._series: dict[tuple[str, str, int], int] = {}
        self._fits: dict[str, int] = {}
        self._configs: dict[str, int] = {}
        self._lock = threading.RLock()  # re-entered: retention holds it across its refresh and its delete
        self.dirty_since: float | None = None  # oldest reading written since the rollups were last refreshed
        self.rollup_marks: dict[int, float] = {}  # level -> rollups complete before this time
        mark = "?" if self.backend == "sqlite" else "%s"
        self._readings_sql = (f"INSERT INTO readings (series_id, time, raw, calibrated, fit_id) VALUES "
                              f"({', '.join([mark] * 5)}) ON CONFLICT DO NOTHING")
        if migrate:
            with self.engine.begin() as connection:
                # alembic (with the mako it imports for writing revisions) is 3.5 MB resident, more where pygments
                # is installed: imported only to upgrade, never by a recorder opening its current database (issue 21)
                if schema_revision(connection) != HEAD:
                    upgrade(connection)

    def close(self) -> None:
        self.engine.dispose()

    def revision(self) -> str:
        with self.engine.connect() as connection:
            return schema_revision(connection) or "none"

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # -- writing ---------------------------------------------------------------------------------------------------

    def write(self, rows: Rows) -> None:
        """Write one batch in one transaction (committed when this returns)."""
        if not len(rows):
            return
        with self._lock, self.engine.begin() as connection:
            self._write_readings(connection, rows.blocks)
            self._write_broadcasts(connection, rows)
            self._write_events(connection, rows.events)
            if rows.audit:
                connection.execute(self._insert(t.audit).on_conflict_do_nothing(), rows.audit)
            if rows.states:
                connection.execute(self._insert(t.service_states).on_conflict_do_nothing(), rows.states)
        if rows.blocks:
            oldest = min(block.time for block in rows.blocks)
            self.dirty_since = oldest if self.dirty_since is None else min(self.dirty_since, oldest)

    def _write_readings(self, connection: Connection, blocks: list[Block]) -> None:
        """The hot path (80+ rows a broadcast): each block becomes its rows through zip, straight to the driver's
        executemany as plain tuples."""
        if not blocks:
            return
        shapes = {(b.device, b.param, len(b.raw)) for b in blocks}
        series_ids = self._series_ids(connection, {(d, p, v) for d, p, n in shapes for v in range(n)})
        ids_of = {(d, p, n): [series_ids[(d, p, v)] for v in range(n)] for d, p, n in shapes}
        fit_ids = self._fit_ids(connection, {b.fit for b in blocks if b.fit})
        values: list[tuple] = []
        for b in blocks:
            n = len(b.raw)
            values.extend(zip(ids_of[(b.device, b.param, n)], repeat(b.time, n), b.raw,
                              b.calibrated if b.calibrated is not None else repeat(None, n),
                              repeat(fit_ids.get(b.fit) if b.fit else None, n), strict=True))
        connection.exec_driver_sql(self._readings_sql, values)

    def _write_broadcasts(self, connection: Connection, rows: Rows) -> None:
        if not rows.broadcasts:
            return
        config_ids = self._config_ids(connection, rows.configs)
        values = []
        for broadcast in rows.broadcasts:
            row = dict(broadcast)
            row["config_id"] = config_ids.get(row.pop("config_digest"))
            values.append(row)
        connection.execute(self._insert(t.broadcasts).on_conflict_do_nothing(), values)

    def _write_events(self, connection: Connection, events: list[dict]) -> None:
        """Events have no natural key: two identical button presses are two events. Only a redelivered message
        (the broker's DUP flag: sent before, acknowledgement not seen) is checked against what is stored."""
        if not events:
            return
        fresh = []
        for event in events:
            row = dict(event)
            if row.pop("redelivered"):
                seen = connection.execute(sa.select(t.events.c.id).where(t.events.c.digest == row["digest"]).limit(1))
                if seen.first() is not None:
                    continue
            fresh.append(row)
        if fresh:
            connection.execute(sa.insert(t.events), fresh)

    def _ids(self, connection: Connection, cache: dict, table: sa.Table, keys: set, columns: Sequence[str],
             value_of: Any) -> dict:
        missing = [k for k in keys if k not in cache]
        if missing:
            connection.execute(self._insert(table).on_conflict_do_nothing(),
                               [dict(zip(columns, k if isinstance(k, tuple) else (k,), strict=True), **value_of(k))
                                for k in missing])
            cols = [table.c[c] for c in columns]
            for row in connection.execute(sa.select(table.c.id, *cols)):
                key = tuple(row[1:]) if len(cols) > 1 else row[1]
                cache[key] = row[0]
        return {k: cache[k] for k in keys}

    def _series_ids(self, connection: Connection, keys: set[tuple[str, str, int]]) -> dict:
        return self._ids(connection, self._series, t.series, keys, ("device", "param", "vial"), lambda _k: {})

    def _fit_ids(self, connection: Connection, names: set[str]) -> dict:
        return self._ids(connection, self._fits, t.fits, {n[:200] for n in names}, ("name",), lambda _k: {}) | {
            n: self._fits[n[:200]] for n in names}

    def _config_ids(self, connection: Connection, configs: dict[str, str]) -> dict:
        return self._ids(connection, self._configs, t.configs, set(configs), ("digest",),
                         lambda k: {"body": configs[k]})

    # -- series ----------------------------------------------------------------------------------------------------

    def series(self, device: str | None = None, params: Sequence[str] | None = None,
               vials: Sequence[int] | None = None) -> list[SeriesKey]:
        query = sa.select(t.series.c.id, t.series.c.device, t.series.c.param, t.series.c.vial)
        if device is not None:
            query = query.where(t.series.c.device == device)
        if params:
            query = query.where(t.series.c.param.in_(list(params)))
        if vials:
            query = query.where(t.series.c.vial.in_(list(vials)))
        with self.engine.connect() as connection:
            found = [SeriesKey(*row) for row in connection.execute(query.order_by(t.series.c.param, t.series.c.vial))]
        return found

    def devices(self) -> list[str]:
        with self.engine.connect() as connection:
            query = sa.select(t.series.c.device).distinct().order_by(t.series.c.device)
            return [row[0] for row in connection.execute(query)]

    def time_bounds(self, device: str) -> tuple[float | None, float | None]:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(sa.func.min(t.broadcasts.c.time), sa.func.max(t.broadcasts.c.time))
                                     .where(t.broadcasts.c.device == device)).first()
            oldest, newest = (row[0], row[1]) if row else (None, None)
            if self.rollup_marks or oldest is None:
                ids = [s.id for s in self.series(device)]
                if ids:
                    rolled = connection.execute(sa.select(sa.func.min(t.rollups.c.bucket))
                                                .where(t.rollups.c.series_id.in_(ids))).scalar()
                    if rolled is not None and (oldest is None or rolled < oldest):
                        oldest = rolled
        return oldest, newest

    # -- range query (charts) --------------------------------------------------------------------------------------

    def _bucket_index(self, column: Any, start: float, width: float) -> Any:
        scaled = (column - start) / width
        if self.backend == "sqlite":
            return sa.cast(scaled, sa.Integer)  # time >= start, so truncation is floor
        return sa.func.floor(scaled)

    def query(self, device: str, start: float, end: float, points: int, params: Sequence[str] | None = None,
              vials: Sequence[int] | None = None) -> dict:
        chosen = self.series(device, params, vials)
        width = (end - start) / points
        level = max((lv for lv in self.rollup_marks if lv <= width), default=None)
        by_id = {s.id: s for s in chosen}
        buckets: dict[int, dict[int, list[float]]] = {s.id: {} for s in chosen}
        fits: dict[int, str] = {}
        with self.engine.connect() as connection:
            raw_from = start
            if level is not None and chosen:
                mark = self.rollup_marks[level]
                raw_from = max(start, min(end, mark))
                self._merge_rollups(connection, buckets, list(by_id), level, start, raw_from, width)
            if chosen and raw_from < end:
                if level is None and self._few_rows(connection, list(by_id), start, end, points):
                    return self._plain(connection, device, chosen, start, end)
                self._merge_raw(connection, buckets, list(by_id), raw_from, end, start, width)
            fits = self._latest_fits(connection, list(by_id), start, end)
        series_out = []
        for s in chosen:
            cells = sorted(buckets[s.id].items())
            if not cells:
                continue
            series_out.append({
                "param": s.param, "vial": s.vial, "fit": fits.get(s.id),
                "t": [round(start + (index + 0.5) * width, 3) for index, _ in cells],
                "raw": [_mean(c[0], c[1]) for _, c in cells], "calibrated": [_mean(c[2], c[3]) for _, c in cells]})
        return {"device": device, "start": start, "end": end, "bucket_s": width,
                "source": f"rollup_{level}" if level is not None else "raw", "series": series_out}

    def _few_rows(self, connection: Connection, ids: list[int], start: float, end: float, points: int) -> bool:
        """True when the range holds at most `points` readings per series (then they are returned as they are)."""
        count = connection.execute(sa.select(sa.func.count()).select_from(t.readings).where(
            t.readings.c.series_id == ids[0], t.readings.c.time >= start, t.readings.c.time < end)).scalar() or 0
        return count <= points

    def _plain(self, connection: Connection, device: str, chosen: list[SeriesKey], start: float, end: float) -> dict:
        by_id: dict[int, dict[str, Any]] = {
            s.id: {"param": s.param, "vial": s.vial, "fit": None, "t": [], "raw": [], "calibrated": []} for s in chosen}
        query = (sa.select(t.readings.c.series_id, t.readings.c.time, t.readings.c.raw, t.readings.c.calibrated,
                           t.fits.c.name)
                 .select_from(t.readings.outerjoin(t.fits, t.fits.c.id == t.readings.c.fit_id))
                 .where(t.readings.c.series_id.in_(list(by_id)), t.readings.c.time >= start, t.readings.c.time < end)
                 .order_by(t.readings.c.series_id, t.readings.c.time))
        for series_id, when, raw, calibrated, fit in connection.execute(query):
            out = by_id[series_id]
            out["t"].append(when)
            out["raw"].append(raw)
            out["calibrated"].append(calibrated)
            if fit:
                out["fit"] = fit
        return {"device": device, "start": start, "end": end, "bucket_s": 0.0, "source": "raw",
                "series": [s for s in by_id.values() if s["t"]]}

    def _merge_raw(self, connection: Connection, buckets: dict, ids: list[int], lo: float, hi: float, start: float,
                   width: float) -> None:
        index = self._bucket_index(t.readings.c.time, start, width).label("b")
        query = (sa.select(t.readings.c.series_id, index, sa.func.count(t.readings.c.raw),
                           sa.func.sum(t.readings.c.raw), sa.func.count(t.readings.c.calibrated),
                           sa.func.sum(t.readings.c.calibrated))
                 .where(t.readings.c.series_id.in_(ids), t.readings.c.time >= lo, t.readings.c.time < hi)
                 .group_by(t.readings.c.series_id, index))
        for series_id, bucket, n_raw, sum_raw, n_cal, sum_cal in connection.execute(query):
            _add(buckets[series_id], int(bucket), n_raw, sum_raw, n_cal, sum_cal)

    def _merge_rollups(self, connection: Connection, buckets: dict, ids: list[int], level: int, lo: float, hi: float,
                       width: float) -> None:
        """Rollup buckets (level seconds, aligned on multiples of the level) into the chart's buckets by midpoint."""
        if hi <= lo:
            return
        r = t.rollups.c
        index = self._bucket_index(r.bucket + level / 2.0, lo - level, width).label("b")
        shift = level / width  # the index above counts from lo - level
        query = (sa.select(r.series_id, index, sa.func.sum(sa.case((r.raw.is_not(None), r.n), else_=0)),
                           sa.func.sum(r.raw * r.n), sa.func.sum(sa.case((r.calibrated.is_not(None), r.n), else_=0)),
                           sa.func.sum(r.calibrated * r.n))
                 .where(r.level == level, r.series_id.in_(ids), r.bucket >= math.floor(lo / level) * level,
                        r.bucket < hi)
                 .group_by(r.series_id, index))
        for series_id, bucket, n_raw, sum_raw, n_cal, sum_cal in connection.execute(query):
            _add(buckets[series_id], max(0, int(bucket - shift)), n_raw, sum_raw, n_cal, sum_cal)

    def _latest_fits(self, connection: Connection, ids: list[int], start: float, end: float) -> dict[int, str]:
        if not ids:
            return {}
        found: dict[int, str] = {}
        for series_id in ids:
            name = connection.execute(
                sa.select(t.fits.c.name).select_from(t.readings.join(t.fits, t.fits.c.id == t.readings.c.fit_id))
                .where(t.readings.c.series_id == series_id, t.readings.c.time >= start, t.readings.c.time < end)
                .order_by(t.readings.c.time.desc()).limit(1)).scalar()
            if name:
                found[series_id] = name
        return found

    # -- rollups and retention -------------------------------------------------------------------------------------

    def load_rollup_marks(self, levels: Sequence[int]) -> None:
        with self.engine.connect() as connection:
            for level in levels:
                newest = connection.execute(sa.select(sa.func.max(t.rollups.c.bucket))
                                            .where(t.rollups.c.level == level)).scalar()
                self.rollup_marks[level] = (newest + level) if newest is not None else 0.0

    def refresh_rollups(self, now: float | None = None) -> int:
        """Recompute, for each level, every complete bucket from the level's mark (or from the oldest reading
        written since the last refresh, when late readings arrived) up to now. Buckets are recomputed whole from
        the readings, so running it twice changes nothing."""
        now = time.time() if now is None else now
        with self._lock:  # a batch written between the read and the reset would leave no mark
            dirty = self.dirty_since
            self.dirty_since = None
        if not self.rollup_marks:
            return 0
        written = 0
        with self._lock, self.engine.begin() as connection:
            ids = [row[0] for row in connection.execute(sa.select(t.series.c.id))]
            if not ids:
                return 0
            for level, mark in list(self.rollup_marks.items()):
                start_from = mark if dirty is None else min(dirty, mark)
                if start_from == 0.0:  # never rolled up: from the oldest reading (one indexed probe per series)
                    oldest = [connection.execute(sa.select(sa.func.min(t.readings.c.time))
                                                 .where(t.readings.c.series_id == i)).scalar() for i in ids]
                    start_from = min((x for x in oldest if x is not None), default=now)
                lo = math.floor(start_from / level) * level
                hi = math.floor(now / level) * level
                if hi <= lo:
                    continue
                written += self._rollup_range(connection, ids, level, lo, hi)
                self.rollup_marks[level] = max(mark, hi)
        return written

    def _rollup_range(self, connection: Connection, ids: list[int], level: int, lo: float, hi: float) -> int:
        """Recompute the buckets in [lo, hi) from the readings, except a bucket whose rollup counts more readings
        than are left: retention deleted them, and a late reading landing there must not shrink its rollup to
        itself (it stays raw until retention reaches it)."""
        r, ru = t.readings.c, t.rollups.c
        left_in_bucket = (sa.select(sa.func.count()).where(r.series_id == ru.series_id, r.time >= ru.bucket,
                                                            r.time < ru.bucket + level).scalar_subquery())
        connection.execute(sa.delete(t.rollups).where(ru.level == level, ru.bucket >= lo, ru.bucket < hi,
                                                      ru.n <= left_in_bucket))
        bucket = (lo + self._bucket_index(r.time, lo, level) * level).label("bucket")
        grouped = (sa.select(r.series_id, bucket, sa.func.count().label("n"), sa.func.avg(r.raw).label("raw"),
                             sa.func.avg(r.calibrated).label("calibrated"))
                   .where(r.series_id.in_(ids), r.time >= lo, r.time < hi)
                   .group_by(r.series_id, bucket)).subquery()
        kept = sa.exists().where(ru.level == level, ru.series_id == grouped.c.series_id, ru.bucket == grouped.c.bucket)
        select = sa.select(sa.literal(level), grouped.c.series_id, grouped.c.bucket, grouped.c.n, grouped.c.raw,
                           grouped.c.calibrated).where(~kept)
        result = connection.execute(sa.insert(t.rollups).from_select(
            ["level", "series_id", "bucket", "n", "raw", "calibrated"], select))
        return result.rowcount or 0

    def delete_raw_before(self, cutoff: float) -> int:
        """Readings and broadcasts older than `cutoff` (rollups stay; refreshed first so nothing is lost). The lock is
        held from the refresh to the delete: a batch of old readings written in between was deleted unrolled."""
        with self._lock:
            self.refresh_rollups()
            return self._delete_raw(cutoff)

    def _delete_raw(self, cutoff: float) -> int:
        with self._lock, self.engine.begin() as connection:
            ids = [row[0] for row in connection.execute(sa.select(t.series.c.id))]
            deleted = 0
            if ids:
                deleted = connection.execute(sa.delete(t.readings).where(t.readings.c.series_id.in_(ids),
                                                                         t.readings.c.time < cutoff)).rowcount or 0
            connection.execute(sa.delete(t.broadcasts).where(t.broadcasts.c.time < cutoff))
        return deleted

    def delete_rollups_before(self, cutoff: float) -> int:
        with self._lock, self.engine.begin() as connection:
            return connection.execute(sa.delete(t.rollups).where(t.rollups.c.bucket < cutoff)).rowcount or 0

    def delete_events_before(self, cutoff: float) -> int:
        deleted = 0
        with self._lock, self.engine.begin() as connection:
            for table in (t.events, t.audit, t.service_states):
                deleted += connection.execute(sa.delete(table).where(table.c.time < cutoff)).rowcount or 0
        return deleted

    def oldest(self, table: sa.Table) -> float | None:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.min(table.c.time))).scalar()

    def oldest_reading(self) -> float | None:
        with self.engine.connect() as connection:
            ids = [row[0] for row in connection.execute(sa.select(t.series.c.id))]
            times = [connection.execute(sa.select(sa.func.min(t.readings.c.time)).where(t.readings.c.series_id == i))
                     .scalar() for i in ids]
        known = [x for x in times if x is not None]
        return min(known) if known else None

    def used_bytes(self) -> int:
        """What the data takes (SQLite: pages in use, freed pages are reused; PostgreSQL: the database's size)."""
        with self.engine.connect() as connection:
            if self.backend == "sqlite":
                page_size = connection.exec_driver_sql("PRAGMA page_size").scalar() or 0
                pages = connection.exec_driver_sql("PRAGMA page_count").scalar() or 0
                free = connection.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
                return int((pages - free) * page_size)
            return int(connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar() or 0)

    def file_bytes(self) -> int:
        if self.backend != "sqlite":
            return self.used_bytes()
        path = Path(self.engine.url.database or "")
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    # -- other reads ------------------------------------------------------------------------------------------------

    def table_status(self) -> dict[str, dict]:
        out = {}
        with self.engine.connect() as connection:
            for table in (t.broadcasts, t.events, t.audit, t.service_states):
                rows, oldest, newest = connection.execute(sa.select(sa.func.count(), sa.func.min(table.c.time),
                                                                    sa.func.max(table.c.time))).one()
                out[table.name] = {"rows": rows, "oldest": oldest, "newest": newest}
            out["readings"] = {"rows": connection.execute(sa.select(sa.func.count()).select_from(t.readings)).scalar()}
            out["rollups"] = {"rows": connection.execute(sa.select(sa.func.count()).select_from(t.rollups)).scalar()}
        return out

    def audit_records(self, device: str, start: float, end: float, limit: int, principal: str | None = None,
                      service: str | None = None, command: str | None = None, ok: bool | None = None) -> list[dict]:
        a = t.audit.c
        query = sa.select(t.audit).where(a.device == device, a.time >= start, a.time < end)
        for column, value in ((a.principal, principal), (a.service, service), (a.command, command), (a.ok, ok)):
            if value is not None:
                query = query.where(column == value)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(a.time.desc()).limit(limit)).mappings().all()
        return [{"device": r["device"], "time": r["time"], "service": r["service"], "command": r["command"],
                 "principal": r["principal"], "on_behalf_of": r["on_behalf_of"], "ok": bool(r["ok"]),
                 "error": _json(r["error"]), "request": _json(r["request"]), "duration_ms": r["duration_ms"]}
                for r in rows]

    def event_records(self, device: str, start: float, end: float, limit: int, service: str | None = None,
                      name: str | None = None) -> list[dict]:
        out: list[dict] = []
        with self.engine.connect() as connection:
            if name in (None, "$state"):
                s = t.service_states.c
                query = sa.select(s.device, s.time, s.service, s.payload).where(s.device == device, s.time >= start,
                                                                                s.time < end)
                if service:
                    query = query.where(s.service == service)
                for row in connection.execute(query.order_by(s.time.desc()).limit(limit)):
                    out.append({"device": row[0], "time": row[1], "service": row[2], "name": "$state",
                                "payload": _json(row[3])})
            if name != "$state":
                e = t.events.c
                query = sa.select(e.device, e.time, e.service, e.name, e.payload).where(
                    e.device == device, e.time >= start, e.time < end)
                if service:
                    query = query.where(e.service == service)
                if name:
                    query = query.where(e.name == name)
                for row in connection.execute(query.order_by(e.time.desc()).limit(limit)):
                    out.append({"device": row[0], "time": row[1], "service": row[2], "name": row[3],
                                "payload": _json(row[4])})
        out.sort(key=lambda r: r["time"], reverse=True)
        return out[:limit]

    def broadcasts_between(self, device: str, start: float, end: float, limit: int) -> list[dict]:
        """Broadcasts rebuilt from the tables (the gateway's /api/history shape), oldest first. A range holding more
        than `limit` is thinned evenly (every k-th broadcast, the newest always kept), so days fit a chart."""
        b = t.broadcasts.c
        with self.engine.connect() as connection:
            times = list(connection.execute(sa.select(b.time).where(b.device == device, b.time >= start,
                                                                    b.time < end).order_by(b.time)).scalars())
            if not times or limit <= 0:
                return []
            if len(times) > limit:
                stride = math.ceil(len(times) / limit)
                times = times[len(times) - 1::-stride][::-1]
            chosen = self.series(device)
            by_id = {s.id: s for s in chosen}
            rows: list[Any] = []
            values: dict[float, dict[str, dict[int, tuple]]] = {}
            for first in range(0, len(times), 500):
                window = times[first:first + 500]
                rows.extend(connection.execute(
                    sa.select(b.time, b.cycle, b.cycle_s, b.broadcast_timing, b.status, b.errors, b.calibration,
                              b.ip, t.configs.c.body)
                    .select_from(t.broadcasts.outerjoin(t.configs, t.configs.c.id == b.config_id))
                    .where(b.device == device, b.time.in_(window)).order_by(b.time)))
                query = (sa.select(t.readings.c.series_id, t.readings.c.time, t.readings.c.raw,
                                   t.readings.c.calibrated)
                         .where(t.readings.c.series_id.in_(list(by_id)), t.readings.c.time.in_(window)))
                for series_id, when, raw, calibrated in connection.execute(query):
                    s = by_id[series_id]
                    values.setdefault(when, {}).setdefault(s.param, {})[s.vial] = (raw, calibrated)
        return [self._rebuilt(row, values.get(row[0], {})) for row in rows]

    @staticmethod
    def _rebuilt(row: Any, per_param: dict[str, dict[int, tuple]]) -> dict:
        when, cycle, cycle_s, timing, status, errors, calibration, ip, config = row
        data, calibrated = {}, {}
        for param, vials in per_param.items():
            ordered = [vials.get(v, (None, None)) for v in range(max(vials) + 1)]
            if any(raw is not None for raw, _ in ordered):
                data[param] = [_raw_text(raw) for raw, _ in ordered]
            if any(cal is not None for _, cal in ordered):
                calibrated[param] = [cal for _, cal in ordered]
        return {"received": when, "broadcast": {
            "data": data, "config": _json(config) or {}, "ip": ip or "", "timestamp": when,
            "status": _json(status) or {}, "errors": _json(errors) or {}, "cycle": cycle, "cycle_s": cycle_s,
            "broadcast_timing": timing, "calibrated": calibrated, "calibration": _json(calibration) or {}}}

    def value_kinds(self, ids: list[int], start: float, end: float) -> dict[int, tuple[bool, bool]]:
        """For each series: (has raw values, has calibrated values) in the range (one indexed probe each)."""
        r = t.readings.c
        out = {}
        with self.engine.connect() as connection:
            for series_id in ids:
                def probe(column: Any, sid: int = series_id) -> bool:
                    return connection.execute(sa.select(r.time).where(
                        r.series_id == sid, r.time >= start, r.time < end, column.is_not(None)).limit(1)).first() \
                        is not None
                out[series_id] = (probe(r.raw), probe(r.calibrated))
        return out

    # -- streaming reads (exports) ---------------------------------------------------------------------------------

    def stream_series(self, series: SeriesKey, start: float, end: float, chunk: int = 20000,
                      labelled: bool = False) -> Iterator[Sequence[tuple]]:
        """The readings of one series in time order, `chunk` rows at a time, as plain tuples straight from the
        driver: (time, raw, calibrated, fit), or with `labelled` the tidy CSV row (time, device, param, vial, raw,
        calibrated, fit) so a csv writer takes the batch as it is."""
        r = t.readings.c
        labels: list[Any] = [sa.literal(series.device), sa.literal(series.param), sa.literal(series.vial)] \
            if labelled else []
        query = (sa.select(r.time, *labels, r.raw, r.calibrated, t.fits.c.name)
                 .select_from(t.readings.outerjoin(t.fits, t.fits.c.id == r.fit_id))
                 .where(r.series_id == series.id, r.time >= start, r.time < end).order_by(r.time))
        compiled = query.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        ordered = tuple(params[name] for name in compiled.positiontup) if compiled.positiontup else params
        with self.engine.connect() as connection:
            raw_connection: Any = connection.connection.dbapi_connection
            cursor = raw_connection.cursor(name=f"export_{id(self)}_{series.id}") if self.backend == "postgresql" \
                else raw_connection.cursor()
            try:
                cursor.execute(str(compiled), ordered)
                while True:
                    rows = cursor.fetchmany(chunk)
                    if not rows:
                        return
                    yield rows
            finally:
                cursor.close()
                if self.backend == "postgresql":
                    raw_connection.rollback()  # ends the named cursor's transaction

    def stream_window(self, ids: list[int], start: float, end: float) -> Sequence[Any]:
        """(series_id, time, raw, calibrated) of several series in one time window (a wide export's chunk)."""
        r = t.readings.c
        with self.engine.connect() as connection:
            return connection.execute(sa.select(r.series_id, r.time, r.raw, r.calibrated)
                                      .where(r.series_id.in_(ids), r.time >= start, r.time < end)).all()

    def broadcast_times(self, device: str, start: float, end: float, chunk: int = 2000) -> Iterator[list[float]]:
        b = t.broadcasts.c
        query = sa.select(b.time).where(b.device == device, b.time >= start, b.time < end).order_by(b.time)
        with self.engine.connect().execution_options(stream_results=True, yield_per=chunk) as connection:
            result = connection.execute(query)
            while True:
                rows = result.fetchmany(chunk)
                if not rows:
                    return
                yield [row[0] for row in rows]


def _add(cells: dict[int, list[float]], index: int, n_raw: Any, sum_raw: Any, n_cal: Any, sum_cal: Any) -> None:
    cell = cells.setdefault(index, [0, 0.0, 0, 0.0])
    cell[0] += n_raw or 0
    cell[1] += sum_raw or 0.0
    cell[2] += n_cal or 0
    cell[3] += sum_cal or 0.0


def _mean(n: float, total: float) -> float | None:
    return round(total / n, 6) if n else None


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _raw_text(raw: float | None) -> str:
    if raw is None:
        return "NaN"
    return str(int(raw)) if raw.is_integer() else repr(raw)
