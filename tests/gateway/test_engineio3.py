"""Our Engine.IO 3 / Socket.IO 4 server on its own: encoding, the handshake, polling, the upgrade, errors, expiry."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from starlette.datastructures import QueryParams

from benchbus.testing import wait_until
from benchbus_gateway.engineio3 import ProtocolError, decode_payload, encode_payload, parse_query, utf16_length
from benchbus_gateway.socketio_v4 import PacketError, decode_packet, encode_packet


# -- encoding (pure) ------------------------------------------------------------------------------------------------

def test_binary_payload_round_trip_counts_utf8_bytes():
    packets = ["0{\"sid\":\"abc\"}", "42/dpu-evolver,[\"x\",\"€\"]"]
    body = encode_payload(packets, binary=True)
    assert body[0] == 0 and body[1:3] == bytes([1, 4]) and body[3] == 0xFF
    assert decode_payload(body) == packets


def test_string_payload_counts_utf16_units_like_javascript():
    assert encode_payload(["4€€€"], binary=False) == "4:4€€€".encode()
    assert utf16_length("4😀") == 3
    assert decode_payload("3:4😀2:40".encode()) == ["4😀", "40"]


@pytest.mark.parametrize("body, problem", [
    (b"", "empty payload"),
    (b"5:40", "runs past the end"),
    (b"x:40", "expected '<length>:'"),
    (b"1:9", "unknown packet type"),
    (bytes([0, 2]), "not terminated"),
    (bytes([0, 2]) + b"40", "bad length digit"),
    (bytes([0, 9, 0xFF]) + b"4", "runs past the end"),
    (bytes([1, 1, 0xFF]) + b"\x04", "binary packets are not supported"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_malformed_payloads_are_refused_with_the_reason(body, problem):
    with pytest.raises(ProtocolError, match=problem):
        decode_payload(body)


def test_socketio_packets_with_namespace_ack_and_query():
    packet = decode_packet('2/dpu-evolver,12["command",{"param":"stir"}]')
    assert (packet.type, packet.namespace, packet.ack_id, packet.data) == (2, "/dpu-evolver", 12,
                                                                           ["command", {"param": "stir"}])
    connect = decode_packet("0/dpu-evolver?token=abc")
    assert (connect.namespace, connect.query) == ("/dpu-evolver", "token=abc")
    assert encode_packet(0, "/dpu-evolver") == "0/dpu-evolver"
    assert encode_packet(3, "/dpu-evolver", ["ok"], 7) == '3/dpu-evolver,7["ok"]'
    assert encode_packet(2, "/", ["broadcast", {}]) == '2["broadcast",{}]'
    for bad in ("9", "2[1]", "2/x,not json", "51-[\"x\"]"):
        with pytest.raises(PacketError):
            decode_packet(bad)


# -- against the running server ---------------------------------------------------------------------------------------

def handshake(base: str, **params) -> tuple[str, list[str], httpx.Response]:
    response = httpx.get(f"{base}socket.io/", params={"EIO": "3", "transport": "polling", "t": "1", **params})
    assert response.status_code == 200, response.text
    packets = decode_payload(response.content)
    assert packets[0][0] == "0"
    return json.loads(packets[0][1:])["sid"], packets, response


def poll(base: str, sid: str, **params) -> list[str]:
    response = httpx.get(f"{base}socket.io/", params={"EIO": "3", "transport": "polling", "sid": sid, **params},
                         timeout=10)
    assert response.status_code == 200, response.text
    return decode_payload(response.content)


def post(base: str, sid: str, body: bytes, **headers) -> httpx.Response:
    return httpx.post(f"{base}socket.io/", params={"EIO": "3", "transport": "polling", "sid": sid}, content=body,
                      headers=headers)


def test_a_poll_with_nothing_to_send_is_answered_with_a_noop_after_ping_interval(gateway):
    """No timer per poll: the reaper answers a poll that has waited pingInterval, so a quiet session's poll ends
    (the client then polls again) and never before pingInterval (polling is not a busy loop)."""
    base = gateway(ping_interval_s=0.5, ping_timeout_s=2).url
    sid, packets, _ = handshake(base)
    assert "40" in packets + poll(base, sid)
    started = time.monotonic()
    assert poll(base, sid) == ["6"]
    assert time.monotonic() - started >= 0.5
    assert poll(base, sid) == ["6"]  # and the next one too: the session lives on


def test_polling_handshake_namespace_event_and_ping(gateway):
    base = gateway(ping_interval_s=0.5, ping_timeout_s=2).url
    sid, packets, response = handshake(base)
    opened = json.loads(packets[0][1:])
    assert opened["upgrades"] == ["websocket"] and opened["pingInterval"] == 500 and opened["pingTimeout"] == 2000
    assert response.headers["content-type"] == "application/octet-stream"
    assert "40" in packets + poll(base, sid)  # joined to "/" by the server, as Socket.IO 2 servers do
    assert post(base, sid, encode_payload(["40/dpu-evolver", "2"], binary=True)).text == "ok"
    assert poll(base, sid) == ["40/dpu-evolver", "3"]
    # an unknown event reaches the sender as an error event, on the namespace
    assert post(base, sid, encode_payload(['42/dpu-evolver,["nosuchevent",{}]'], binary=False)).text == "ok"
    reply = poll(base, sid)[0]
    assert reply.startswith('42/dpu-evolver,["benchbus_error",')
    assert json.loads(reply[len("42/dpu-evolver,"):])[1]["code"] == "not_found"


def test_b64_clients_get_string_framing(gateway):
    base = gateway().url
    _sid, packets, response = handshake(base, b64="1")
    assert response.headers["content-type"].startswith("text/plain")
    assert response.content.decode().startswith(f"{len(packets[0])}:0")


def test_a_browser_on_another_origin_gets_cors_headers_and_others_none(gateway):
    """The GUI's page may come from elsewhere: its Origin is echoed with credentials; a client without one (the
    DPU's Python client) gets no CORS headers at all."""
    base = gateway().url
    params = {"EIO": "3", "transport": "polling", "t": "1"}
    browser = httpx.get(f"{base}socket.io/", params=params, headers={"Origin": "http://gui.example:8080"})
    assert browser.headers["access-control-allow-origin"] == "http://gui.example:8080"
    assert browser.headers["access-control-allow-credentials"] == "true"
    plain = httpx.get(f"{base}socket.io/", params=params)
    assert not [name for name in plain.headers if name.startswith("access-control-")]


def test_unknown_namespace_is_refused(gateway):
    base = gateway().url
    sid, packets, _ = handshake(base)
    assert packets[1:] == ["40"]
    post(base, sid, encode_payload(["40/elsewhere"], binary=True))
    assert poll(base, sid) == ['44/elsewhere,"Invalid namespace"']


def test_protocol_errors_are_clear_http_errors(gateway):
    base = gateway(max_payload_bytes=2048).url
    url = f"{base}socket.io/"
    bad_version = httpx.get(url, params={"EIO": "7", "transport": "polling"})
    assert bad_version.status_code == 400 and bad_version.json()["message"] == "Unsupported protocol version"
    assert httpx.get(url, params={"EIO": "3", "transport": "carrier-pigeon"}).json()["code"] == 0
    unknown = httpx.get(url, params={"EIO": "3", "transport": "polling", "sid": "nope"})
    assert unknown.status_code == 400 and unknown.json()["message"] == "Session ID unknown"
    assert httpx.post(url, params={"EIO": "3", "transport": "polling"}).json()["message"] == "Bad handshake method"
    sid, _packets, _ = handshake(base)
    malformed = post(base, sid, b"12:4oops")
    assert malformed.status_code == 400 and "malformed payload" in malformed.json()["detail"]
    too_big = post(base, sid, b"9" * 5000)
    assert too_big.status_code == 413
    # the session survived both and still works
    assert post(base, sid, encode_payload(["2x"], binary=True)).text == "ok"
    assert "3x" in poll(base, sid)


def test_websocket_upgrade_moves_the_session_and_its_queue(gateway):
    base = gateway().url
    sid, _packets, _ = handshake(base)
    post(base, sid, encode_payload(["40/dpu-evolver"], binary=True))  # its answer waits for the next poll
    ws_url = base.replace("http", "ws") + f"socket.io/?EIO=3&transport=websocket&sid={sid}"
    with ws_connect(ws_url) as socket:
        socket.send("2probe")
        assert socket.recv(5) == "3probe"
        socket.send("5")
        assert socket.recv(5) == "40/dpu-evolver"  # what was queued for polling now arrives on the WebSocket
        socket.send("2")
        assert socket.recv(5) == "3"
    # polling that session after the upgrade is refused
    assert httpx.get(f"{base}socket.io/", params={"EIO": "3", "transport": "polling", "sid": sid}).status_code == 400


def test_websocket_only_client_and_a_garbage_frame(gateway):
    base = gateway().url
    with ws_connect(base.replace("http", "ws") + "socket.io/?EIO=3&transport=websocket") as socket:
        assert socket.recv(5).startswith('0{"sid"')
        assert socket.recv(5) == "40"
        socket.send("x-not-a-packet")
        with pytest.raises(ConnectionClosed):
            while True:
                socket.recv(5)
        assert socket.close_code == 1002 and "parse error" in socket.close_reason


def test_a_vanished_client_expires_by_the_ping_timeout(gateway):
    service = gateway(ping_interval_s=25.0, ping_timeout_s=60.0)  # the reaper looks once a second
    base = service.url
    sids = [handshake(base)[0] for _ in range(5)]
    engine = service.gateway.sio3.engine
    assert all(sid in engine.sessions for sid in sids)  # well inside an 85 s window, however loaded the machine
    engine.ping_interval, engine.ping_timeout = 0.2, 0.3  # now they have been silent for longer than the window
    wait_until(lambda: not any(sid in engine.sessions for sid in sids), 10, "the silent sessions to expire")
    assert all(not members for members in service.gateway.sio3.members.values())
    gone = httpx.get(f"{base}socket.io/", params={"EIO": "3", "transport": "polling", "sid": sids[0]})
    assert gone.json()["message"] == "Session ID unknown"


def test_closed_reads_need_the_token_or_a_trusted_address_to_connect(gateway):
    from .conftest import TOKEN
    base = gateway(read_requires_token=True, trusted_networks=[]).url
    refused = httpx.get(f"{base}socket.io/", params={"EIO": "3", "transport": "polling"})
    assert refused.status_code == 403
    handshake(base, token=TOKEN)
    trusted = gateway(read_requires_token=True).url  # loopback is trusted by default
    handshake(trusted)


@pytest.mark.parametrize("raw", [b"EIO=3&transport=polling&sid=Jx1-_vC3", b"EIO=3&transport=polling&t=N1&b64=1",
                                 b"a=1&a=2&b&c=", b"token=a%2Fb+c&EIO=3", b"", b"&&x=1", b"k=v=w", b"n=%E9t%C3%A9"])
def test_the_fast_query_parse_reads_what_starlette_reads(raw):
    assert parse_query(raw) == dict(QueryParams(raw.decode("latin-1")))


def test_the_ping_window_is_interval_plus_timeout_exactly():
    """Engine.IO 3: the client pings; a session silent for pingInterval + pingTimeout is gone, and not a moment sooner
    (a DPU on a slow link pings every pingInterval and may wait pingTimeout for the answer)."""
    from benchbus_gateway.engineio3 import EngineIO3Server

    closed: list[tuple[str, str]] = []
    server = EngineIO3Server(on_connect=lambda _s: None, on_message=lambda _s, _m: None,
                             on_close=lambda session, reason: closed.append((session.sid, reason)),
                             ping_interval=25.0, ping_timeout=60.0)
    session = server._open_session({}, binary=False)
    handshake = json.loads(session.take_all()[0][1:])  # the open packet tells the client the window
    assert handshake["pingInterval"] == 25000 and handshake["pingTimeout"] == 60000
    window = 25.0 + 60.0
    session.last_seen = time.monotonic() - window + 1.0  # silent for 84 s: within the window
    assert server.reap() == 0 and session.sid in server.sessions
    server._receive(session, "2")  # a ping resets the window and is answered
    assert time.monotonic() - session.last_seen < 1.0 and session.take_all() == ["3"]
    session.last_seen = time.monotonic() - window - 1.0  # silent for 86 s: past it
    assert server.reap() == 1 and session.sid not in server.sessions
    assert closed == [(session.sid, "ping timeout")]
