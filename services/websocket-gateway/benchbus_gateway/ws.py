"""`/ws`: a JSON WebSocket onto the bus, for browsers, dashboards and scripts.

Client to server, one JSON object a message:
    {"op": "auth", "token": "..."}                                     (or an `Authorization: Bearer` header / ?token=)
    (`/ws?device=<id>` on a lab's central gateway: relative filters and calls go to that device; lab.py)
    {"op": "subscribe", "filter": "scheduler/event/#"}                 (MQTT filter; relative to benchbus/<device>/)
    {"op": "unsubscribe", "filter": "..."}
    {"op": "call", "id": 1, "service": "gpio", "command": "get_lights", "payload": {}, "timeout": 5}
Server to client:
    {"op": "access", "writes": true, "by": "trusted network"}          on connecting, when the address may write
    {"op": "message", "topic": "benchbus/<device>/...", "payload": {...}}   ($state, state/* and event/* topics)
    {"op": "subscribed", "filter": "benchbus/<device>/..."}                 then the retained values that match
    {"op": "reply", "id": 1, "ok": true, "result": ...} / {"op": "reply", "id": 1, "ok": false, "error": {...}}
    {"op": "error", "error": {"code": ..., "message": ...}}                 a message that could not be taken
Calls are writes and need the token or a client address in `trusted_networks`; subscriptions are reads (open unless
`read_requires_token`).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from paho.mqtt.client import topic_matches_sub
from starlette.websockets import WebSocket, WebSocketDisconnect

from benchbus import BusError
from benchbus.trust import bearer

from . import lab
from .access import Caller
from .frames import FrameWriter

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("benchbus.gateway.ws")

MAX_MESSAGE = 1_000_000
MAX_WAITING = 1000


class WsClient:
    def __init__(self, gateway: Gateway, websocket: WebSocket, caller: Caller, device: str | None = None):
        self.gateway = gateway
        self.device = device  # another device than the gateway's own (lab mode), else None
        self.websocket = websocket
        self.caller = caller
        self.filters: list[str] = []
        self.outbox: deque[str] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False
        self.frames = FrameWriter.of(websocket.scope)

    @property
    def authorized(self) -> bool:
        return self.caller.may_write

    def send_text(self, text: str) -> None:
        if self.closed:
            return
        if len(self.outbox) >= MAX_WAITING:
            log.warning("/ws client not reading (%d messages waiting); closing it", len(self.outbox))
            self.closed = True
            self.wakeup.set()
            return
        if self.frames is not None and not self.outbox and self.frames.send_text(text):
            return  # nothing waiting: written now, no writer task to wake per client
        self.outbox.append(text)
        self.wakeup.set()

    def send(self, message: dict) -> None:
        self.send_text(json.dumps(message, separators=(",", ":")))

    def error(self, code: str, message: str, request_id: Any = None) -> None:
        body: dict[str, Any] = {"op": "error", "error": {"code": code, "message": message}}
        if request_id is not None:
            body = {"op": "reply", "id": request_id, "ok": False, "error": {"code": code, "message": message}}
        self.send(body)

    async def close(self, code: int, reason: str) -> None:
        self.closed = True
        self.wakeup.set()
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await self.websocket.close(code, reason)

    async def write_forever(self) -> None:
        try:
            while not self.closed or self.outbox:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.outbox:  # a message leaves the outbox once sent: `send_text` writes ahead only when empty
                    text = self.outbox[0]
                    if self.frames is None or not self.frames.send_text(text):
                        await self.websocket.send_text(text)
                    self.outbox.popleft()
                if self.closed:
                    break
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True


@functools.lru_cache(maxsize=4096)
def matches(topic_filter: str, topic_name: str) -> bool:
    """paho's matcher builds a trie per call (~10 us); a fan-out asks the same few questions for every client."""
    return topic_matches_sub(topic_filter, topic_name)


def fan_out(gateway: Gateway, topic_name: str, text: str) -> None:
    """Send one bus message to every /ws client whose filters match; the JSON is built once."""
    frame = None
    for client in gateway.ws_clients:
        if any(matches(f, topic_name) for f in client.filters):
            if frame is None:
                frame = '{"op":"message","topic":' + json.dumps(topic_name) + ',"payload":' + (text or "null") + "}"
            client.send_text(frame)


def absolute_filter(gateway: Gateway, topic_filter: Any, device: str | None = None) -> str:
    """A filter under benchbus/<device>/; relative ones are taken under it. Raises BusError otherwise."""
    if not isinstance(topic_filter, str) or not topic_filter or len(topic_filter) > 512:
        raise BusError("invalid_request", "field 'filter': a topic filter string is required")
    prefix = f"benchbus/{device or gateway.device}/"
    if gateway.settings.lab and topic_filter.startswith("benchbus/"):
        prefix = "benchbus/"  # a lab's central gateway: every device (the reply check below still holds)
    if topic_filter.startswith("benchbus/"):
        if not topic_filter.startswith(prefix):
            raise BusError("unauthorized", f"filter '{topic_filter}' is outside this device ({prefix}...)")
        absolute = topic_filter
    elif topic_filter.startswith(("/", "$")):
        raise BusError("invalid_request", f"filter '{topic_filter}' is not a topic filter")
    else:
        absolute = prefix + topic_filter
    levels = absolute.split("/")
    for index, level in enumerate(levels):
        if ("#" in level and (level != "#" or index != len(levels) - 1)) or ("+" in level and level != "+"):
            raise BusError("invalid_request", f"filter '{topic_filter}': a wildcard must fill a whole level "
                                              "(and # only the last)")
    if "_client" in levels[:3]:
        raise BusError("unauthorized", "other clients' replies cannot be subscribed")
    return absolute


def endpoint(gateway: Gateway):
    async def serve(websocket: WebSocket) -> None:
        presented = _presented_token(websocket)
        caller = gateway.access.caller("ws", websocket.client.host if websocket.client else None, presented)
        if gateway.settings.read_requires_token and not caller.may_write and presented is not None:
            await websocket.close(1008, "bad token")
            return
        try:
            device = lab.target_device(gateway, websocket.query_params.get("device"))
        except BusError as error:
            await websocket.close(1008, error.message[:120])
            return
        await websocket.accept()
        client = WsClient(gateway, websocket, caller, device)
        gateway.ws_clients.add(client)
        if caller.may_write:
            client.send({"op": "access", "writes": True, "by": "token" if caller.token_ok else "trusted network"})
        writer = asyncio.ensure_future(client.write_forever())
        try:
            while not client.closed:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    text = (message.get("bytes") or b"").decode(errors="replace")
                await _take(gateway, client, text)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            gateway.ws_clients.discard(client)
            client.closed = True
            client.wakeup.set()
            try:
                await asyncio.wait_for(writer, 1.0)
            except (TimeoutError, Exception):
                writer.cancel()
    return serve


def _presented_token(websocket: WebSocket) -> str | None:
    return bearer(websocket.headers.get("authorization")) or websocket.query_params.get("token")


async def _take(gateway: Gateway, client: WsClient, text: str) -> None:
    if len(text) > MAX_MESSAGE:
        client.error("invalid_request", f"message of {len(text)} characters is larger than {MAX_MESSAGE}")
        return
    try:
        message = json.loads(text)
    except ValueError as exc:
        client.error("invalid_request", f"message is not valid JSON: {exc}")
        return
    if not isinstance(message, dict):
        client.error("invalid_request", "a message is a JSON object with an 'op'")
        return
    op, request_id = message.get("op"), message.get("id")
    try:
        if op == "auth":
            token = message.get("token")
            client.caller = gateway.access.caller("ws", client.caller.address, token if isinstance(token, str) else "")
            if not client.caller.token_ok:
                raise BusError("unauthorized", "wrong token")
            client.send({"op": "authorized", "id": request_id})
        elif op == "subscribe":
            _subscribe(gateway, client, message.get("filter"))
        elif op == "unsubscribe":
            absolute = absolute_filter(gateway, message.get("filter"), client.device)
            if absolute in client.filters:
                client.filters.remove(absolute)
            client.send({"op": "unsubscribed", "filter": absolute})
        elif op == "call":
            asyncio.ensure_future(_call(gateway, client, message))
        else:
            raise BusError("invalid_request", f"field 'op': unknown op {op!r}; expected auth, subscribe, "
                                              "unsubscribe or call")
    except BusError as error:
        client.error(error.code, error.message, request_id)


def _subscribe(gateway: Gateway, client: WsClient, topic_filter: Any) -> None:
    if gateway.settings.read_requires_token and not client.authorized:
        raise BusError("unauthorized", "reads need the bearer token on this gateway")
    absolute = absolute_filter(gateway, topic_filter, client.device)
    if absolute not in client.filters:
        if len(client.filters) >= gateway.settings.max_ws_subscriptions:
            raise BusError("conflict", f"at most {gateway.settings.max_ws_subscriptions} subscriptions per client")
        client.filters.append(absolute)
    client.send({"op": "subscribed", "filter": absolute})
    for topic_name, (text, _data) in list(gateway.retained.items()):
        if topic_matches_sub(absolute, topic_name):
            client.send_text('{"op":"message","topic":' + json.dumps(topic_name) + ',"payload":' + text
                             + ',"retained":true}')


async def _call(gateway: Gateway, client: WsClient, message: dict) -> None:
    request_id = message.get("id")
    try:
        if not client.authorized:
            raise BusError("unauthorized", gateway.access.write_refusal(client.caller))
        service, command = message.get("service"), message.get("command")
        if not isinstance(service, str) or not isinstance(command, str) or not service or not command:
            raise BusError("invalid_request", "fields 'service' and 'command' are required strings")
        timeout = message.get("timeout", gateway.settings.call_timeout_s)
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise BusError("invalid_request", "field 'timeout': seconds, more than 0 and at most 120")
        result = await gateway.bridge.call(service, command, message.get("payload") or {}, float(timeout),
                                           client.caller.on_behalf_of, client.device)
        client.send({"op": "reply", "id": request_id, "ok": True, "result": result})
    except BusError as error:
        client.send({"op": "reply", "id": request_id, "ok": False,
                     "error": {"code": error.code, "message": error.message, "detail": error.detail}})
