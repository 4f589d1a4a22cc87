"""/ws and plain HTTP: tokens for writes, filters outside the device refused, state, history; OT-2 routes."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from benchbus.demo import DemoService, DemoSettings
from benchbus.testing import wait_until

from .conftest import TOKEN, UNTRUSTED


def recv_json(socket, until, timeout: float = 10.0) -> dict:
    """The first message (already received or arriving) that satisfies `until`; messages are kept per socket."""
    backlog = socket.__dict__.setdefault("backlog", [])
    for index, message in enumerate(backlog):
        if until(message):
            return backlog.pop(index)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(socket.recv(max(0.05, deadline - time.monotonic())))
        if until(message):
            return message
        backlog.append(message)
    raise AssertionError("nothing matching arrived")


@pytest.fixture
def demo_gateway(gateway, serve, make_settings):
    serve(DemoService, make_settings(DemoSettings))
    return gateway(**UNTRUSTED)


def test_ws_subscribe_gets_retained_state_then_events(demo_gateway, device):
    with ws_connect(demo_gateway.url.replace("http", "ws") + "ws") as socket:
        socket.send(json.dumps({"op": "subscribe", "filter": "demo/#"}))
        assert recv_json(socket, lambda m: m["op"] == "subscribed")["filter"] == f"benchbus/{device}/demo/#"
        counter = recv_json(socket, lambda m: m.get("topic", "").endswith("/demo/state/counter"))
        assert counter["payload"] == {"value": 0} and counter["retained"] is True
        # a call without the token is refused; after auth it goes through and the event follows
        socket.send(json.dumps({"op": "call", "id": 1, "service": "demo", "command": "increment"}))
        refused = recv_json(socket, lambda m: m.get("id") == 1)
        assert refused["ok"] is False and refused["error"]["code"] == "unauthorized"
        socket.send(json.dumps({"op": "auth", "token": TOKEN}))
        socket.send(json.dumps({"op": "call", "id": 2, "service": "demo", "command": "increment"}))
        assert recv_json(socket, lambda m: m.get("id") == 2) == {"op": "reply", "id": 2, "ok": True,
                                                                 "result": {"value": 1}}
        ticked = recv_json(socket, lambda m: m.get("topic", "").endswith("/demo/event/ticked"))
        assert ticked["payload"]["value"] == 1
        # a request the service refuses comes back with the bus error, naming the field
        socket.send(json.dumps({"op": "call", "id": 3, "service": "demo", "command": "echo", "payload": {"txt": 1}}))
        bad = recv_json(socket, lambda m: m.get("id") == 3)
        assert bad["error"]["code"] == "invalid_request" and "text" in bad["error"]["message"]


@pytest.mark.parametrize("topic_filter, code", [
    ("benchbus/other-device/#", "unauthorized"),
    ("benchbus/+/demo/#", "unauthorized"),
    ("_client/#", "unauthorized"),
    ("demo/sta#", "invalid_request"),
    ("$SYS/#", "invalid_request"),
    (42, "invalid_request"),
])
def test_ws_refuses_filters_outside_the_device(demo_gateway, topic_filter, code):
    with ws_connect(demo_gateway.url.replace("http", "ws") + "ws") as socket:
        socket.send(json.dumps({"op": "subscribe", "filter": topic_filter}))
        assert recv_json(socket, lambda m: m["op"] == "error")["error"]["code"] == code
        socket.send("not json")
        assert "not valid JSON" in recv_json(socket, lambda m: m["op"] == "error")["error"]["message"]


def test_ws_token_in_header_and_closed_reads(gateway, serve, make_settings):
    serve(DemoService, make_settings(DemoSettings))
    service = gateway(read_requires_token=True, **UNTRUSTED)
    url = service.url.replace("http", "ws") + "ws"
    with ws_connect(url) as socket:
        socket.send(json.dumps({"op": "subscribe", "filter": "#"}))
        assert recv_json(socket, lambda m: m["op"] == "error")["error"]["code"] == "unauthorized"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as socket:
        socket.send(json.dumps({"op": "subscribe", "filter": "#"}))
        assert recv_json(socket, lambda m: m["op"] == "subscribed")
    assert httpx.get(service.url + "api/state").status_code == 401
    assert httpx.get(service.url + "api/state", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_http_health_state_and_calls(demo_gateway):
    base = demo_gateway.url
    health = httpx.get(base + "health").json()
    assert health["ok"] is True and health["bus_connected"] is True
    wait_until(lambda: "demo" in httpx.get(base + "api/state").json(), 5, "the demo service's state")
    states = httpx.get(base + "api/state").json()
    assert states["demo"]["state"] == "ready" and states["gateway"]["state"] == "ready"
    assert httpx.get(base + "api/state/demo").json()["state"]["counter"] == {"value": 0}
    assert httpx.get(base + "api/state/nobody").status_code == 404
    call = base + "api/call/demo/echo"
    assert httpx.post(call, json={"text": "hi"}).status_code == 401
    assert httpx.post(call, json={"text": "hi"}, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    ok = httpx.post(call, json={"text": "hi"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.json() == {"ok": True, "result": {"text": "hi", "count": 1}}
    bad = httpx.post(call, content=b"{oops", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    unknown = httpx.post(base + "api/call/demo/nothing", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert unknown.status_code == 404


def test_the_first_start_makes_the_token_in_the_data_folder(gateway, serve, make_settings, tmp_path):
    serve(DemoService, make_settings(DemoSettings))
    first = gateway(token=None, data_dir=tmp_path / "data", **UNTRUSTED)
    base = first.url
    token_file = tmp_path / "data" / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32 and token != TOKEN
    call = base + "api/call/demo/echo"
    refused = httpx.post(call, json={"text": "hi"}, headers={"Authorization": "Bearer x-wrong-token"})
    assert refused.status_code == 401 and "wrong token" in refused.json()["error"]["message"]
    assert httpx.post(call, json={"text": "hi"}, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # the next start keeps the token it made (the first one stopped: two gateways of one device share one MQTT
    # client id, and the broker would hand the connection back and forth between them)
    first.stop()
    again = gateway(token=None, data_dir=tmp_path / "data", **UNTRUSTED).url
    assert httpx.post(again + "api/call/demo/echo", json={"text": "x"},
                      headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert token_file.read_text().strip() == token


def test_history_keeps_recent_broadcasts(stack):
    gateway, _emulator = stack
    wait_until(lambda: len(httpx.get(gateway.url + "api/history").json()["broadcasts"]) >= 2, 10, "two broadcasts")
    history = httpx.get(gateway.url + "api/history?limit=1").json()
    assert len(history["broadcasts"]) == 1 and "od_90" in history["broadcasts"][0]["broadcast"]["data"]
    assert httpx.get(gateway.url + "api/history?limit=x").status_code == 400


def test_static_files_are_served_at_the_root(gateway, tmp_path):
    (tmp_path / "index.html").write_text("<h1>dashboard</h1>")
    base = gateway(static_dir=tmp_path).url
    assert httpx.get(base).text == "<h1>dashboard</h1>"
    assert httpx.get(base + "health").json()["ok"] is True  # routes still win over files


def test_a_device_gateway_serves_its_own_device_only(demo_gateway, device):
    base = demo_gateway.url
    auth = {"Authorization": f"Bearer {TOKEN}"}
    wait_until(lambda: "demo" in httpx.get(base + "api/state").json(), 5, "the demo service's state")
    own = httpx.post(base + "api/call/demo/echo", params={"device": device}, json={"text": "a"}, headers=auth)
    assert own.json()["result"]["text"] == "a"
    other = httpx.post(base + "api/call/demo/echo", params={"device": "elsewhere"}, json={"text": "a"}, headers=auth)
    assert other.status_code == 400 and "'device'" in other.json()["error"]["message"]
    with pytest.raises(InvalidStatus) as refused:  # the WebSocket is refused at its handshake
        ws_connect(base.replace("http", "ws") + "ws?device=elsewhere")
    assert refused.value.response.status_code == 403


def test_a_lab_gateway_calls_and_shows_another_device(gateway, serve, make_settings, device):
    """A lab's central gateway (lab: true) and a service of another device on its broker: `?device=` reaches it."""
    other = f"{device}-b"
    serve(DemoService, make_settings(DemoSettings, device=other))
    lab = gateway(lab=True)
    base = lab.url
    wait_until(lambda: "demo" in httpx.get(base + "api/state", params={"device": other}).json(), 5,
               "the other device's state at the lab gateway")
    assert httpx.get(base + "api/state").json().get("demo") is None  # the gateway's own device has no demo
    answered = httpx.post(base + "api/call/demo/echo", params={"device": other}, json={"text": "hi"})
    assert answered.json() == {"ok": True, "result": {"text": "hi", "count": 1}}
    unknown = httpx.post(base + "api/call/demo/echo", params={"device": f"{device}-nowhere"}, json={})
    assert unknown.status_code == 404
    with ws_connect(base.replace("http", "ws") + f"ws?device={other}") as socket:
        socket.send(json.dumps({"op": "subscribe", "filter": "demo/state/#"}))
        retained = recv_json(socket, lambda m: m.get("op") == "message")
        assert retained["topic"] == f"benchbus/{other}/demo/state/counter"
        socket.send(json.dumps({"op": "call", "id": 7, "service": "demo", "command": "increment", "payload": {}}))
        reply = recv_json(socket, lambda m: m.get("op") == "reply" and m.get("id") == 7)
        assert reply["ok"] is True, reply
