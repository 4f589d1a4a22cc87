"""One MQTT 5 connection (paho-mqtt 2.x) that survives the broker going away.

- a last will, set before the first connect;
- reconnect with exponential backoff, forever (paho's own loop thread does it);
- on every (re)connect: subscribe everything again, publish every retained message again, flush the queue;
- while disconnected: retained messages are coalesced (the latest per topic is re-published on connect), events
  wait in a bounded queue that drops the oldest, replies wait in an unbounded one (a reply is never dropped).
Requests are never queued: a stale motion command must not reach a robot after its caller gave up.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from benchbus_schemas import topics

from . import paho_speedups
from .settings import BrokerSettings

log = logging.getLogger("benchbus.connection")
paho_speedups.install()  # received MQTT 5 properties decoded without rebuilding paho's tables each time

MessageKind = Literal["state", "event", "reply", "request"]
Callback = Callable[[mqtt.MQTTMessage], None]


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None


class Connection:
    def __init__(self, client_id: str, broker: BrokerSettings, will: tuple[str, bytes] | None = None,
                 offline_queue: int = 1000):
        self.client_id = client_id
        self.broker = broker
        # Who the broker will say we are: our username. The anonymous development broker proves nobody.
        self.principal = broker.username or topics.DEV_PRINCIPAL
        self._lock = threading.RLock()
        self._subscriptions: dict[str, list[Callback]] = {}
        self._no_local: dict[str, bool] = {}
        self._retained: dict[str, _Outgoing] = {}
        self._events: deque[_Outgoing] = deque(maxlen=offline_queue)
        self._replies: list[_Outgoing] = []
        self.connected = threading.Event()  # the TCP/MQTT session is up: publishing goes out now
        self.subscribed = threading.Event()  # ... and the broker acknowledged every subscription
        self._suback_waiters: dict[int | None, threading.Event] = {}  # paho's mid is None when it sent nothing
        # PUBACK reason codes of requests. No lock: paho calls on_publish holding its own message mutex, which
        # publish() needs too, so taking ours there would deadlock; dict operations are atomic under the GIL.
        self._refusal_callbacks: dict[int, Callable[[str], None]] = {}
        self._early_refusals: dict[int, str] = {}  # refused before publish() could register its callback
        self.connect_count = 0
        self._closing = False
        self._batch_mid: int | None = None
        self._started = False
        self._client = self._make_client(will)

    def _make_client(self, will: tuple[str, bytes] | None) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        # paho annotates the delays as int, but sleeps any number: sub-second backoff is what tests and a LAN need
        client.reconnect_delay_set(self.broker.reconnect_min_s, self.broker.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_unrouted
        client.on_subscribe = self._handle_suback
        client.on_publish = self._handle_puback
        return client

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background. Idempotent: a second connect_async on a running client would drop the
        session and reconnect (the CLI lost ~5 s per command that way, waiting for a SUBACK that never came)."""
        if self._started:
            return
        self._started = True
        self._client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s, clean_start=True)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Connected, with every subscription acknowledged (so no request can slip past before we listen)."""
        return self.subscribed.wait(timeout)

    def stop(self) -> None:
        """Disconnect cleanly (the broker then does not publish the last will) and end the network thread."""
        self._closing = True
        if self.connected.is_set():
            info = self._client.disconnect()
            if info != mqtt.MQTT_ERR_SUCCESS:
                log.debug("disconnect returned %s", info)
        self._client.loop_stop()
        self._started = False
        self.connected.clear()
        self.subscribed.clear()

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until paho has handed every queued message to the socket (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while self._client.want_write() and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- subscriptions ---------------------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, callback: Callback, no_local: bool = False) -> None:
        """Several callbacks may share a filter; the broker subscription lives while any of them does."""
        # Outside our lock: paho holds its callback mutex while it delivers, and a delivery may publish (our lock).
        # Adding the same filter again is harmless: the dispatcher reads the current callbacks at delivery.
        self._client.message_callback_add(topic_filter, self._dispatcher(topic_filter))
        with self._lock:
            callbacks = self._subscriptions.get(topic_filter)
            if callbacks is not None:
                callbacks.append(callback)
            else:
                self._subscriptions[topic_filter] = [callback]
                self._no_local[topic_filter] = no_local
            if not self.connected.is_set():
                return  # subscribed with the others at the next connect
            # (again, for a shared filter: so the broker sends the retained message to this callback too)
            options = SubscribeOptions(qos=1, noLocal=self._no_local[topic_filter])
            _rc, mid = self._client.subscribe(topic_filter, options=options)
            acked = self._suback_waiters.setdefault(mid, threading.Event())
        if threading.current_thread() is not getattr(self._client, "_thread", None):
            acked.wait(5.0)  # never block paho's own thread: it is the one that reads the SUBACK

    def unsubscribe(self, topic_filter: str, callback: Callback | None = None) -> None:
        with self._lock:
            callbacks = self._subscriptions.get(topic_filter)
            if callbacks is None:
                return
            if callback is not None and callback in callbacks:
                callbacks.remove(callback)
            if callback is None or not callbacks:
                del self._subscriptions[topic_filter]
                self._no_local.pop(topic_filter, None)
                if self.connected.is_set():
                    self._client.unsubscribe(topic_filter)
                # (the paho callback stays: it finds no callbacks for the filter and delivers nothing)

    def _dispatcher(self, topic_filter: str) -> mqtt.CallbackOnMessage:
        def deliver(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
            for callback in list(self._subscriptions.get(topic_filter, ())):
                try:
                    callback(message)
                except Exception:  # a bad callback must never take the network thread down
                    log.exception("message callback failed for %s", message.topic)
        return deliver

    def _handle_unrouted(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        log.debug("message on %s matched no subscription", message.topic)

    # -- publishing ------------------------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, kind: MessageKind, retain: bool = False, qos: int = 1,
                properties: Properties | None = None, on_refused: Callable[[str], None] | None = None) -> bool:
        """Publish now, or keep it for the next connect as its kind says. Returns True when handed to paho.

        `on_refused(reason)` runs (on the network thread) when the broker refuses a QoS 1 publish (its ACL said no).
        """
        message = _Outgoing(topic, payload, qos, retain, properties)
        with self._lock:
            if retain:
                if payload:
                    self._retained[topic] = message
                else:
                    self._retained.pop(topic, None)
            if not self.connected.is_set():
                self._keep_for_later(message, kind)
                return False
            mid = self._send(message)
        if on_refused is not None and qos > 0:
            self._watch_refusal(mid, on_refused)
        return True

    def _watch_refusal(self, mid: int, on_refused: Callable[[str], None]) -> None:
        if len(self._refusal_callbacks) > 10000:  # PUBACKs lost with a connection; a stale entry is harmless
            self._refusal_callbacks.clear()
        self._refusal_callbacks[mid] = on_refused
        reason = self._early_refusals.pop(mid, None)
        if reason is not None and self._refusal_callbacks.pop(mid, None) is not None:
            on_refused(reason)

    def _keep_for_later(self, message: _Outgoing, kind: MessageKind) -> None:
        if kind == "event":
            self._events.append(message)
        elif kind == "reply":
            self._replies.append(message)
        elif kind == "request":
            log.warning("broker unreachable: request to %s not sent", message.topic)
        # state: already coalesced in self._retained, re-published on connect

    def _send(self, message: _Outgoing) -> int:
        info = self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain,
                                    properties=message.properties)
        return info.mid

    # -- paho callbacks (network thread) ---------------------------------------------------------------------------

    def _handle_connect(self, client: mqtt.Client, _userdata: Any, _flags: mqtt.ConnectFlags, reason_code: ReasonCode,
                        _properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.warning("broker %s:%s refused the connection: %s", self.broker.host, self.broker.port, reason_code)
            return
        _no_delay(client)
        with self._lock:
            if self._subscriptions:
                _rc, mid = client.subscribe([(f, SubscribeOptions(qos=1, noLocal=self._no_local[f]))
                                             for f in self._subscriptions])
                self._batch_mid = mid
            else:
                self.subscribed.set()
            self.connect_count += 1
            self.connected.set()
            for message in list(self._retained.values()):
                self._send(message)
            waiting = list(self._events) + self._replies
            self._events.clear()
            self._replies = []
            for message in waiting:
                self._send(message)
        log.info("connected to broker %s:%s (connection %d)", self.broker.host, self.broker.port, self.connect_count)

    def _handle_suback(self, _client: mqtt.Client, _userdata: Any, mid: int, _reason_codes: list[ReasonCode],
                       _properties: Properties | None) -> None:
        with self._lock:
            if mid == self._batch_mid:
                self.subscribed.set()
            waiter = self._suback_waiters.pop(mid, None)
        if waiter is not None:
            waiter.set()

    def _handle_puback(self, _client: mqtt.Client, _userdata: Any, mid: int, reason_code: ReasonCode,
                       _properties: Properties) -> None:
        callback = self._refusal_callbacks.pop(mid, None)
        if not reason_code.is_failure:
            return
        if callback is not None:
            callback(str(reason_code))
        elif len(self._early_refusals) < 1000:
            self._early_refusals[mid] = str(reason_code)

    def _handle_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: mqtt.DisconnectFlags,
                           reason_code: ReasonCode, _properties: Properties | None) -> None:
        was_connected = self.connected.is_set()
        self._refusal_callbacks.clear()  # those PUBACKs will never come
        self._early_refusals.clear()
        self.subscribed.clear()
        self.connected.clear()
        if was_connected and not self._closing:
            log.warning("disconnected from broker (%s); reconnecting with backoff", reason_code)


def _no_delay(client: mqtt.Client) -> None:
    """Small request/reply packets must not wait for Nagle's algorithm (it costs ~40 ms per round trip)."""
    sock = client.socket()
    if isinstance(sock, socket.socket):  # also an ssl.SSLSocket; paho's other socket-likes have no options
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PublishProperties(Properties):
    """The MQTT 5 PUBLISH properties of a request or a reply, encoded once, here, as the standard lays them out
    (section 2.2.2: a variable byte integer length, then identifier + value per property).

    paho's own Properties builds its name tables in every instance and its pack() walks all of its property
    names in Python: together ~35 us per message on this machine, on the path of every call and every reply
    (py-spy: 10 % of a caller's CPU in request_properties, 8.5 % in pack). paho only ever calls pack() on the
    properties we give it (again, unchanged, when it retransmits a QoS 1 message).
    """

    _packed: bytes  # set past paho's __setattr__, which accepts only property names

    def __init__(self, response_topic: str | None = None, correlation: bytes | None = None,
                 expiry_s: int | None = None, user: tuple[tuple[str, str], ...] = ()):
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        body = bytearray()
        if expiry_s is not None:
            body += b"\x02" + expiry_s.to_bytes(4, "big")  # Message Expiry Interval, seconds
        if response_topic is not None:
            body += b"\x08" + _length_prefixed(response_topic.encode())
        if correlation is not None:
            body += b"\x09" + _length_prefixed(correlation)
        for name, value in user:
            body += b"\x26" + _length_prefixed(name.encode()) + _length_prefixed(value.encode())
        object.__setattr__(self, "_packed", _variable_byte_integer(len(body)) + bytes(body))

    def pack(self) -> bytes:
        return self._packed

    def __str__(self) -> str:  # paho logs str(properties) when its debug logger is on
        return f"PublishProperties({self._packed!r})"


def _length_prefixed(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"an MQTT property value holds at most 65535 bytes, not {len(data)}")
    return len(data).to_bytes(2, "big") + data


def _variable_byte_integer(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = value >> 7, value & 0x7F
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def request_properties(response_topic: str, correlation: bytes, expiry_s: float,
                       on_behalf_of: str | None = None) -> Properties:
    """Who calls is in the topic (proven by the broker); `on_behalf_of` is attribution only, never authority.
    The broker discards a request nobody took in time (its expiry), so a late command never surprises an
    instrument."""
    return PublishProperties(response_topic, correlation, max(1, int(expiry_s + 0.999)),
                             (("on_behalf_of", on_behalf_of),) if on_behalf_of else ())


_NO_CORRELATION = PublishProperties()


def reply_properties(correlation: bytes | None) -> Properties:
    return _NO_CORRELATION if correlation is None else PublishProperties(correlation=correlation)


def user_property(message: mqtt.MQTTMessage, name: str) -> str | None:
    props = message.properties
    for key, value in getattr(props, "UserProperty", None) or []:
        if key == name:
            return str(value)
    return None
