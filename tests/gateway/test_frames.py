"""Frames made once for every WebSocket client: the same bytes the websockets library makes, taken only where valid."""
from __future__ import annotations

import json

import pytest
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect as ws_connect

from benchbus.demo import DemoService, DemoSettings
from benchbus.testing import wait_until

from benchbus_gateway.frames import text_frame

from .conftest import UNTRUSTED
from .test_ws_http import recv_json


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_a_text_frame_is_the_websockets_librarys_own(length):
    text = ("é" * length)[:length]  # two UTF-8 bytes a character: the length field counts bytes
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


@pytest.mark.parametrize("compression", [False, True])
def test_ws_clients_get_their_messages_with_or_without_deflate(gateway, serve, make_settings, compression):
    """Without compression the ready frame is written; with permessage-deflate the frames differ per connection, so
    they go through the library's framer. Either way every client reads the same messages."""
    serve(DemoService, make_settings(DemoSettings))
    service = gateway(websocket_compression=compression, **UNTRUSTED)
    url = service.url.replace("http", "ws") + "ws"
    with ws_connect(url) as first, ws_connect(url) as second:
        for socket in (first, second):
            socket.send(json.dumps({"op": "subscribe", "filter": "demo/#"}))
            recv_json(socket, lambda m: m["op"] == "subscribed")
        clients = list(service.gateway.ws_clients)
        assert len(clients) == 2
        assert all(client.frames is not None for client in clients)  # uvicorn's sansio connection is reachable
        text = '{"op":"message","topic":"t","payload":"' + "x" * 300 + '"}'
        for client in clients:  # as a fan-out does it: on the web server's loop
            service.gateway.loop.call_soon_threadsafe(client.send_text, text)
        for socket in (first, second):
            assert recv_json(socket, lambda m: m.get("topic") == "t")["payload"] == "x" * 300
            negotiated = socket.protocol.extensions
            assert bool(negotiated) is compression


def test_a_ws_client_that_stops_reading_is_dropped_not_buffered_without_end(gateway, serve, make_settings):
    """A transport write never waits: without the cap, a client that reads nothing would hold every broadcast in the
    gateway's memory. The client's library stops reading once one frame waits (max_queue=1), so the socket fills."""
    serve(DemoService, make_settings(DemoSettings))
    service = gateway(**UNTRUSTED)
    url = service.url.replace("http", "ws") + "ws"
    with ws_connect(url, max_queue=1) as stalled:
        stalled.send(json.dumps({"op": "subscribe", "filter": "demo/#"}))
        recv_json(stalled, lambda m: m["op"] == "subscribed")
        client = next(iter(service.gateway.ws_clients))
        text = '{"op":"message","topic":"t","payload":"' + "x" * 100_000 + '"}'
        for _ in range(200):  # 20 MB: past the socket buffers and the 1 MiB cap
            service.gateway.loop.call_soon_threadsafe(client.send_text, text)
        wait_until(lambda: client not in service.gateway.ws_clients, 10, "the stalled client dropped")
        transport = client.frames.protocol.transport
        assert transport.is_closing() and transport.get_write_buffer_size() == 0  # nothing more held for it
