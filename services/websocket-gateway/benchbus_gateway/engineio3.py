"""The server side of Engine.IO protocol 3 (the transport under Socket.IO 1.x/2.x clients), on Starlette.

What the protocol says (and what the eVOLVER's clients, socketIO-client 0.7.2 and socket.io-client 2.x, rely on):
- packets are one digit of type then text: 0 open, 1 close, 2 ping, 3 pong, 4 message, 5 upgrade, 6 noop;
- the handshake is a polling GET without `sid`; the reply's first packet is `open` with
  {sid, upgrades, pingInterval, pingTimeout} in milliseconds;
- in protocol 3 the *client* pings (`2`, also `2probe` on a new WebSocket) and the server answers `3`; a session that
  says nothing for pingInterval + pingTimeout is gone;
- a polling body holds several packets. Binary framing (what python-engineio 3 served, and socketIO-client parses):
  per packet `0x00` (string) or `0x01` (binary), the decimal digits of its UTF-8 byte length as bytes 0-9, `0xFF`,
  the packet. String framing (`b64=1` clients, and what socket.io-client POSTs): `<length>:<packet>` repeated, the
  length counted in UTF-16 code units as JavaScript counts string length;
- the upgrade: the client opens a WebSocket with the polling session's sid, sends `2probe`, gets `3probe`; a pending
  poll is answered with `6` (noop) so the client can pause polling; the client sends `5` and from then on every packet
  travels on the WebSocket.

Sending is synchronous: on a WebSocket with nothing queued, `Session.send` writes the packet's ready frame at once
(frames.py: one frame per broadcast, whatever the number of clients); otherwise it appends to an outbox and wakes
the writer (a poll, or the WebSocket's writer task). A fan-out to hundreds of clients never awaits any of them, and
an outbox that grows past its bound closes that one session.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from benchbus.http_limits import declared_length

from .frames import FrameWriter

log = logging.getLogger("benchbus.gateway.engineio3")

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0", "1", "2", "3", "4", "5", "6"
PACKET_TYPES = frozenset("0123456")

# Error codes and messages of the reference server's 400 replies (clients only show them).
UNKNOWN_TRANSPORT = (0, "Transport unknown")
UNKNOWN_SID = (1, "Session ID unknown")
BAD_HANDSHAKE_METHOD = (2, "Bad handshake method")
BAD_REQUEST = (3, "Bad request")
FORBIDDEN = (4, "Forbidden")
UNSUPPORTED_PROTOCOL = (5, "Unsupported protocol version")


CORS_HEADERS = ((b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-headers", b"Content-Type, Authorization"),
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"))


class ProtocolError(ValueError):
    """A packet or payload that does not follow the protocol; the message says what is wrong and where."""


# -- packets and payloads ---------------------------------------------------------------------------------------------

def check_packet(packet: str) -> str:
    if not packet:
        raise ProtocolError("empty packet")
    if packet[0] not in PACKET_TYPES:
        raise ProtocolError(f"unknown packet type {packet[0]!r} (expected a digit 0-6)")
    return packet


def utf16_length(text: str) -> int:
    """JavaScript's string length: characters outside the BMP count twice."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _utf16_prefix(text: str, units: int) -> int:
    """How many Python characters make up the first `units` UTF-16 code units of `text`."""
    count = 0
    for index, char in enumerate(text):
        if count >= units:
            return index
        count += 2 if ord(char) > 0xFFFF else 1
    if count != units:
        raise ProtocolError("a packet length runs past the end of the payload")
    return len(text)


def encode_payload(packets: list[str], binary: bool) -> bytes:
    if len(packets) == 1:
        return _encode_one(packets[0], binary)  # a broadcast polled by many clients is encoded once
    return _encode_many(packets, binary)


@functools.lru_cache(maxsize=32)
def _encode_one(packet: str, binary: bool) -> bytes:
    return _encode_many([packet], binary)


def _encode_many(packets: list[str], binary: bool) -> bytes:
    if not binary:
        return "".join(f"{utf16_length(p)}:{p}" for p in packets).encode()
    out = bytearray()
    for packet in packets:
        data = packet.encode()
        out.append(0)
        out.extend(int(d) for d in str(len(data)))
        out.append(0xFF)
        out.extend(data)
    return bytes(out)


def decode_payload(body: bytes) -> list[str]:
    """Either framing (told apart by the first byte); raises ProtocolError naming the problem."""
    if not body:
        raise ProtocolError("empty payload")
    if body[0] in (0, 1):
        return _decode_binary_payload(body)
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return _decode_string_payload(text)


def _decode_binary_payload(body: bytes) -> list[str]:
    packets: list[str] = []
    index = 0
    while index < len(body):
        kind = body[index]
        if kind != 0:
            raise ProtocolError(f"binary packets are not supported (marker {kind} at byte {index})")
        index += 1
        digits = ""
        while index < len(body) and body[index] != 0xFF:
            if body[index] > 9 or len(digits) > 9:
                raise ProtocolError(f"bad length digit {body[index]} at byte {index}")
            digits += str(body[index])
            index += 1
        if index >= len(body) or not digits:
            raise ProtocolError("a packet length is not terminated by 0xFF")
        index += 1
        length = int(digits)
        if index + length > len(body):
            raise ProtocolError(f"packet of {length} bytes runs past the end of the payload")
        try:
            packets.append(check_packet(body[index:index + length].decode()))
        except UnicodeDecodeError:
            raise ProtocolError(f"packet at byte {index} is not UTF-8") from None
        index += length
    return packets


def _decode_string_payload(text: str) -> list[str]:
    packets: list[str] = []
    index = 0
    while index < len(text):
        colon = text.find(":", index)
        digits = text[index:colon] if colon >= 0 else ""
        if colon < 0 or not digits.isdigit() or len(digits) > 10:
            raise ProtocolError(f"expected '<length>:' at character {index}")
        start = colon + 1
        end = start + _utf16_prefix(text[start:], int(digits))
        packets.append(check_packet(text[start:end]))
        index = end
    return packets


def parse_query(raw: bytes) -> dict[str, str]:
    """The query string as `dict(request.query_params)` reads it (latin-1, blanks kept, the last value wins).

    Every long-poll parses it again (a broadcast to N polling clients is N new requests); parse_qsl is needed only
    when something is escaped, and the plain split is a fifth of its cost."""
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    return {key: value for key, _, value in (pair.partition("=") for pair in text.split("&") if pair)}


# -- sessions ---------------------------------------------------------------------------------------------------------

class Session:
    """One Engine.IO connection, whatever transport it currently uses."""

    def __init__(self, server: EngineIO3Server, sid: str, query: dict[str, str], binary: bool, host: str = "",
                 peer: str = ""):
        self.server = server
        self.host = host  # the host name the client reached us by
        self.peer = peer  # the client's address (of the handshake's connection)
        self.sid = sid
        self.query = query
        self.binary = binary  # polling replies in binary framing (everyone but `b64=1` clients)
        self.transport = "polling"
        self.outbox: deque[str] = deque()
        self.wakeup = asyncio.Event()
        self.last_seen = time.monotonic()
        self.closed = False
        self.polling_now = False
        self.poll_since = 0.0  # when the waiting poll began (the reaper answers it after pingInterval)
        self.websocket: WebSocket | None = None
        self.frames: FrameWriter | None = None  # set once the session sends on its WebSocket
        self.data: dict = {}  # what the layer above keeps per session (Socket.IO namespaces)

    def send(self, packet: str) -> None:
        """Queue one packet (text form, e.g. '4...'); never blocks."""
        if self.closed:
            return
        if len(self.outbox) >= self.server.max_outbox:
            log.warning("session %s: %d packets waiting, the client is not reading; closing it",
                        self.sid, len(self.outbox))
            self.server.close_session(self, "outbox overflow")
            return
        if self.frames is not None and not self.outbox and self.frames.send_text(packet):
            return  # a WebSocket with nothing waiting: written now, no writer task to wake per client
        self.outbox.append(packet)
        self.wakeup.set()

    def message(self, text: str) -> None:
        self.send(MESSAGE + text)

    def take_all(self) -> list[str]:
        packets = list(self.outbox)
        self.outbox.clear()
        self.wakeup.clear()
        return packets


MessageHandler = Callable[[Session, str], None]
SessionHandler = Callable[[Session], None]
CloseHandler = Callable[[Session, str], None]


class EngineIO3Server:
    def __init__(self, on_connect: SessionHandler, on_message: MessageHandler, on_close: CloseHandler,
                 ping_interval: float = 25.0, ping_timeout: float = 60.0, max_payload: int = 1_000_000,
                 max_outbox: int = 1000, authorize: Callable[[dict[str, str], str], bool] | None = None,
                 allow_upgrades: bool = True):
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_close = on_close
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_payload = max_payload
        self.max_outbox = max_outbox
        self.authorize = authorize
        self.allow_upgrades = allow_upgrades
        self.sessions: dict[str, Session] = {}
        self._reaper: asyncio.Task | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            self.close_session(session, "server shutting down", notify_client=True)
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None

    async def _reap_forever(self) -> None:
        period = max(0.05, min(1.0, self.ping_timeout / 4))
        while True:
            await asyncio.sleep(period)
            self.reap()

    def reap(self) -> int:
        """Close every session that has not been heard from within pingInterval + pingTimeout, and answer (with a
        noop) every poll that has waited pingInterval."""
        now = time.monotonic()
        for session in self.sessions.values():
            if session.polling_now and now - session.poll_since >= self.ping_interval:
                session.wakeup.set()
        limit = now - (self.ping_interval + self.ping_timeout)
        gone = [s for s in self.sessions.values() if s.last_seen < limit]
        for session in gone:
            self.close_session(session, "ping timeout")
        return len(gone)

    def close_session(self, session: Session, reason: str, notify_client: bool = False) -> None:
        if session.closed:
            return
        if notify_client:
            session.outbox.append(CLOSE)
        session.closed = True
        session.wakeup.set()  # lets a waiting poll return and a WebSocket writer end
        self.sessions.pop(session.sid, None)
        try:
            self.on_close(session, reason)
        except Exception:
            log.exception("close handler failed for %s", session.sid)

    # -- incoming packets -------------------------------------------------------------------------------------------

    def _receive(self, session: Session, packet: str) -> None:
        session.last_seen = time.monotonic()
        kind, data = packet[0], packet[1:]
        if kind == PING:
            session.send(PONG + data)
        elif kind == MESSAGE:
            try:
                self.on_message(session, data)
            except Exception:  # a handler bug costs this message, never the connection
                log.exception("message handler failed for %s", session.sid)
        elif kind == CLOSE:
            self.close_session(session, "client closed")
        elif kind in (PONG, NOOP, UPGRADE, OPEN):
            pass  # nothing to do (an upgrade is handled on the WebSocket itself)

    # -- HTTP long-polling ------------------------------------------------------------------------------------------
    # Plain ASGI, no Request/Response objects: a broadcast to N polling clients is N answered polls and N new
    # requests, and Starlette's objects (headers decoded and re-encoded, a body iterator, a middleware chain) were
    # half of the gateway's CPU per broadcast in the profile.

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = await self._http(scope, receive)
        await reply.send(send)

    async def _http(self, scope: Scope, receive: Receive) -> Reply:
        query = parse_query(scope.get("query_string", b""))
        method = scope["method"]
        if query.get("EIO") != "3":
            return self._error(UNSUPPORTED_PROTOCOL)
        if query.get("transport") != "polling":
            return self._error(UNKNOWN_TRANSPORT)
        if "j" in query:
            return self._error(BAD_REQUEST, "JSONP polling is not supported")
        if method == "OPTIONS":
            return Reply(204, b"", None, self._cors(scope))
        sid = query.get("sid")
        if sid is None:
            return self._handshake(scope, query)
        session = self.sessions.get(sid)
        if session is None:
            return self._error(UNKNOWN_SID)
        if session.transport != "polling":
            return self._error(BAD_REQUEST, "this session has upgraded to websocket")
        if method == "GET":
            return await self._poll(scope, session)
        if method == "POST":
            return await self._post(scope, receive, session)
        return self._error(BAD_REQUEST, f"method {method} not allowed")

    def _handshake(self, scope: Scope, query: dict[str, str]) -> Reply:
        if scope["method"] != "GET":
            return self._error(BAD_HANDSHAKE_METHOD)
        peer = _peer(scope)
        if self.authorize is not None and not self.authorize(query, peer):
            return self._error(FORBIDDEN, status=403)
        opened = self._open_session(query, binary=query.get("b64") not in ("1", "true"), host=_hostname(scope),
                                    peer=peer)
        return self._poll_reply(scope, opened, opened.take_all())

    def _open_session(self, query: dict[str, str], binary: bool, host: str = "", peer: str = "") -> Session:
        session = Session(self, secrets.token_urlsafe(15), query, binary, host, peer)
        self.sessions[session.sid] = session
        handshake = {"sid": session.sid, "upgrades": ["websocket"] if self.allow_upgrades else [],
                     "pingInterval": int(self.ping_interval * 1000), "pingTimeout": int(self.ping_timeout * 1000)}
        session.send(OPEN + json.dumps(handshake, separators=(",", ":")))
        self.on_connect(session)
        return session

    async def _poll(self, scope: Scope, session: Session) -> Reply:
        if session.polling_now:
            self.close_session(session, "overlapping polls")
            return self._error(BAD_REQUEST, "a poll is already waiting for this session")
        session.polling_now = True
        session.last_seen = time.monotonic()
        try:
            if not session.outbox and not session.closed:
                # no timer per poll: the reaper's one pass wakes the polls that have waited pingInterval
                session.poll_since = time.monotonic()
                await session.wakeup.wait()
            if session.transport != "polling" or session.data.get("probing"):
                packets = [NOOP]  # the client is upgrading: end this poll so it can pause polling
                if not session.outbox:
                    session.wakeup.clear()
            else:
                packets = session.take_all() or [NOOP]  # an empty body would be a parser error for the client
        finally:
            session.polling_now = False
            session.last_seen = time.monotonic()
        return self._poll_reply(scope, session, packets)

    async def _post(self, scope: Scope, receive: Receive, session: Session) -> Reply:
        declared = declared_length(scope)
        if declared is not None and declared > self.max_payload:
            return self._error(BAD_REQUEST, f"body of {declared} bytes is larger than the limit of {self.max_payload}",
                               status=413)
        body = await _read_body(receive, self.max_payload)
        if body is None:
            return self._error(BAD_REQUEST, f"body is larger than the limit of {self.max_payload} bytes", status=413)
        try:
            packets = decode_payload(body)
        except ProtocolError as exc:
            return self._error(BAD_REQUEST, f"malformed payload: {exc}")
        for packet in packets:
            if session.closed:
                break
            self._receive(session, packet)
        return Reply(200, b"ok", b"text/html; charset=utf-8", self._cors(scope))

    def _poll_reply(self, scope: Scope, session: Session, packets: list[str]) -> Reply:
        media = b"application/octet-stream" if session.binary else b"text/plain; charset=UTF-8"
        headers = self._cors(scope)
        headers.append((b"set-cookie", f"io={session.sid}; Path=/; HttpOnly".encode()))
        return Reply(200, encode_payload(packets, session.binary), media, headers)

    @staticmethod
    def _cors(scope: Scope) -> list[tuple[bytes, bytes]]:
        origin = _first_header(scope, b"origin")
        if not origin:
            return []
        return [(b"access-control-allow-origin", origin.encode("latin-1")), *CORS_HEADERS]

    @staticmethod
    def _error(code_message: tuple[int, str], detail: str | None = None, status: int = 400) -> Reply:
        code, message = code_message
        body = {"code": code, "message": message}
        if detail:
            body["detail"] = detail
        return Reply(status, json.dumps(body).encode(), b"application/json", [])

    # -- WebSocket --------------------------------------------------------------------------------------------------

    async def handle_websocket(self, websocket: WebSocket) -> None:
        query = parse_query(websocket.scope.get("query_string", b""))
        if query.get("EIO") != "3" or query.get("transport") != "websocket":
            await websocket.close(code=1008, reason="expected EIO=3&transport=websocket")
            return
        sid = query.get("sid")
        if sid is None:
            peer = websocket.client.host if websocket.client else ""
            if self.authorize is not None and not self.authorize(query, peer):
                await websocket.close(code=1008, reason="forbidden")
                return
            await websocket.accept()
            opened = self._open_session(query, binary=True, host=websocket.url.hostname or "", peer=peer)
            await self._serve_websocket(opened, websocket)
            return
        session = self.sessions.get(sid)
        if session is None or session.transport != "polling" or session.websocket is not None:
            await websocket.close(code=1008, reason=UNKNOWN_SID[1] if session is None else "upgrade not possible")
            return
        await websocket.accept()
        if not await self._upgrade(session, websocket):
            return
        await self._serve_websocket(session, websocket)

    async def _upgrade(self, session: Session, websocket: WebSocket) -> bool:
        """Probe, then wait for `5`; the session keeps polling until then."""
        session.websocket = websocket
        session.data["probing"] = True
        try:
            while True:
                try:
                    text = await asyncio.wait_for(websocket.receive_text(), self.ping_timeout)
                except (TimeoutError, WebSocketDisconnect, RuntimeError, KeyError):
                    return False
                session.last_seen = time.monotonic()
                if text == PING + "probe":
                    await websocket.send_text(PONG + "probe")
                    session.wakeup.set()  # a waiting poll answers noop now
                elif text == UPGRADE:
                    session.transport = "websocket"
                    session.wakeup.set()
                    return True
                else:
                    log.info("session %s: unexpected %r during upgrade; ignoring", session.sid, text[:40])
        finally:
            session.data.pop("probing", None)
            if session.transport != "websocket":
                session.websocket = None

    async def _serve_websocket(self, session: Session, websocket: WebSocket) -> None:
        session.transport = "websocket"
        session.websocket = websocket
        writer = asyncio.get_running_loop().create_task(self._write_websocket(session, websocket))
        reason = "transport closed"
        try:
            while not session.closed:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    reason = "binary frames are not supported"
                    break
                try:
                    self._receive(session, check_packet(text))
                except ProtocolError as exc:  # as the reference server does: a parse error ends the session
                    reason = f"parse error: {exc}"
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.close_session(session, reason)
            await _finish(writer)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the peer is already gone
                await websocket.close(code=1002 if reason.startswith("parse error") else 1000, reason=reason[:120])

    async def _write_websocket(self, session: Session, websocket: WebSocket) -> None:
        """What was queued before the session could write frames itself, or when it cannot (then everything)."""
        writer = FrameWriter.of(websocket.scope)
        session.frames = writer
        try:
            while True:
                await session.wakeup.wait()
                session.wakeup.clear()
                while session.outbox:  # a packet leaves the outbox once sent: `send` writes ahead only when it is empty
                    packet = session.outbox[0]
                    if writer is None or not writer.send_text(packet):
                        await websocket.send_text(packet)
                    session.outbox.popleft()
                if session.closed:
                    return
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.close_session(session, "transport error")


def _first_header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """What `request.headers.get` answers, read from the scope: building Starlette's Headers decodes every header of
    the request, and each long-poll asked it once (a third of a poll's Python time in the profile)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


def _hostname(scope: Scope) -> str:
    """The host name the client reached us by, as Starlette's `request.url.hostname` reads it (no port, no
    brackets around an IPv6 address)."""
    host = _first_header(scope, b"host")
    if host is None:
        server = scope.get("server")
        return server[0] if server else ""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rpartition(":")[0] if ":" in host else host


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request's body, or None once it grows past `limit` (nothing more is read then)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)  # the client went away; what came is all there is
        body.extend(message.get("body", b""))
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


class Reply:
    """One HTTP answer, written as the two ASGI messages."""

    __slots__ = ("status", "body", "media_type", "headers")

    def __init__(self, status: int, body: bytes, media_type: bytes | None, headers: list[tuple[bytes, bytes]]):
        self.status, self.body, self.media_type, self.headers = status, body, media_type, headers

    async def send(self, send: Send) -> None:
        headers = [(b"content-length", str(len(self.body)).encode()), *self.headers]
        if self.media_type is not None:
            headers.append((b"content-type", self.media_type))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


async def _finish(task: asyncio.Task) -> None:
    """Let a writer flush what it holds (a close packet), but never wait on a dead peer for long."""
    try:
        await asyncio.wait_for(task, 1.0)
    except (TimeoutError, asyncio.CancelledError, Exception):
        task.cancel()

