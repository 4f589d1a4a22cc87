"""Nothing lost, nothing twice: kill -9 of the recorder mid-stream, and a broker restart, on both databases.

The recorder acknowledges a message only after its commit, on a persistent session: whatever it had not committed
comes again from the broker, and whatever it had committed but not acknowledged comes again and hits its key.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from benchbus import BusClient
from benchbus.testing import wait_until
from benchbus.testing.broker import MosquittoProcess
from benchbus.testing.plugin import service_env
from benchbus_recorder import tables
from benchbus_recorder.store import Store

from .conftest import VIALS, Publisher, broadcast, broadcast_topic

pytestmark = pytest.mark.slow
ROWS_PER_BROADCAST = VIALS * 4  # od_90, od_135, temp raw and the calibrated od series


def recorder_env(database_url: str, data_dir, client_id: str) -> dict:
    return {"BENCHBUS_RECORDER_DATABASE_URL": database_url, "BENCHBUS_RECORDER_DATA_DIR": str(data_dir),
            "BENCHBUS_RECORDER_HTTP_PORT": "0", "BENCHBUS_RECORDER_INGEST_CLIENT_ID": client_id,
            "BENCHBUS_RECORDER_COMMIT_INTERVAL_S": "0.05", "BENCHBUS_RECORDER_BATCH_MAX": "50"}


def counts(database_url: str, device: str) -> tuple[int, int]:
    store = Store(database_url, migrate=False)
    try:
        with store.engine.connect() as connection:
            broadcasts = connection.execute(sa.select(sa.func.count()).select_from(tables.broadcasts)
                                            .where(tables.broadcasts.c.device == device)).scalar()
            readings = connection.execute(sa.select(sa.func.count()).select_from(tables.readings)).scalar()
        return broadcasts, readings
    finally:
        store.close()


def distinct_times(database_url: str, device: str) -> set[float]:
    store = Store(database_url, migrate=False)
    try:
        with store.engine.connect() as connection:
            return set(connection.execute(sa.select(tables.broadcasts.c.time)
                                          .where(tables.broadcasts.c.device == device)).scalars())
    finally:
        store.close()


class Stream:
    """Publishes `total` broadcasts at about `rate` per second on a thread, waiting out broker outages."""

    def __init__(self, publisher: Publisher, device: str, total: int, rate: float):
        self.publisher = publisher
        self.device = device
        self.total = total
        self.rate = rate
        self.sent: list[int] = []
        self.times: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.base = time.time() - total * 20.0

    def _run(self) -> None:
        for cycle in range(self.total):
            self.publisher.connected.wait(30)
            when = self.base + cycle * 20.0
            self.sent.append(self.publisher.publish(broadcast_topic(self.device), broadcast(when, cycle)))
            self.times.append(when)
            time.sleep(1.0 / self.rate)  # the point: the DPU-like publishing rate

    def start(self) -> None:
        self.thread.start()

    def wait_sent(self, n: int, timeout: float = 60.0) -> None:
        wait_until(lambda: len(self.sent) >= n, timeout, f"{n} broadcasts published")

    def join(self) -> None:
        self.thread.join(120)
        wait_until(lambda: self.publisher.all_acked(self.sent), 60, "the broker acknowledging every broadcast")


def wait_for_count(database_url: str, device: str, expected: int, timeout: float = 60.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    seen = (0, 0)
    while time.monotonic() < deadline:
        seen = counts(database_url, device)
        if seen[0] >= expected:
            return seen
        time.sleep(0.2)
    return seen


def test_kill_9_mid_stream_loses_nothing_and_records_nothing_twice(database_url, broker, device, spawn, publisher,
                                                                    tmp_path):
    env = recorder_env(database_url, tmp_path / "recorder", f"rec-{uuid.uuid4().hex[:8]}")
    argv = ["python", "-m", "benchbus_recorder"]
    recorder = spawn(argv, "recorder", env)
    stream = Stream(publisher(), device, total=900, rate=150)
    stream.start()
    for kill_at in (200, 500):
        stream.wait_sent(kill_at)
        recorder.kill9()
        stream.wait_sent(kill_at + 100)  # the broker queues these for the dead recorder's session
        recorder = spawn(argv, "recorder", env)
    stream.join()
    broadcasts, readings = wait_for_count(database_url, device, stream.total)
    assert broadcasts == stream.total, f"{stream.total - broadcasts} broadcasts lost"
    assert readings == stream.total * ROWS_PER_BROADCAST
    assert distinct_times(database_url, device) == set(stream.times)


@pytest.fixture
def persistent_broker(tmp_path):
    store_dir = tmp_path / "mosquitto-db"
    store_dir.mkdir()
    # Sessions and queued messages survive the restart (the Pi's broker has `persistence true` too). Started as
    # root, Mosquitto would switch to its own user and could not write under pytest's private temp dir.
    broker = MosquittoProcess(extra_conf=f"persistence true\npersistence_location {store_dir}/\nuser root\n")
    broker.start()
    yield broker
    broker.close()


def test_broker_restart_loses_nothing_and_records_nothing_twice(database_url, persistent_broker, device, tmp_path):
    env = service_env(persistent_broker, device, recorder_env(database_url, tmp_path / "recorder",
                                                              f"rec-{uuid.uuid4().hex[:8]}"))
    log_path = tmp_path / "recorder.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "benchbus_recorder"], env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    publisher = None
    try:
        with BusClient(device, persistent_broker.settings()) as bus:
            bus.wait_for(f"benchbus/{device}/recorder/$state",
                         lambda _t, d: isinstance(d, dict) and d.get("state") == "ready"
                         and d.get("pid") == process.pid,
                         30)
        publisher = Publisher(persistent_broker)
        stream = Stream(publisher, device, total=600, rate=150)
        stream.start()
        stream.wait_sent(250)
        persistent_broker.restart(down_s=0.5)
        assert (tmp_path / "mosquitto-db" / "mosquitto.db").exists(), "the broker did not persist its sessions"
        stream.join()
        broadcasts, readings = wait_for_count(database_url, device, stream.total)
        assert broadcasts == stream.total, f"{stream.total - broadcasts} broadcasts lost\n{log_path.read_text()}"
        assert readings == stream.total * ROWS_PER_BROADCAST
        assert distinct_times(database_url, device) == set(stream.times)
    finally:
        if publisher is not None:
            publisher.close()
        process.terminate()
        process.wait(15)
    assert process.returncode in (0, -15), log_path.read_text()
    assert os.path.exists(log_path)


def test_a_database_outage_costs_retries_never_a_broadcast(broker, device, publisher, make_settings, serve, bus,
                                                           tmp_path):
    """PostgreSQL stopped under a running recorder: it says degraded, acknowledges nothing, and when the server is
    back every broadcast is there once."""
    from benchbus_recorder.service import RecorderService
    from benchbus_recorder.settings import RecorderSettings

    from .postgres import PostgresServer

    server = PostgresServer()
    if server.url_from_env:
        pytest.skip("stops and starts its own server: BENCHBUS_TEST_POSTGRES_URL is someone else's")
    server.start()
    try:
        url = server.new_database()
        serve(RecorderService, make_settings(RecorderSettings, data_dir=tmp_path / "recorder", database_url=url,
                                             http_port=0, commit_interval_s=0.05,
                                             ingest_client_id=f"rec-{uuid.uuid4().hex[:8]}"))
        stream = Stream(publisher(), device, total=200, rate=100)
        stream.start()
        stream.wait_sent(50)
        server.pg_ctl("stop", "-m", "immediate")
        bus.wait_for(f"benchbus/{device}/recorder/$state", lambda _t, d: d.get("state") == "degraded", 20)
        stream.join()
        server.pg_ctl("start", "-w")
        bus.wait_for(f"benchbus/{device}/recorder/$state", lambda _t, d: d.get("state") == "ready", 30)
        broadcasts, readings = wait_for_count(url, device, stream.total)
        assert broadcasts == stream.total and readings == stream.total * ROWS_PER_BROADCAST
        assert distinct_times(url, device) == set(stream.times)
    finally:
        server.stop()
