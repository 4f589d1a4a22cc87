"""The recorder's ingest: a persistent MQTT session whose messages are acknowledged only after their commit.

    broker --QoS 1--> on_message (network thread) --> queue --> writer thread: parse, write a batch in one
    transaction, commit, then PUBACK every message of the batch

The session survives the recorder (clean_start False, a session expiry): while it is down, or killed with -9, the
broker keeps every unacknowledged and every new message for it and sends them again when it is back; a message
that was committed but whose acknowledgement was lost comes again and its key makes it a no-op. The runtime's
`Connection` acknowledges on receipt, which is why this one connection is plain paho.

A message id is only good on the connection it arrived on: after a reconnect the broker resends what was not
acknowledged under new ids, so acknowledgements of an older connection's messages are dropped, never sent.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from benchbus.settings import BrokerSettings

from .records import BAD_INPUT, Rows, add_message
from .store import Store

log = logging.getLogger("benchbus.recorder.ingest")


@dataclass
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    generation: int
    arrived: float


def filters(device: str | None) -> list[str]:
    """What the recorder follows: every event (broadcasts included), every audit record, every $state."""
    who = device or "+"
    return [f"benchbus/{who}/+/event/#", f"benchbus/{who}/+/$audit", f"benchbus/{who}/+/$state"]


class Ingest:
    def __init__(self, store: Store, broker: BrokerSettings, client_id: str, device: str | None,
                 session_expiry_s: int = 7 * 86400, commit_interval_s: float = 0.25, batch_max: int = 2000,
                 receive_maximum: int = 5000, skip_audit: set[str] | None = None,
                 service_principals: set[str] | None = None,
                 on_committed: Callable[[list[Inbound], Rows], None] | None = None,
                 on_health: Callable[[str | None], None] | None = None):
        self.store = store
        self.broker = broker
        self.client_id = client_id
        self.filters = filters(device)
        self.session_expiry_s = session_expiry_s
        self.commit_interval_s = commit_interval_s
        self.batch_max = batch_max
        self.receive_maximum = receive_maximum
        self.skip_audit = skip_audit or set()
        self.service_principals = service_principals or set()
        self.on_committed = on_committed
        self.on_health = on_health  # called with the reason writes fail, and with None when they work again
        self.failing: str | None = None
        self._queue: queue.Queue[Inbound | None] = queue.Queue()
        self._generation = 0
        self._ack_lock = threading.Lock()  # a generation check and its acknowledgements are one step
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.committed = 0
        self.skipped = 0
        self.rejected = 0
        self.failures = 0
        self.last_commit: float | None = None
        self.lags: deque[float] = deque(maxlen=1000)
        self._client = self._make_client()
        self._writer = threading.Thread(target=self._write_loop, name="recorder-writer", daemon=True)

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        client.manual_ack_set(True)
        # paho annotates the delays as int, but sleeps any number: sub-second backoff is what tests and a LAN need
        client.reconnect_delay_set(self.broker.reconnect_min_s, self.broker.reconnect_max_s)  # type: ignore[arg-type]
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = lambda *_args: self.subscribed.set()
        return client

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        properties.ReceiveMaximum = self.receive_maximum
        self._writer.start()
        self._client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s, clean_start=False,
                                   properties=properties)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Commit what has arrived, acknowledge it, disconnect (the session stays on the broker)."""
        self._stop.set()
        self._queue.put(None)
        self._writer.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def lag_p99(self) -> float | None:
        if not self.lags:
            return None
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    # -- network thread ------------------------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the ingest connection: %s", reason_code)
            return
        with self._ack_lock:
            self._generation += 1
        self.connected.set()
        log.info("ingest connected (session present: %s)", flags.session_present)
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        with self._ack_lock:
            self._generation += 1  # acknowledgements of the connection that ended must never be sent on a new one
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("ingest disconnected (%s); the broker keeps the session, reconnecting", reason_code)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        self._queue.put(Inbound(message.topic, bytes(message.payload), message.mid, message.qos, bool(message.dup),
                                self._generation, time.monotonic()))

    # -- writer thread -------------------------------------------------------------------------------------------------

    def _next_batch(self) -> list[Inbound] | None:
        """Up to batch_max messages, waiting at most commit_interval_s after the first one; None at stop."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.commit_interval_s
        while len(batch) < self.batch_max:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # finish this batch, then stop
                break
            batch.append(item)
        return batch

    def _write_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._commit(batch)

    def _health(self, reason: str | None) -> None:
        changed = reason != self.failing
        self.failing = reason
        if changed and self.on_health is not None:
            try:
                self.on_health(reason)
            except Exception:
                log.exception("health hook failed")

    def _rows(self, batch: list[Inbound]) -> Rows:
        rows = Rows()
        for item in batch:
            try:
                skipped = add_message(rows, item.topic, item.payload, item.dup, self.skip_audit,
                                      self.service_principals)
            except BAD_INPUT as exc:
                self.rejected += 1
                log.warning("not recorded: %s (%s)", item.topic, str(exc).splitlines()[0][:200])
                continue
            if skipped is not None:
                self.skipped += 1
        return rows

    def _commit(self, batch: list[Inbound]) -> None:
        rows = self._rows(batch)
        while True:
            try:
                self.store.write(rows)
                break
            except Exception as exc:
                # The database is unreachable (PostgreSQL restarting, a full disk): nothing is acknowledged, so
                # nothing is lost; retry the same batch until it commits or the recorder stops.
                self.failures += 1
                if self.failing is None:
                    log.exception("writing a batch of %d messages failed; retrying every second", len(batch))
                self._health(f"database write failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
                if self._stop.wait(1.0):
                    return
        if self.failing is not None:
            log.info("database writes work again")
            self._health(None)
        now = time.monotonic()
        self.committed += len(batch)
        self.last_commit = time.time()
        with self._ack_lock:
            for item in batch:
                self.lags.append(now - item.arrived)
                if item.qos > 0 and item.generation == self._generation:
                    self._client.ack(item.mid, item.qos)
        if self.on_committed is not None:
            try:
                self.on_committed(batch, rows)
            except Exception:
                log.exception("after-commit hook failed")
