"""Every HTTP request body bounded while it streams: 413 before it is buffered, whatever route it is for.

One ASGI layer for every HTTP server of benchbus (the gateway: Starlette's routes, our Engine.IO 3 server,
python-engineio, which reads a whole body before it looks at its size; the update-agent, whose bundle upload has a
larger limit of its own and streams to disk). Plain ASGI, no web framework. A declared `Content-Length` over the
limit is answered at once, before a byte of the body is read; a chunked body is counted as it arrives, and the first
chunk past the limit ends it: the 413 goes out, the application sees the client gone, and `Connection: close` makes
uvicorn drop the connection instead of reading the rest. uvicorn reads no further than the application asks (its
flow control pauses the socket), so at most one limit and a socket buffer of a body are ever in memory.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("benchbus.http_limits")

# As Starlette types them, so its apps are ours too
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def bus_error_body(limit: int, message: str) -> dict[str, Any]:
    """The error body of a 413 (the bus's error shape by default; a service may answer in its own protocol's)."""
    return {"ok": False, "error": {"code": "invalid_request", "message": message, "detail": {"limit": limit}}}


async def send_too_large(send: Send, limit: int, declared: int | None = None,
                         render: Callable[[int, str], dict[str, Any]] = bus_error_body) -> None:
    size = f"{declared} bytes" if declared is not None else "more than that"
    body = json.dumps(render(limit, f"the request body is {size}; the limit is {limit} bytes"))
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body.encode()})


class BodyLimit:
    """ASGI middleware: `limit_for(scope)` is the largest body a request may carry."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int],
                 render: Callable[[int, str], dict[str, Any]] = bus_error_body):
        self.app = app
        self.limit_for = limit_for
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            log.info("refused a body of %d bytes to %s (limit %d)", declared, scope.get("path"), limit)
            await send_too_large(send, limit, declared, self.render)
            return
        await _Bounded(self.app, limit, self.render).run(scope, receive, send)


class _Bounded:
    """One request whose body is counted as the application reads it."""

    def __init__(self, app: ASGIApp, limit: int, render: Callable[[int, str], dict[str, Any]]):
        self.app = app
        self.limit = limit
        self.render = render
        self.received = 0
        self.refused = False
        self.started = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def bounded_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.refused = True
                    log.info("refused a streamed body to %s past %d bytes", scope.get("path"), self.limit)
                    if not self.started:
                        self.started = True
                        await send_too_large(send, self.limit, render=self.render)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused:
                return  # the 413 went out instead of whatever the application makes of a vanished client
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not self.refused:
                raise
            log.debug("the application gave up on the refused body", exc_info=True)
