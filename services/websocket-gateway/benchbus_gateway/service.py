"""`benchbus-gateway`: the bus wiring of the gateway (the only place that subscribes and publishes).

The web server (uvicorn, one asyncio loop) runs on a thread of its own beside the service's main loop. Bus messages
arrive on paho's network thread and are handed to the web loop with call_soon_threadsafe; commands for clients run
the blocking BusClient.call on a small thread pool so the web loop never waits.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from benchbus import RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler
from benchbus_schemas.envelope import Empty
from benchbus_schemas.gateway import Clients

from .app import create_app
from .lab import DeviceClients
from .settings import GatewaySettings

log = logging.getLogger("benchbus.gateway")


class BusBridge:
    """What the web side may do with the bus: call a command (async) and know whether the broker is there."""

    def __init__(self, service: Service, threads: int = 16):
        self.service = service
        self.device = service.device
        self.devices = DeviceClients(service)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="gateway-call")

    async def call(self, service: str, command: str, payload: Any, timeout: float | None = None,
                   on_behalf_of: str | None = None, device: str | None = None) -> Any:
        """`on_behalf_of` names the outside user (attribution on the bus, never authorisation); `device`: another
        device (a lab's central gateway, lab.py), checked by the caller."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.devices.call, service, command, payload, timeout or 10.0, on_behalf_of, device)
        return await loop.run_in_executor(self._pool, call)

    def connected(self) -> bool:
        return self.service.connection.connected.is_set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's protocol, reading every `Connection` header of a request, as RFC 9110 combines repeated fields.

    socketIO-client (the DPU's library) opens its WebSocket with its HTTP session's `Connection: keep-alive` after
    websocket-client's own `Connection: Upgrade`; uvicorn alone keeps only the last one and refuses the upgrade.
    """

    def _get_upgrade(self) -> bytes | None:
        connection: list[bytes] = []
        upgrade = None
        for name, value in self.headers:
            if name == b"connection":
                connection.extend(token.lower().strip() for token in value.split(b","))
            elif name == b"upgrade":
                upgrade = value.lower()
        return upgrade if b"upgrade" in connection else None


class GatewayService(Service[GatewaySettings]):
    """A Service that also runs the web server, and stops it first when asked to stop."""

    segment = "gateway"

    def __init__(self, settings: GatewaySettings):
        super().__init__(settings)
        self.bridge = BusBridge(self)
        self.asgi, self.gateway = create_app(settings, self.bridge)
        self.web: uvicorn.Server | None = None
        self._web_thread: threading.Thread | None = None
        self.port: int | None = None
        self._followed: list[str] = []
        self._published_counts: Clients | None = None

    def on_start(self) -> None:
        self.start_web()
        self.follow_bus()
        self.publish_counts()
        self.every(1.0, self.publish_counts)

    @handler("clients")
    def clients(self, _request: Empty, _ctx: RequestContext) -> Clients:
        return self.counts()

    def counts(self) -> Clients:
        return Clients(**self.gateway.client_counts(), url=self.url)

    def publish_counts(self) -> None:
        now = self.counts()
        if self._published_counts != now:
            self._published_counts = now
            self.set_state("clients", now)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/"

    def start_web(self, timeout: float = 15.0) -> None:
        settings = self.settings
        # proxy_headers off: access.py trusts the TCP peer only, and uvicorn would otherwise take X-Forwarded-For
        # from a loopback peer as the client's address (it is also one middleware less on every poll)
        config = uvicorn.Config(self.asgi, host=settings.host, port=settings.port, log_level="warning",
                                lifespan="on", access_log=False, http=HttpProtocol, ws="websockets-sansio",
                                ws_max_size=settings.max_payload_bytes, proxy_headers=False,
                                ws_ping_interval=None, timeout_graceful_shutdown=2,
                                ws_per_message_deflate=settings.websocket_compression)
        self.web = uvicorn.Server(config)
        self._web_thread = threading.Thread(target=self.web.run, name="gateway-web", daemon=True)
        self._web_thread.start()
        deadline = time.monotonic() + timeout
        while not self.web.started:
            if not self._web_thread.is_alive():  # uvicorn exits its thread when the bind fails (its error above)
                raise RuntimeError(f"the web server stopped before listening on {settings.host}:{settings.port}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the web server was not listening on {settings.host}:{settings.port} "
                                   f"within {timeout:g} s")
            time.sleep(0.02)
        self.port = self.web.servers[0].sockets[0].getsockname()[1]
        log.info("listening on %s:%d (Socket.IO namespace %s)", settings.host, self.port, settings.namespace)
        token_file = self.gateway.access.token_file
        log.info("writes: the token%s, or a client in %s", f" of {token_file}" if token_file else " of the settings",
                 ", ".join(str(n) for n in settings.trusted_networks) or "no trusted network")

    def follow_bus(self) -> None:
        """Every $state, retained state and event of the device, handed to the web loop as raw bytes."""
        loop = self.gateway.loop
        assert loop is not None, "start_web first"
        deliver = self.gateway.deliver

        def forward(message) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(deliver, message.topic, message.payload)

        who = "+" if self.settings.lab else self.device  # a lab's: every device
        self._followed = [f"benchbus/{who}/{kind}" for kind in ("+/$state", "+/state/#", "+/event/#")]
        for topic_filter in self._followed:
            self.connection.subscribe(topic_filter, forward)

    def stop(self) -> None:
        for topic_filter in self._followed:
            self.connection.unsubscribe(topic_filter)
        loop = self.gateway.loop
        if loop is not None and not loop.is_closed():
            # end waiting polls and WebSockets first, so the web server's graceful shutdown has nothing to wait for
            done = asyncio.run_coroutine_threadsafe(self.gateway.shutdown(), loop)
            try:
                done.result(3)
            except Exception:
                log.warning("closing the clients at shutdown did not finish in time")
        if self.web is not None:
            self.web.should_exit = True
            if self._web_thread is not None:
                self._web_thread.join(5)
        self.bridge.close()
        super().stop()


def main(argv: list[str] | None = None) -> int:
    return run_service(GatewayService, argv)


if __name__ == "__main__":
    sys.exit(main())
