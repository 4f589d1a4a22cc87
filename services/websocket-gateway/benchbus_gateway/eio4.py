"""python-socketio's server for Engine.IO 4 clients, made when the first such client arrives.

Importing python-socketio and python-engineio costs ~5 MB of resident memory in every gateway process
(bench/footprint.py), and the eVOLVER's own clients all speak Engine.IO 3 (engineio3.py): most gateways never see an
Engine.IO 4 client. Handlers registered before that are handed to the server when it is made.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send


class LazySocketIOServer:
    """`on()` as python-socketio's AsyncServer; `app` is its ASGI app; anything else is the server's own."""

    def __init__(self, socketio_path: str = "socket.io", **options: Any):
        self._path = socketio_path
        self._options = options
        self._handlers: list[tuple[str, Callable, str | None]] = []
        self._server: Any = None
        self._app: Any = None

    @property
    def made(self) -> bool:
        return self._server is not None

    def on(self, event: str, handler: Callable, namespace: str | None = None) -> None:
        self._handlers.append((event, handler, namespace))
        if self._server is not None:
            self._server.on(event, handler, namespace=namespace)

    def server(self) -> Any:
        if self._server is None:
            import socketio  # the ~5 MB this module exists to defer

            server = socketio.AsyncServer(async_mode="asgi", **self._options)
            for event, handler, namespace in self._handlers:
                server.on(event, handler, namespace=namespace)
            self._app = socketio.ASGIApp(server, socketio_path=self._path)
            self._server = server
        return self._server

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.server()
        await self._app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        # emit, disconnect, get_environ: only asked for once an Engine.IO 4 client is connected
        return getattr(self.server(), name)
