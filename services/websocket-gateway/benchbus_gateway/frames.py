"""A text message framed once, written to every WebSocket client as the same bytes.

A server's text frame (RFC 6455 5.2: FIN, opcode 1, no mask, the payload's length, the UTF-8 payload) is the same
bytes on every connection that negotiated no extension. A broadcast to hundreds of clients is framed once here and
handed to each connection's transport, instead of going through Starlette's and uvicorn's send chain and the
websockets library's framer once per client (the profile: a third of the gateway's CPU per broadcast).

The shortcut is taken only on uvicorn's `websockets-sansio` connection (service.py asks for it), in state OPEN,
with no extension (permessage-deflate frames differ per connection) and nothing closing; anywhere else `write`
answers False and the caller sends through ASGI as before.

A transport write never waits for the socket to drain, so a client that stops reading would grow the gateway's
memory without bound: past MAX_BUFFERED_BYTES waiting for one client, that client is dropped (as the outbox cap
drops a client on the ASGI path).
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from websockets.protocol import State

RAW_SEND = "benchbus.asgi_send"  # the scope key under which GatewayASGI keeps the server's own ASGI `send`
MAX_BUFFERED_BYTES = 1 << 20  # written to one client and not yet taken by its socket: hundreds of broadcasts

log = logging.getLogger("benchbus.gateway.frames")


@functools.lru_cache(maxsize=16)
def text_frame(text: str) -> bytes:
    """The unmasked, unfragmented text frame of `text` (a broadcast's string is the same object for every client,
    so the cache hit costs a hash already computed and an identity check)."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


class FrameWriter:
    """Writes ready frames to one uvicorn websockets-sansio connection, or says it cannot."""

    def __init__(self, protocol: Any):
        self.protocol = protocol

    @classmethod
    def of(cls, scope: Mapping[str, Any]) -> FrameWriter | None:
        send = scope.get(RAW_SEND)
        protocol = getattr(send, "__self__", None)
        if type(protocol).__name__ != "WebSocketsSansIOProtocol" or not hasattr(protocol, "conn"):
            return None
        return cls(protocol)

    def write(self, frame: bytes) -> bool:
        protocol = self.protocol
        conn = protocol.conn
        if conn.state is not State.OPEN or conn.extensions or protocol.close_sent or \
                protocol.transport.is_closing():
            return False
        transport = protocol.transport
        if transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            log.warning("WebSocket client %s not reading (%d bytes waiting); dropping it",
                        transport.get_extra_info("peername"), transport.get_write_buffer_size())
            transport.abort()  # the connection's end reaches its endpoint, which forgets the client
            return True  # nothing more is queued for it
        transport.write(frame)
        return True

    def send_text(self, text: str) -> bool:
        return self.write(text_frame(text))
