"""Shared fixtures of the recorder tests: both databases (the same suite runs on each), broadcasts, publishers."""
from __future__ import annotations

import json
import math
import threading
import uuid
from datetime import datetime, UTC

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchbus_recorder.records import Rows, add_message
from benchbus_recorder.store import Store

from .postgres import PostgresServer

VIALS = 16
RAW_PARAMS = ("od_90", "od_135", "temp")


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'recorder.sqlite3'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def store(database_url):
    opened = Store(database_url)
    yield opened
    opened.close()


def broadcast(when: float, cycle: int, vials: int = VIALS, calibrated: bool = True) -> dict:
    """A scheduler broadcast as the emulated stack publishes it (values as strings, calibrated od and temp)."""
    data = {param: [str(1000 + 10 * vial + (cycle % 97) + k) for vial in range(vials)]
            for k, param in enumerate(RAW_PARAMS)}
    out = {"data": data, "config": {"temp": {"value": ["2048"] * vials}}, "ip": "127.0.0.1", "timestamp": when,
           "status": {p: "ok" for p in RAW_PARAMS}, "errors": {}, "cycle": cycle, "cycle_s": 1.5,
           "broadcast_timing": 20.0, "calibrated": {}, "calibration": {}}
    if calibrated:
        out["calibrated"] = {"od": [round(0.05 + 0.01 * vial + 0.001 * math.sin(cycle / 50), 6)
                                    for vial in range(vials)],
                             "temp": [round(30.0 + 0.1 * vial, 3) for vial in range(vials)]}
        out["calibration"] = {"od": "od_fit_a", "temp": "temp_fit_b"}
    return out


def broadcast_topic(device: str) -> str:
    return f"benchbus/{device}/scheduler/event/broadcast"


def run_rows(device: str, start: float, count: int, interval: float, vials: int = VIALS, first: int = 0) -> Rows:
    """Broadcasts `first` .. `first + count - 1` of a run that began at `start`, as the recorder's own ingest turns
    them into rows (the same parsing, the same path)."""
    rows = Rows()
    for cycle in range(first, first + count):
        payload = json.dumps(broadcast(start + cycle * interval, cycle, vials)).encode()
        add_message(rows, broadcast_topic(device), payload, False, set(), set())
    return rows


def write_run(store: Store, device: str, start: float, count: int, interval: float, per_batch: int = 500) -> None:
    for first in range(0, count, per_batch):
        store.write(run_rows(device, start, min(per_batch, count - first), interval, first=first))


class Publisher:
    """A QoS 1 publisher with its own persistent session: it resends what the broker has not acknowledged after a
    reconnect, and counts what the broker did acknowledge."""

    def __init__(self, broker, name: str | None = None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name or f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.acked: set[int] = set()
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.connected = threading.Event()
        self.client.on_connect = lambda *_a: self.connected.set()
        self.client.on_disconnect = lambda *_a: self.connected.clear()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect_async(broker.host, broker.port, 10, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self.connected.wait(10), "publisher could not connect"

    def _on_publish(self, _client, _userdata, mid, _reason, _properties) -> None:
        with self._lock:
            self.acked.add(mid)

    def publish(self, topic: str, payload: dict | bytes, qos: int = 1, retain: bool = False) -> int:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, body, qos=qos, retain=retain)
        return info.mid

    def all_acked(self, mids) -> bool:
        with self._lock:
            return set(mids) <= self.acked

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker):
    made = []

    def make(name: str | None = None, on=None) -> Publisher:
        pub = Publisher(on or broker, name)
        made.append(pub)
        return pub

    yield make
    for pub in made:
        pub.close()


def audit_record(service: str, command: str, principal: str, ok: bool = True, on_behalf_of: str | None = None,
                 when: str | None = None, request: dict | None = None) -> dict:
    """What the runtime publishes on benchbus/<device>/<service>/$audit for one handled command: a batch of one."""
    if when is None:
        when = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"records": [{"time": when, "service": service, "command": command, "principal": principal,
                         "on_behalf_of": on_behalf_of, "ok": ok,
                         "error": None if ok else {"code": "invalid_request", "message": "field 'value': too large"},
                         "request": request, "duration_ms": 1.25}]}
