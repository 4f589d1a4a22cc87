"""The `gateway` service (websocket-gateway): the HTTP/WebSocket port for the DPU, the GUI, browsers and scripts.

The gateway owns no hardware; it calls other services' commands for its clients. On the bus it says how many clients
it serves, so an operator sees who is connected.
"""
from __future__ import annotations

from pydantic import Field

from .envelope import Empty, Payload
from .registry import command, state

SERVICE = "gateway"


class Clients(Payload):
    socketio_eio3_websocket: int = Field(..., ge=0, description="Engine.IO 3 (DPU/GUI) clients on a WebSocket")
    socketio_eio3_polling: int = Field(..., ge=0, description="Engine.IO 3 clients long-polling")
    socketio_eio4: int = Field(..., ge=0, description="Engine.IO 4 (Socket.IO 3+) clients")
    ws: int = Field(..., ge=0, description="JSON WebSocket (/ws) clients")
    url: str = Field(..., description="where the gateway listens")


command(SERVICE, "clients", Empty, Clients, "The clients connected now.")
state(SERVICE, "clients", Clients, "The clients connected, retained; published at most once a second on change.")
