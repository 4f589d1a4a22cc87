"""The bus client: `call(service, command, payload, timeout)` and subscriptions, for services, the CLI and tests."""
from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from typing import Any
from collections.abc import Callable

import paho.mqtt.client as mqtt
from pydantic import BaseModel

from benchbus_schemas import topics

from .connection import Callback, Connection, request_properties
from .errors import BusError, CallTimeout
from .settings import BrokerSettings


def encode(payload: Any) -> bytes:
    if payload is None:
        return b"{}"
    if isinstance(payload, BaseModel):
        return payload.model_dump_json().encode()
    return json.dumps(payload).encode()


def decode(payload: bytes | bytearray) -> Any:
    return json.loads(payload) if payload else None


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None


class BusClient:
    """Talks to services of one device. Pass `connection` to share a service's own MQTT connection.

    Who we are is the broker's word (our username: `principal`); `name` only tells this client's sessions apart
    inside that principal's own reply namespace (leases are held per session).
    """

    _sequence = itertools.count()

    def __init__(self, device: str, broker: BrokerSettings | None = None, name: str | None = None,
                 connection: Connection | None = None):
        self.device = device
        self.name = name or f"client-{os.getpid()}-{next(self._sequence)}-{uuid.uuid4().hex[:6]}"
        if not topics.valid_name(self.name):
            raise ValueError(f"client name {self.name!r}: letters, digits and _.@:- only, one topic level")
        self._owns_connection = connection is None
        self.connection = connection or Connection(f"benchbus-{self.name}", broker or BrokerSettings())
        self.principal = self.connection.principal
        self._pending: dict[bytes, _Pending] = {}
        self._lock = threading.Lock()
        self.reply_topic = topics.reply_topic(device, self.principal, self.name)
        self.connection.subscribe(self.reply_topic, self._on_reply)

    def __enter__(self) -> BusClient:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self, timeout: float = 10.0) -> None:
        if self._owns_connection:
            self.connection.start()
            if not self.connection.wait_connected(timeout):
                raise CallTimeout(f"no connection to the broker at {self.connection.broker.host}:"
                                  f"{self.connection.broker.port} within {timeout} s")

    def close(self) -> None:
        if self._owns_connection:
            self.connection.stop()

    # -- requests --------------------------------------------------------------------------------------------------

    def call(self, service: str, command: str, payload: Any = None, timeout: float = 5.0,
             device: str | None = None, on_behalf_of: str | None = None) -> Any:
        """Send one request and return its `result`; raises BusError on an error reply, CallTimeout on silence.

        A request the broker refuses (its ACL does not give our principal that command) raises BusError
        `unauthorized` at once. `on_behalf_of` names whom we act for (attribution in leases and the audit trail).
        """
        deadline = time.monotonic() + timeout
        target = topics.command_topic(device or self.device, service, command, self.principal)
        if not self.connection.wait_connected(timeout):
            raise CallTimeout(f"broker unreachable: {service}/{command} not sent within {timeout} s",
                              {"service": service, "command": command})
        correlation = uuid.uuid4().bytes
        pending = _Pending()
        with self._lock:
            self._pending[correlation] = pending
        try:
            remaining = max(0.001, deadline - time.monotonic())
            props = request_properties(self.reply_topic, correlation, remaining, on_behalf_of)
            self.connection.publish(target, encode(payload), kind="request", properties=props,
                                    on_refused=lambda reason: self._refused(pending, service, command, reason))
            if not pending.done.wait(max(0.0, deadline - time.monotonic())):
                raise CallTimeout(f"no reply from {service}/{command} within {timeout} s",
                                  {"service": service, "command": command})
        finally:
            with self._lock:
                self._pending.pop(correlation, None)
        reply = pending.reply or {}
        if reply.get("ok") is True:
            return reply.get("result")
        raise BusError.from_body(reply.get("error") or {"code": "internal", "message": f"malformed reply {reply!r}"})

    def _refused(self, pending: _Pending, service: str, command: str, reason: str) -> None:
        message = f"the broker refused {service}/{command} for {self.principal}: {reason}"
        pending.reply = {"ok": False, "error": {"code": "unauthorized", "message": message,
                                                "detail": {"principal": self.principal}}}
        pending.done.set()

    def _on_reply(self, message: mqtt.MQTTMessage) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        with self._lock:
            pending = self._pending.get(correlation) if correlation else None
        if pending is None:
            return  # a late reply to a call that already timed out
        try:
            pending.reply = decode(message.payload)
        except ValueError:
            pending.reply = {"ok": False, "error": {"code": "internal", "message": "reply is not valid JSON"}}
        pending.done.set()

    # -- subscriptions ---------------------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, callback: Callable[[str, Any, mqtt.MQTTMessage], None]) -> Callback:
        """callback(topic, decoded JSON or None, raw message), on the network thread: keep it quick."""
        def deliver(message: mqtt.MQTTMessage) -> None:
            try:
                data = decode(message.payload)
            except ValueError:
                data = None
            callback(message.topic, data, message)
        self.connection.subscribe(topic_filter, deliver)
        return deliver

    def unsubscribe(self, topic_filter: str, handle: Callback | None = None) -> None:
        """Remove one subscription (the handle `subscribe` returned), or every one on the filter."""
        self.connection.unsubscribe(topic_filter, handle)

    def topic(self, service: str, kind: str, name: str) -> str:
        return topics.topic(self.device, service, kind, name)

    def wait_for(self, topic_filter: str, predicate: Callable[[str, Any], bool] = lambda _t, _d: True,
                 timeout: float = 10.0) -> tuple[str, Any]:
        """Subscribe, wait for the first message that satisfies `predicate`, unsubscribe. Retained ones count."""
        found: list[tuple[str, Any]] = []
        event = threading.Event()

        def check(topic_name: str, data: Any, _message: mqtt.MQTTMessage) -> None:
            if not event.is_set() and predicate(topic_name, data):
                found.append((topic_name, data))
                event.set()

        handle = self.subscribe(topic_filter, check)
        try:
            if not event.wait(timeout):
                raise CallTimeout(f"nothing matching on {topic_filter} within {timeout} s")
            return found[0]
        finally:
            self.unsubscribe(topic_filter, handle)
