"""Read what a broker retains on some topic filters, and know when it has all been delivered.

The broker sends a subscription's retained messages right after its SUBACK. Subscribing at QoS 0 (so no in-flight
window holds any of them back) and then subscribing once more to a topic nobody uses, the second SUBACK arrives
after every retained message of the first: the snapshot is complete then, with no waiting out a timeout. (A
subscription the broker's ACL denies is acknowledged too, with a failure code, so the marker always comes.)
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from .errors import BusError, CallTimeout
from .settings import BrokerSettings


class _Reader:
    def __init__(self, topic_filters: list[str]) -> None:
        self.topic_filters = topic_filters
        self.retained: dict[str, bytes] = {}
        self.done = threading.Event()
        self.refused: str | None = None
        self._marker_mid: int | None = None
        self._lock = threading.Lock()

    def on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any,
                   _properties: Any) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            self.done.set()
            return
        client.subscribe([(f, SubscribeOptions(qos=0)) for f in self.topic_filters])
        with self._lock:
            _rc, self._marker_mid = client.subscribe(f"benchbus-snapshot/{uuid.uuid4().hex}",
                                                     options=SubscribeOptions(qos=0))

    def on_subscribe(self, _client: Any, _userdata: Any, mid: int, _reason_codes: Any, _properties: Any) -> None:
        with self._lock:
            if mid == self._marker_mid:
                self.done.set()

    def on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.retain and message.payload and not self.done.is_set():
            self.retained[message.topic] = bytes(message.payload)


def read_retained(broker: BrokerSettings, topic_filters: list[str], timeout: float = 5.0) -> dict[str, bytes]:
    """{topic: payload} of every retained message matching the filters, as the broker holds them now."""
    reader = _Reader(topic_filters)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"benchbus-snapshot-{os.getpid()}-"
                         f"{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    client.on_connect = reader.on_connect
    client.on_subscribe = reader.on_subscribe
    client.on_message = reader.on_message
    client.connect_timeout = timeout
    try:
        client.connect(broker.host, broker.port, keepalive=10, clean_start=True)  # refused: an OSError at once
    except OSError as exc:
        raise BusError("unavailable", f"cannot reach the broker at {broker.host}:{broker.port}: {exc}") from None
    try:
        client.loop_start()
        finished = reader.done.wait(timeout)
    finally:
        if client.is_connected():
            client.disconnect()
        client.loop_stop()
    if reader.refused is not None:
        raise BusError("unavailable", f"the broker at {broker.host}:{broker.port} refused the connection: "
                                      f"{reader.refused}")
    if not finished:
        raise CallTimeout(f"no answer from the broker at {broker.host}:{broker.port} within {timeout} s")
    return dict(reader.retained)


def gateway_port(broker: BrokerSettings, device: str) -> int:
    """The port a gateway started with port 0 bound, from the address in its retained state/clients (0: unknown)."""
    topic = f"benchbus/{device}/gateway/state/clients"
    held = read_retained(broker, [topic]).get(topic, b"{}")
    try:
        return int(urlsplit(json.loads(held)["url"]).port or 0)
    except (ValueError, KeyError, TypeError):
        return 0
