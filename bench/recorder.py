"""Benchmark of the recorder (SQLite, the device's database) against its floors.

    .venv/bin/python bench/recorder.py [--quick]

Prints, in one run:
- sustained ingest: broadcasts of 16 vials x 5 params (plus calibrated od and temp) published over a real Mosquitto
  to the recorder process, as fast as a QoS 1 publisher sends them; broadcasts per second from the first publish to
  the last commit (target >= 500/s), beside the floor: the same readings written by a bare sqlite3 `executemany` in
  one transaction (no broker, no parsing, no key checks against earlier batches);
- commit lag at a steady 500 broadcasts/s: from the publish to the row being readable in the database, p50/p99
  (target p99 < 1 s), polled every 20 ms from another connection;
- CSV (tidy) export of 1,000,000 readings, ours (the streamed export) beside a bare sqlite3 SELECT + csv.writer
  (target < 2 s);
- a 7-day chart query (16 vials, calibrated OD) downsampled to 1,000 points per vial, from the rollups, beside the
  same query grouped over the raw readings (target < 100 ms);
- the database's size per emulated day (readings, broadcasts, rollups), at a 20 s broadcast.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from benchbus import BusClient
from benchbus.testing.bench import percentile
from benchbus.testing.broker import MosquittoProcess
from benchbus_recorder.exports import Export
from benchbus_recorder.records import Rows, add_message
from benchbus_recorder.store import Store

VIALS = 16
PARAMS = ("od_90", "od_135", "temp", "stir", "od_led")
INTERVAL = 20.0


def broadcast(when: float, cycle: int) -> dict:
    data = {p: [str(1000 + 37 * v + (cycle * (k + 1)) % 251) for v in range(VIALS)] for k, p in enumerate(PARAMS)}
    return {"data": data, "config": {"stir": {"value": ["8"] * VIALS}}, "ip": "10.0.0.2", "timestamp": when,
            "status": {p: "ok" for p in PARAMS}, "errors": {}, "cycle": cycle, "cycle_s": 4.2,
            "broadcast_timing": INTERVAL,
            "calibrated": {"od": [round(0.1 + 0.002 * v + 1e-5 * cycle, 6) for v in range(VIALS)],
                           "temp": [round(30 + 0.05 * v + 1e-4 * (cycle % 100), 4) for v in range(VIALS)]},
            "calibration": {"od": "od_sigmoid_a", "temp": "temp_linear_b"}}


def rows_of(device: str, start: float, first: int, count: int) -> Rows:
    rows = Rows()
    for cycle in range(first, first + count):
        add_message(rows, f"benchbus/{device}/scheduler/event/broadcast",
                    json.dumps(broadcast(start + cycle * INTERVAL, cycle)).encode(), False, set(), set())
    return rows


# -- ingest ------------------------------------------------------------------------------------------------------------

class RecorderProcess:
    def __init__(self, broker: MosquittoProcess, device: str, data_dir: Path):
        env = dict(os.environ, BENCHBUS_DEVICE=device, BENCHBUS_BROKER_HOST=broker.host,
                   BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_LOG_LEVEL="warning",
                   BENCHBUS_RECORDER_DATA_DIR=str(data_dir), BENCHBUS_RECORDER_HTTP_PORT="0",
                   BENCHBUS_RECORDER_MAINTENANCE_INTERVAL_S="3600")
        self.db_path = data_dir / "recorder.sqlite3"
        self.process = subprocess.Popen([sys.executable, "-m", "benchbus_recorder"], env=env)
        with BusClient(device, broker.settings()) as bus:
            bus.wait_for(f"benchbus/{device}/recorder/$state",
                         lambda _t, d: isinstance(d, dict) and d.get("state") == "ready"
                         and d.get("pid") == self.process.pid, 60)

    def committed(self, connection: sqlite3.Connection) -> tuple[int, float | None]:
        return connection.execute("SELECT count(*), max(time) FROM broadcasts").fetchone()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def publisher(broker: MosquittoProcess) -> mqtt.Client:
    """A plain paho QoS 1 publisher (the scheduler's side), with room for many unacknowledged messages."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def ingest_burst(broker: MosquittoProcess, recorder: RecorderProcess, device: str, count: int) -> float:
    """Broadcasts per second from the first publish to the last commit."""
    client = publisher(broker)
    payloads = [json.dumps(broadcast(1.0e9 + i * INTERVAL, i)).encode() for i in range(count)]
    reader = sqlite3.connect(recorder.db_path)
    started = time.perf_counter()
    for payload in payloads:
        client.publish(f"benchbus/{device}/scheduler/event/broadcast", payload, qos=1)
    while recorder.committed(reader)[0] < count:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    reader.close()
    client.disconnect()
    client.loop_stop()
    return count / elapsed


def ingest_lag(broker: MosquittoProcess, recorder: RecorderProcess, device: str, rate: float,
               seconds: float) -> list[float]:
    """Publish at `rate` per second; each broadcast's timestamp is its publish time; a reader polls max(time)."""
    client = publisher(broker)
    published: list[float] = []
    lags: list[float] = []
    done = threading.Event()

    def poll() -> None:
        reader = sqlite3.connect(recorder.db_path)
        seen = 0
        while not done.is_set() or seen < len(published):
            newest = recorder.committed(reader)[1] or 0.0
            now = time.time()
            while seen < len(published) and published[seen] <= newest:
                lags.append(now - published[seen])
                seen += 1
            time.sleep(0.02)
        reader.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    total = int(rate * seconds)
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        when = time.time()
        published.append(when)
        client.publish(f"benchbus/{device}/scheduler/event/broadcast", json.dumps(broadcast(when, i)).encode(), qos=1)
    done.set()
    poller.join(60)
    client.disconnect()
    client.loop_stop()
    return lags


def floor_ingest(rows: Rows, count: int, directory: Path) -> float:
    """The same readings by a bare executemany in one transaction: broadcasts per second."""
    path = directory / "floor.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE readings (series_id INTEGER, time REAL, raw REAL, calibrated REAL, fit_id "
                       "INTEGER, PRIMARY KEY (series_id, time)) WITHOUT ROWID")
    ids: dict[tuple, int] = {}
    values = [(ids.setdefault((r.param, r.vial), len(ids)), r.time, r.raw, r.calibrated, None) for r in rows.readings]
    started = time.perf_counter()
    with connection:
        connection.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?)", values)
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


# -- export, query, size ----------------------------------------------------------------------------------------

def build_week(store: Store, device: str, start: float, days: float) -> int:
    count = int(days * 86400 / INTERVAL)
    for first in range(0, count, 2000):
        store.write(rows_of(device, start, first, min(2000, count - first)))
    store.load_rollup_marks([300, 3600])
    store.refresh_rollups(now=start + count * INTERVAL + 3600)
    return count


def export_ours(store: Store, device: str, start: float, end: float) -> tuple[float, int]:
    export = Export(store, "csv_tidy", device, start, end)
    started = time.perf_counter()
    size = sum(len(chunk) for chunk in export)
    return time.perf_counter() - started, export.rows if size else 0


def export_floor(db_path: Path, start: float, end: float) -> tuple[float, int]:
    connection = sqlite3.connect(db_path)
    started = time.perf_counter()
    cursor = connection.execute(
        "SELECT r.time, s.device, s.param, s.vial, r.raw, r.calibrated, f.name FROM readings r "
        "JOIN series s ON s.id = r.series_id LEFT JOIN fits f ON f.id = r.fit_id "
        "WHERE r.time >= ? AND r.time < ?", (start, end))
    with open(os.devnull, "w", newline="") as sink:
        writer = csv.writer(sink)
        rows = 0
        while batch := cursor.fetchmany(20000):
            writer.writerows(batch)
            rows += len(batch)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed, rows


def query_ms(store: Store, device: str, start: float, end: float, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = store.query(device, start, end, 1000, ["od"], None)
        samples.append((time.perf_counter() - started) * 1000)
        assert len(result["series"]) == VIALS
    return percentile(samples, 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs (2 emulated days, shorter ingest)")
    args = parser.parse_args(argv)
    burst = 3000 if args.quick else 8000
    lag_seconds = 4.0 if args.quick else 10.0
    days = 2.0 if args.quick else 7.0
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        directory = Path(tmp)
        broker = MosquittoProcess()
        broker.start()
        device = f"bench{os.getpid()}"
        recorder = RecorderProcess(broker, device, directory / "recorder")
        try:
            ours_rate = ingest_burst(broker, recorder, device, burst)
            lags = ingest_lag(broker, recorder, device, 500.0, lag_seconds)
        finally:
            recorder.close()
            broker.close()
        floor_rate = floor_ingest(rows_of(device, 1.0e9, 0, burst), burst, directory)
        rows_per = VIALS * (len(PARAMS) + 1)
        print(f"ingest ({burst} broadcasts of {VIALS} vials x {len(PARAMS)} params, {rows_per} rows each): "
              f"ours {ours_rate:.0f} broadcasts/s, floor (bare executemany, one transaction) {floor_rate:.0f}/s, "
              f"ratio {ours_rate / floor_rate:.2f}")
        lag_p50, lag_p99 = percentile(lags, 0.5), percentile(lags, 0.99)
        print(f"commit lag at 500 broadcasts/s for {lag_seconds:.0f} s ({len(lags)} broadcasts): p50 {lag_p50:.3f} s, "
              f"p99 {lag_p99:.3f} s")

        week_path = directory / "week.sqlite3"
        store = Store(f"sqlite:///{week_path}")
        start = 1_767_225_600.0
        built = time.perf_counter()
        count = build_week(store, device, start, days)
        built = time.perf_counter() - built
        bytes_per_day = store.file_bytes() / days
        print(f"{days:.0f} emulated days ({count} broadcasts, {count * rows_per} readings) written in {built:.1f} s; "
              f"database {store.file_bytes() / 1e6:.1f} MB, {bytes_per_day / 1e6:.1f} MB per day")
        export_end = start + (1_000_000 // rows_per + 1) * INTERVAL
        ours_s, ours_rows = export_ours(store, device, start, export_end)
        floor_s, floor_rows = export_floor(week_path, start, export_end)
        scale = 1_000_000 / ours_rows
        print(f"CSV tidy export of {ours_rows} rows: ours {ours_s:.2f} s, floor (sqlite3 + csv.writer) {floor_s:.2f} s "
              f"({floor_rows} rows), ratio {ours_s / floor_s:.2f}")
        end = start + count * INTERVAL
        ours_q = query_ms(store, device, start, end)
        store.rollup_marks.clear()  # the same query over the raw readings (what it costs without the rollups)
        raw_q = query_ms(store, device, start, end, repeats=3)
        print(f"{days:.0f}-day chart query, {VIALS} vials, 1000 points each: ours (rollups) {ours_q:.1f} ms, "
              f"grouped over raw readings {raw_q:.1f} ms")
        store.close()
    print(json.dumps({
        "ingest_broadcasts_per_s": round(ours_rate, 1), "ingest_floor_broadcasts_per_s": round(floor_rate, 1),
        "ingest_ratio_vs_floor": round(ours_rate / floor_rate, 3), "commit_lag_p50_s": round(lag_p50, 3),
        "commit_lag_p99_s": round(lag_p99, 3), "export_1m_rows_s": round(ours_s * scale, 3),
        "export_floor_1m_rows_s": round(floor_s * 1_000_000 / max(floor_rows, 1), 3),
        "query_7d_ms": round(ours_q, 1), "query_7d_raw_ms": round(raw_q, 1), "bytes_per_day": int(bytes_per_day),
        "emulated_days": days,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
