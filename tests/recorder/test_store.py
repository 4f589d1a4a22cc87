"""The database layer on both backends: idempotent writes, downsampled queries, rollups, retention, audit, events."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest
import sqlalchemy as sa

from benchbus_recorder import tables
from benchbus_recorder.records import Rows, add_message
from benchbus_recorder.service import Maintenance
from benchbus_recorder.settings import RecorderSettings

from .conftest import VIALS, audit_record, broadcast, broadcast_topic, run_rows, write_run


def count(store, table) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_a_batch_written_twice_is_stored_once(store):
    rows = run_rows("rig1", 1_700_000_000.0, 50, 20.0)
    store.write(rows)
    store.write(rows)
    # od_90, od_135, temp raw per vial, plus the calibrated od series of its own
    assert count(store, tables.readings) == 50 * VIALS * 4
    assert count(store, tables.broadcasts) == 50
    assert count(store, tables.configs) == 1


def test_each_device_keeps_its_own_series(store):
    store.write(run_rows("rig1", 1_700_000_000.0, 3, 20.0))
    store.write(run_rows("rig2", 1_700_000_000.0, 3, 20.0))
    assert store.devices() == ["rig1", "rig2"]
    assert len(store.series("rig1")) == len(store.series("rig2")) == VIALS * 4


def test_calibrated_values_keep_their_fit(store):
    store.write(run_rows("rig1", 1_700_000_000.0, 5, 20.0))
    result = store.query("rig1", 1_700_000_000.0, 1_700_000_100.0, 1000, ["temp", "od"], [3])
    by_param = {s["param"]: s for s in result["series"]}
    assert by_param["temp"]["fit"] == "temp_fit_b"
    assert by_param["temp"]["calibrated"] == [30.3] * 5
    assert by_param["temp"]["raw"][0] == 1000 + 30 + 0 + 2
    assert by_param["od"]["fit"] == "od_fit_a" and by_param["od"]["raw"] == [None] * 5
    assert result["bucket_s"] == 0.0 and result["source"] == "raw"


def test_a_long_range_is_downsampled_to_the_points_asked(store):
    start = 1_700_000_000.0
    write_run(store, "rig1", start, 2000, 20.0)
    result = store.query("rig1", start, start + 2000 * 20.0, 100, ["od_90"], [0, 1])
    assert {(s["param"], s["vial"]) for s in result["series"]} == {("od_90", 0), ("od_90", 1)}
    for series in result["series"]:
        assert len(series["t"]) == 100
        assert series["t"] == sorted(series["t"])
    # each point is the mean of its bucket: 20 broadcasts of 1000 + 10 * vial + cycle % 97
    first = result["series"][1]["raw"][0]
    assert first == sum(1010 + (c % 97) for c in range(20)) / 20


def test_rollups_answer_long_ranges_and_outlive_the_raw_readings(store):
    start = 1_700_000_000.0
    write_run(store, "rig1", start, 1080, 20.0)  # 6 h
    store.load_rollup_marks([300, 3600])
    end = start + 1080 * 20.0
    store.refresh_rollups(now=end + 3600)
    before = store.query("rig1", start, end, 20, ["temp"], [5])
    assert before["source"] == "rollup_300"
    assert store.delete_raw_before(end + 1) == 1080 * VIALS * 4
    after = store.query("rig1", start, end, 20, ["temp"], [5])
    assert after["source"] == "rollup_300"
    assert after["series"][0]["calibrated"] == before["series"][0]["calibrated"]
    assert len(after["series"][0]["t"]) == 20


BUCKET = 1_700_000_100.0 - 1_700_000_100.0 % 300  # a 5-minute bucket's boundary


def rollup_counts(store, bucket: float) -> list[int]:
    with store.engine.connect() as connection:
        rollup = tables.rollups.c
        counts = connection.execute(sa.select(rollup.n).where(rollup.level == 300, rollup.bucket == bucket))
        return counts.scalars().all()


def late_reading(start: float) -> Rows:
    rows = Rows()
    add_message(rows, broadcast_topic("rig1"), json.dumps(broadcast(start + 10.0, 500)).encode(), False, set(), set())
    return rows


def test_late_readings_are_rolled_up_again(store):
    start = BUCKET
    store.load_rollup_marks([300])
    store.write(run_rows("rig1", start, 15, 20.0))  # the whole first 300 s bucket
    store.refresh_rollups(now=start + 3600)
    store.write(late_reading(start))  # e.g. redelivered after a restart, long after its bucket was rolled up
    store.refresh_rollups(now=start + 3600)
    n = rollup_counts(store, start)
    assert len(n) == VIALS * 4 and set(n) == {16}


def test_a_late_reading_in_a_bucket_retention_emptied_never_shrinks_its_rollup(store):
    start = BUCKET
    store.load_rollup_marks([300])
    store.write(run_rows("rig1", start, 15, 20.0))
    store.delete_raw_before(start + 3600)  # rolled up, then the raw readings go
    store.write(late_reading(start))  # e.g. a fleet bridge's queue, replayed after a long cut
    store.refresh_rollups(now=start + 3600)
    assert rollup_counts(store, start) == [15] * (VIALS * 4)  # not 1: the 15 it counted are gone from raw
    assert count(store, tables.readings) == VIALS * 4  # the late reading stays raw until retention reaches it


def test_a_batch_written_during_retention_is_rolled_up_or_kept_raw(store, monkeypatch):
    """A write that comes between retention's rollup refresh and its delete must wait for the delete: otherwise
    its old readings are deleted without ever being rolled up (seen in CI: one 5-minute rollup of two)."""
    start = BUCKET
    store.load_rollup_marks([300])
    store.write(run_rows("rig1", start, 15, 20.0))
    writer = threading.Thread(target=store.write, args=(late_reading(start),))
    delete = store._delete_raw

    def delete_with_a_write_racing_in(cutoff: float) -> int:
        writer.start()
        writer.join(0.5)  # where the write lands if nothing holds it back: this is the window
        return delete(cutoff)

    monkeypatch.setattr(store, "_delete_raw", delete_with_a_write_racing_in)
    store.delete_raw_before(start + 3600)
    writer.join(10)
    store.refresh_rollups(now=start + 3600)
    with store.engine.connect() as connection:
        raw_left = connection.execute(sa.select(sa.func.count()).select_from(tables.readings)
                                      .where(tables.readings.c.time < start + 300)).scalar()
    assert sum(rollup_counts(store, start)) + raw_left == 16 * VIALS * 4  # every reading rolled up or still raw


def test_retention_by_age_keeps_rollups_and_drops_old_events(store, tmp_path):
    now = time.time()
    old = now - 10 * 86400
    write_run(store, "rig1", old, 100, 20.0)
    rows = Rows()
    add_message(rows, "benchbus/rig1/gpio/event/button", b'{"action": "pressed"}', False, set(), set(), received=old)
    store.write(rows)
    store.load_rollup_marks([300])
    settings = RecorderSettings(data_dir=tmp_path, raw_retention_days=5, event_retention_days=5,
                                rollup_retention_days=30)
    done = Maintenance(store, settings).run(now)
    assert done["raw_deleted"] == 100 * VIALS * 4 and done["events_deleted"] == 1
    assert count(store, tables.readings) == 0 and count(store, tables.events) == 0
    assert count(store, tables.rollups) > 0
    assert store.query("rig1", old, old + 2000, 5, ["od"], [0])["series"], "downsampled history is kept"


def test_retention_by_size_drops_the_oldest_readings_first(store, tmp_path):
    if store.backend != "sqlite":
        pytest.skip("a PostgreSQL database's size is mostly its catalog (MBs); the size limit is the device's rule")
    start = time.time() - 3 * 86400
    write_run(store, "rig1", start, 3 * 4320 // 4, 80.0)  # three days
    store.load_rollup_marks([300])
    used = store.used_bytes()
    settings = RecorderSettings(data_dir=tmp_path, max_db_bytes=max(1_000_000, int(used * 0.8)))
    Maintenance(store, settings).run()
    assert store.used_bytes() <= settings.max_db_bytes
    oldest = store.oldest_reading()
    assert oldest is not None, "only as much as needed went"
    assert oldest >= start + 86400 - 1, "the oldest day went first"
    assert count(store, tables.rollups) > 0


def test_audit_trail_and_events_are_queryable(store):
    rows = Rows()
    for i, (principal, command, ok) in enumerate([("alice", "command", True), ("bob", "command", False),
                                                  ("gateway", "home", True)]):
        record = audit_record("scheduler" if command == "command" else "smoothie", command, principal, ok,
                              on_behalf_of="carol" if principal == "gateway" else None,
                              when=f"2026-11-30T10:00:0{i}.000Z", request={"param": "pump", "i": i})
        topic = f"benchbus/rig1/{record['records'][0]['service']}/$audit"
        add_message(rows, topic, json.dumps(record).encode(), False, set(), set())
    add_message(rows, "benchbus/rig1/smoothie/$state", b'{"state": "ready", "since": "2026-11-30T10:00:00Z"}',
                False, set(), set())
    add_message(rows, "benchbus/rig1/smoothie/event/alarm", b'{"message": "limit"}', False, set(), set(),
                received=1_796_000_000.0)
    store.write(rows)
    store.write(rows)  # redelivered: audit and $state have keys
    assert count(store, tables.audit) == 3 and count(store, tables.service_states) == 1
    everything = store.audit_records("rig1", 0, 2e9, 100)
    assert [r["principal"] for r in everything] == ["gateway", "bob", "alice"]
    assert everything[0]["on_behalf_of"] == "carol" and everything[0]["request"] == {"param": "pump", "i": 2}
    failed = store.audit_records("rig1", 0, 2e9, 100, ok=False)
    assert [r["principal"] for r in failed] == ["bob"] and failed[0]["error"]["code"] == "invalid_request"
    events = store.event_records("rig1", 0, 2e9, 100, service="smoothie")
    assert {e["name"] for e in events} == {"$state", "alarm"}


def test_identical_events_are_both_kept_unless_redelivered(store):
    first, again, redelivered = Rows(), Rows(), Rows()
    for rows, dup in ((first, False), (again, False), (redelivered, True)):
        add_message(rows, "benchbus/rig1/gpio/event/button", b'{"action": "pressed"}', dup, set(), set())
    store.write(first)
    store.write(again)  # a second real press
    store.write(redelivered)  # the broker's resend of a press already stored
    assert count(store, tables.events) == 2


def test_history_rebuilds_the_broadcasts(store):
    start = 1_700_000_000.0
    store.write(run_rows("rig1", start, 3, 20.0))
    history = store.broadcasts_between("rig1", start, start + 100, 10)
    assert [h["received"] for h in history] == [start, start + 20, start + 40]
    last = history[-1]["broadcast"]
    assert last == {**broadcast(start + 40, 2), "errors": {}}


def test_a_bucket_is_rolled_up_once_complete_even_without_new_readings(store):
    start = BUCKET
    store.load_rollup_marks([300])
    store.write(run_rows("rig1", start, 10, 20.0))  # 200 s of the first bucket
    store.refresh_rollups(now=start + 250)  # the bucket is not complete yet: nothing to roll up
    assert count(store, tables.rollups) == 0
    store.refresh_rollups(now=start + 900)  # no new readings since, and the bucket is now complete
    with store.engine.connect() as connection:
        n = connection.execute(sa.select(sa.func.sum(tables.rollups.c.n))).scalar()
    assert n == 10 * VIALS * 4


def test_a_long_history_is_thinned_evenly_to_the_limit(store):
    start = 1_700_000_000.0
    write_run(store, "rig1", start, 1000, 20.0)
    history = store.broadcasts_between("rig1", start, start + 1000 * 20.0, 100)
    times = [h["received"] for h in history]
    assert len(times) == 100 and times[-1] == start + 999 * 20.0
    assert {round(b - a) for a, b in zip(times, times[1:], strict=False)} == {200}
    assert history[0]["broadcast"]["data"]["od_90"][3] == str(1000 + 30 + (int((times[0] - start) / 20) % 97))


def test_old_export_files_are_deleted(store, tmp_path):
    settings = RecorderSettings(data_dir=tmp_path, export_keep_days=1)
    exports = settings.exports()
    exports.mkdir(parents=True)
    old, fresh = exports / "old.csv", exports / "fresh.csv.partial"
    old.write_text("time\n")
    fresh.write_text("time\n")
    week_ago = time.time() - 7 * 86400
    os.utime(old, (week_ago, week_ago))
    assert Maintenance(store, settings).run()["exports_deleted"] == 1
    assert not old.exists() and fresh.exists()
