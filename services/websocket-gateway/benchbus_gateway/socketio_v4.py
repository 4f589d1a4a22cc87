"""Socket.IO protocol 4 (the protocol of Socket.IO 1.x/2.x clients) over our Engine.IO 3 server.

A Socket.IO packet travels as the text of one Engine.IO message:
    <type>[<attachments>-][/<namespace>[?query],][<ack id>][<JSON array or value>]
types: 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 ERROR, 5 BINARY_EVENT, 6 BINARY_ACK. The namespace is left out when
it is "/". A server of this generation joins every new client to "/" by itself and says so with `0`; a client joins
another namespace by sending `0/<nsp>` and is answered `0/<nsp>`, or `4/<nsp>,"Invalid namespace"`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable
from urllib.parse import parse_qs

from .engineio3 import EngineIO3Server, Session

log = logging.getLogger("benchbus.gateway.socketio")

CONNECT, DISCONNECT, EVENT, ACK, ERROR, BINARY_EVENT, BINARY_ACK = range(7)


class PacketError(ValueError):
    pass


@dataclass
class Packet:
    type: int
    namespace: str = "/"
    data: Any = None
    ack_id: int | None = None
    query: str = ""


def decode_packet(text: str) -> Packet:
    if not text or not text[0].isdigit() or int(text[0]) > 6:
        raise PacketError(f"unknown Socket.IO packet type {text[:1]!r}")
    kind = int(text[0])
    if kind in (BINARY_EVENT, BINARY_ACK):
        raise PacketError("binary events are not supported")
    index = 1
    namespace, query = "/", ""
    if index < len(text) and text[index] == "/":
        comma = text.find(",", index)
        end = len(text) if comma < 0 else comma
        namespace, _, query = text[index:end].partition("?")
        index = end + 1 if comma >= 0 else end
    start = index
    while index < len(text) and text[index].isdigit():
        index += 1
    ack_id = int(text[start:index]) if index > start else None
    data = None
    if index < len(text):
        try:
            data = json.loads(text[index:])
        except ValueError as exc:
            raise PacketError(f"packet data is not JSON: {exc}") from None
    if kind in (EVENT, ACK) and not isinstance(data, list):
        raise PacketError("an event or ack carries a JSON array")
    if kind == EVENT and (not data or not isinstance(data[0], str)):
        raise PacketError("an event array starts with the event name")
    return Packet(kind, namespace, data, ack_id, query)


def encode_packet(kind: int, namespace: str = "/", data: Any = None, ack_id: int | None = None) -> str:
    text = str(kind)
    tail = ("" if ack_id is None else str(ack_id)) + \
        ("" if data is None else json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    if namespace != "/":
        text += namespace + ("," if tail else "")
    return text + tail


class Client:
    """One Socket.IO client: an Engine.IO session and the namespaces it joined."""

    def __init__(self, server: SocketIOServer, session: Session):
        self.server = server
        self.session = session
        self.namespaces: set[str] = set()

    @property
    def sid(self) -> str:
        return self.session.sid

    @property
    def transport(self) -> str:
        return self.session.transport

    def emit(self, namespace: str, event: str, *args: Any) -> None:
        self.session.message(encode_packet(EVENT, namespace, [event, *args]))

    def send_packet(self, kind: int, namespace: str, data: Any = None, ack_id: int | None = None) -> None:
        self.session.message(encode_packet(kind, namespace, data, ack_id))


EventHandler = Callable[[Client, str, str, list, Callable[..., None] | None], None]


class SocketIOServer:
    """Namespaces are fixed at start; `on_event(client, namespace, event, args, ack)` runs on the event loop."""

    def __init__(self, namespaces: list[str], on_event: EventHandler,
                 on_join: Callable[[Client, str], None] | None = None,
                 on_leave: Callable[[Client, str], None] | None = None, **engine_options: Any):
        self.namespaces = set(namespaces) | {"/"}
        self.on_event = on_event
        self.on_join = on_join
        self.on_leave = on_leave
        self.members: dict[str, dict[str, Client]] = {name: {} for name in self.namespaces}
        self.engine = EngineIO3Server(self._connected, self._message, self._closed, **engine_options)

    # -- sending --------------------------------------------------------------------------------------------------

    def broadcast(self, namespace: str, event: str, *args: Any) -> int:
        """Encode once, queue for every member of the namespace; returns how many clients it reached."""
        packet = "4" + encode_packet(EVENT, namespace, [event, *args])
        members = list(self.members.get(namespace, {}).values())
        for client in members:
            client.session.send(packet)
        return len(members)

    def client_count(self) -> dict[str, int]:
        counts = {"websocket": 0, "polling": 0}
        for session in self.engine.sessions.values():
            counts[session.transport] = counts.get(session.transport, 0) + 1
        return counts

    # -- engine callbacks -------------------------------------------------------------------------------------------

    def _connected(self, session: Session) -> None:
        client = Client(self, session)
        session.data["client"] = client
        self._join(client, "/")

    def _closed(self, session: Session, reason: str) -> None:
        client: Client | None = session.data.get("client")
        if client is None:
            return
        for namespace in list(client.namespaces):
            self._leave(client, namespace)
        log.debug("client %s gone: %s", session.sid, reason)

    def _join(self, client: Client, namespace: str) -> None:
        client.namespaces.add(namespace)
        self.members[namespace][client.sid] = client
        client.send_packet(CONNECT, namespace)
        if self.on_join is not None:
            self.on_join(client, namespace)

    def _leave(self, client: Client, namespace: str) -> None:
        client.namespaces.discard(namespace)
        self.members.get(namespace, {}).pop(client.sid, None)
        if self.on_leave is not None:
            self.on_leave(client, namespace)

    def _message(self, session: Session, text: str) -> None:
        client: Client = session.data["client"]
        try:
            packet = decode_packet(text)
        except PacketError as exc:
            log.info("client %s sent a bad packet (%s): %.80r", session.sid, exc, text)
            client.send_packet(ERROR, "/", f"bad packet: {exc}")
            return
        if packet.type == CONNECT:
            token = parse_qs(packet.query).get("token")
            if token:  # socket.io-client 2.x sends the namespace URL's query here
                session.data["token"] = token[0]
            if packet.namespace not in self.namespaces:
                client.send_packet(ERROR, packet.namespace, "Invalid namespace")
            elif packet.namespace not in client.namespaces:
                self._join(client, packet.namespace)
            else:
                client.send_packet(CONNECT, packet.namespace)
        elif packet.type == DISCONNECT:
            if packet.namespace in client.namespaces:
                self._leave(client, packet.namespace)
        elif packet.type == EVENT:
            if packet.namespace not in client.namespaces:
                client.send_packet(ERROR, packet.namespace, "not connected to this namespace")
                return
            ack = None
            if packet.ack_id is not None:
                ack_id, namespace = packet.ack_id, packet.namespace

                def ack(*args: Any) -> None:
                    client.send_packet(ACK, namespace, list(args), ack_id)
            self.on_event(client, packet.namespace, packet.data[0], packet.data[1:], ack)
        # ACK and ERROR from a client: we never ask clients for acks, so there is nothing to match them to.
