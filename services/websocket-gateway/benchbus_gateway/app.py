"""The gateway's ASGI application: Socket.IO for both Engine.IO generations, /ws, HTTP, static files.

`/socket.io/` is dispatched on the `EIO` query parameter: 3 (the eVOLVER DPU and GUI) to our own Engine.IO 3 server,
4 to python-socketio 5. Both reach the one event table. Every HTTP body is bounded as it streams (limits.py); who may
write is access.py's answer (the token, or a client address in a trusted network). Bus messages arrive through
`Gateway.deliver` (service.py calls it on the event loop); a broadcast is encoded once per generation, framed once for
every WebSocket client and written to each at once (frames.py), queued for long-polls.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from benchbus import BusError
from benchbus_schemas import topics

from . import dashboard, definitions_routes, frames, http, lab, recorder_routes, ws
from .access import Access, Caller
from .eio4 import LazySocketIOServer
from .history import BroadcastHistory
from benchbus.http_limits import BodyLimit
from .evolver_events import BROADCAST_EVENT, BROADCAST_TOPIC, ERROR_EVENT, Emit, EventTable, Origin, error_payload
from .settings import GatewaySettings
from .socketio_v4 import Client, SocketIOServer

log = logging.getLogger("benchbus.gateway")


class Bridge(Protocol):
    """What the gateway needs from the bus (service.py provides it)."""

    device: str

    async def call(self, service: str, command: str, payload: Any, timeout: float | None = None,
                   on_behalf_of: str | None = None, device: str | None = None) -> Any: ...

    def connected(self) -> bool: ...


class Gateway:
    def __init__(self, settings: GatewaySettings, bridge: Bridge):
        self.settings = settings
        self.bridge = bridge
        self.device = bridge.device
        self.access = Access(settings)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.retained: dict[str, tuple[str, Any]] = {}  # topic -> (raw JSON text, decoded) of $state and state/*
        self.history = BroadcastHistory(settings.history_size, settings.history_max_age_s)
        self.ws_clients: set[ws.WsClient] = set()
        self.events = EventTable(self._call)
        self.namespace = settings.namespace
        self.broadcast_topic = topics.topic(self.device, *BROADCAST_TOPIC)
        self.sio3 = SocketIOServer([self.namespace], self._on_eio3_event, ping_interval=settings.ping_interval_s,
                                   ping_timeout=settings.ping_timeout_s, max_payload=settings.max_payload_bytes,
                                   max_outbox=settings.max_outbox, authorize=self._socketio_allowed)
        self.sio4 = LazySocketIOServer(cors_allowed_origins="*", ping_interval=settings.ping_interval_s,
                                       ping_timeout=settings.ping_timeout_s,
                                       max_http_buffer_size=settings.max_payload_bytes)
        self.sio4_clients: dict[str, Caller] = {}
        self.sio4.on("connect", self._on_eio4_connect, namespace=self.namespace)
        self.sio4.on("disconnect", self._on_eio4_disconnect, namespace=self.namespace)
        self.sio4.on("*", self._on_eio4_event, namespace=self.namespace)
        self.sio4_app = self.sio4.app
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle (ASGI lifespan) ----------------------------------------------------------------------------------

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sio3.engine.start()

    async def shutdown(self) -> None:
        """Close every client (idempotent: service.stop calls it before the web server's own shutdown)."""
        await self.sio3.engine.stop()
        for sid in list(self.sio4_clients):
            await self.sio4.disconnect(sid, namespace=self.namespace)
        for client in list(self.ws_clients):
            await client.close(1001, "server shutting down")

    # -- access ------------------------------------------------------------------------------------------------------

    def token_ok(self, presented: str | None) -> bool:
        return self.access.token_ok(presented)

    def _socketio_allowed(self, query: dict[str, str], peer: str) -> bool:
        """A new Engine.IO 3 session: always, unless reads are closed (then the token or a trusted address)."""
        caller = self.access.caller("socketio", peer, query.get("token"))
        return not self.settings.read_requires_token or caller.may_write

    # -- from the bus (on the event loop) ---------------------------------------------------------------------------

    def deliver(self, topic_name: str, raw: bytes) -> None:
        text = raw.decode(errors="replace")
        try:
            data = json.loads(text) if text else None
        except ValueError:
            log.warning("ignored a message on %s that is not JSON", topic_name)
            return
        parsed = topics.parse(topic_name)
        if parsed is not None and parsed[2] in ("$state", "state"):
            if text:
                self.retained[topic_name] = (text, data)
            else:
                self.retained.pop(topic_name, None)
        if topic_name == self.broadcast_topic and isinstance(data, dict):
            self.history.add_raw(text, time.time())
            self.emit_everyone(BROADCAST_EVENT, data)
        ws.fan_out(self, topic_name, text)

    def state_of(self, service: str, name: str | None = None) -> Any:
        topic_name = topics.lifecycle_topic(self.device, service) if name is None else \
            topics.topic(self.device, service, "state", name)
        held = self.retained.get(topic_name)
        return None if held is None else held[1]

    # -- Socket.IO: both generations --------------------------------------------------------------------------------

    def emit_everyone(self, event: str, payload: Any) -> None:
        self.sio3.broadcast(self.namespace, event, payload)
        if self.sio4_clients:
            self._spawn(self.sio4.emit(event, payload, namespace=self.namespace))

    def client_counts(self) -> dict[str, int]:
        eio3 = self.sio3.client_count()
        return {"socketio_eio3_websocket": eio3.get("websocket", 0), "socketio_eio3_polling": eio3.get("polling", 0),
                "socketio_eio4": len(self.sio4_clients), "ws": len(self.ws_clients)}

    def _on_eio3_event(self, client: Client, namespace: str, event: str, args: list,
                       ack: Callable[..., None] | None) -> None:
        session = client.session
        token = session.data.get("token") or session.query.get("token")
        origin = self._origin(self.access.caller("socketio", session.peer, token, client.sid), session.host, "eio3",
                              session.query.get("device"))

        def reply(name: str, payload: Any) -> None:
            client.emit(namespace, name, payload)

        self._spawn(self._run_event(event, args, origin, reply, ack))

    async def _on_eio4_connect(self, sid: str, environ: dict, auth: Any = None) -> bool:
        given = auth.get("token") if isinstance(auth, dict) else None
        given = given or (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [None])[0]
        caller = self.access.caller("socketio", _asgi_peer(environ), given, sid)
        if self.settings.read_requires_token and not caller.may_write:
            return False
        self.sio4_clients[sid] = caller
        return True

    async def _on_eio4_disconnect(self, sid: str, *_args: Any) -> None:
        self.sio4_clients.pop(sid, None)

    async def _on_eio4_event(self, event: str, sid: str, *args: Any) -> Any:
        environ = self.sio4.get_environ(sid, namespace=self.namespace) or {}
        caller = self.sio4_clients.get(sid) or self.access.caller("socketio", _asgi_peer(environ), None, sid)
        device = (parse_qs(environ.get("QUERY_STRING", "")).get("device") or [None])[0]
        origin = self._origin(caller, environ.get("HTTP_HOST", "").split(":")[0], "eio4", device)
        acked: list[Any] = []

        async def send(name: str, payload: Any) -> None:
            await self.sio4.emit(name, payload, to=sid, namespace=self.namespace)

        def reply(name: str, payload: Any) -> None:
            self._spawn(send(name, payload))

        await self._run_event(event, list(args), origin, reply, acked.append)
        return acked[0] if acked else None

    def _origin(self, caller: Caller, host: str, generation: str, device: str | None = None) -> Origin:
        return Origin(caller.session or "", host, generation, may_write=caller.may_write,
                      on_behalf_of=caller.on_behalf_of, refusal=self.access.write_refusal(caller), device=device)

    async def _run_event(self, event: str, args: list, origin: Origin, reply: Callable[[str, Any], None],
                         ack: Callable[..., None] | None) -> None:
        try:
            emits: list[Emit] = await self.events.handle(event, args, origin)
        except BusError as error:
            log.info("event %s from %s refused: %s", event, origin.sid, error)
            reply(ERROR_EVENT, error_payload(event, error))
            if ack is not None:
                ack({"ok": False, "error": {"code": error.code, "message": error.message, "detail": error.detail}})
            return
        except Exception as exc:  # a bug costs this event, never the connection
            log.exception("event %s failed", event)
            reply(ERROR_EVENT, {"event": event, "code": "internal", "message": f"{type(exc).__name__}: {exc}"})
            return
        for emit in emits:
            if emit.everyone:
                self.emit_everyone(emit.event, emit.payload)
            else:
                reply(emit.event, emit.payload)
        if ack is not None:
            ack({"ok": True, "result": emits[0].payload if emits else None})

    async def _call(self, service: str, command: str, payload: Any, on_behalf_of: str | None = None,
                    device: str | None = None) -> Any:
        return await self.bridge.call(service, command, payload, self.settings.call_timeout_s, on_behalf_of,
                                      lab.target_device(self, device))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class GatewayASGI:
    """Dispatch `/socket.io/` on EIO before Starlette sees it; everything else is the Starlette app.

    Engine.IO 3 is served outside the body limit's middleware: its POST reads at most `max_payload` bytes itself,
    and its polls are the gateway's busiest path (every broadcast answers one per polling client)."""

    def __init__(self, gateway: Gateway, app: ASGIApp, max_body: int):
        self.gateway = gateway
        self.app = BodyLimit(app, lambda _scope: max_body)
        self.sio4 = BodyLimit(gateway.sio4_app, lambda _scope: max_body)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            scope[frames.RAW_SEND] = send  # the server's own, before any wrapper: broadcasts write ready frames
        if scope["type"] in ("http", "websocket") and scope["path"].rstrip("/") == "/socket.io":
            query = scope.get("query_string", b"").decode(errors="replace")
            if "EIO=4" in query.split("&"):
                await self.sio4(scope, receive, send)
                return
            await self._eio3(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _eio3(self, scope, receive, send) -> None:
        engine = self.gateway.sio3.engine
        if scope["type"] == "websocket":
            await engine.handle_websocket(WebSocket(scope, receive, send))
            return
        await engine.handle_http(scope, receive, send)


def _asgi_peer(environ: dict) -> str:
    """The client's address: the ASGI scope's `client` (python-engineio's REMOTE_ADDR is always 127.0.0.1)."""
    client = (environ.get("asgi.scope") or {}).get("client")
    return client[0] if client else ""


def create_app(settings: GatewaySettings, bridge: Bridge) -> tuple[GatewayASGI, Gateway]:
    gateway = Gateway(settings, bridge)
    routes = [*recorder_routes.routes(gateway),  # before http's: /api/history comes from the recorder when it runs
              *http.routes(gateway), *definitions_routes.routes(),
              WebSocketRoute("/ws", ws.endpoint(gateway))]
    routes.extend(dashboard.routes(settings))  # the dashboard at / (static files), after every API route

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        await gateway.startup()
        yield
        await gateway.shutdown()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return GatewayASGI(gateway, app, settings.max_payload_bytes), gateway


__all__ = ["Gateway", "GatewayASGI", "create_app", "Route"]
