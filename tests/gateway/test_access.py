"""Issue 15 against the gateway: writes need the token or a trusted address, a refusal reaches its sender, every body
is bounded while it streams, and the bus is told on whose behalf the gateway calls."""
from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from benchbus.demo import DemoService, DemoSettings

from .conftest import TOKEN, UNTRUSTED

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(serve, make_settings):
    return serve(DemoService, make_settings(DemoSettings))


# -- HTTP writes ------------------------------------------------------------------------------------------------------

def test_a_write_without_the_token_is_401_from_an_untrusted_address(gateway, demo):
    base = gateway(**UNTRUSTED).url
    refused = httpx.post(base + "api/call/demo/echo", json={"text": "x"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in refused.json()["error"]["message"]
    wrong = httpx.post(base + "api/call/demo/echo", json={"text": "x"}, headers={"Authorization": "Bearer nope-x"})
    assert wrong.status_code == 401 and "wrong token" in wrong.json()["error"]["message"]
    passed = httpx.post(base + "api/call/demo/echo", json={"text": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert passed.status_code == 200
    assert httpx.get(base + "api/state").status_code == 200  # reads stay open


def test_trusted_network_is_a_cidr_of_the_peer_address(gateway, demo):
    """Trust 127.0.0.1/32 only: a client bound to 127.0.0.2 is outside it, the same request from 127.0.0.1 passes."""
    service = gateway(host="0.0.0.0", trusted_networks=["127.0.0.1/32"])
    url = f"http://127.0.0.1:{service.port}/api/call/demo/echo"
    outside = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with outside:
        refused = outside.post(url, json={"text": "x"})
    assert refused.status_code == 401 and "127.0.0.2 is not in a trusted network" in refused.json()["error"]["message"]
    assert httpx.post(url, json={"text": "x"}).status_code == 200


def test_api_call_401_and_a_bus_refusal_is_403(gateway, demo, serve, make_settings, tmp_path):
    from benchbus_update.service import UpdateService
    from benchbus_update.settings import UpdateSettings
    update = tmp_path / "update"
    serve(UpdateService, make_settings(UpdateSettings, http_port=0, state_dir=update / "state",
                                      slot_dir=update / "slots", restart_command=None, authorized_keys=update / "keys",
                                      serial_file=update / "serial", signature_required=False,
                                      version_file=update / "VERSION.json"))
    base = gateway(**UNTRUSTED).url
    assert httpx.post(base + "api/call/update/list_ssh_keys", json={}).status_code == 401
    # the token is fine, the action is not: the update-agent refuses SSH keys without its admin token
    refused_by_bus = httpx.post(base + "api/call/update/list_ssh_keys", json={},
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)
    assert refused_by_bus.status_code == 403 and refused_by_bus.json()["error"]["code"] == "unauthorized"


def test_loopback_is_trusted_by_default_and_the_page_is_told(gateway, demo):
    from websockets.sync.client import connect as ws_connect
    service = gateway()
    assert httpx.post(service.url + "api/call/demo/echo", json={"text": "local"}).status_code == 200
    with ws_connect(service.url.replace("http", "ws") + "ws") as socket_:
        assert json.loads(socket_.recv(5)) == {"op": "access", "writes": True, "by": "trusted network"}
        socket_.send(json.dumps({"op": "call", "id": 1, "service": "demo", "command": "increment"}))
        reply = json.loads(socket_.recv(5))
        assert reply["ok"] is True


def test_the_bus_is_told_on_whose_behalf(gateway, demo, bus, device):
    base = gateway(**UNTRUSTED).url
    seen: list[tuple[str, dict]] = []
    arrived = threading.Event()

    def record(_topic, _data, message):
        seen.append(dict(getattr(message.properties, "UserProperty", None) or []))
        arrived.set()

    bus.subscribe(f"benchbus/{device}/demo/cmd/#", record)
    deadline = time.monotonic() + 10
    while not arrived.is_set():  # our own calls show when the subscription is in place
        assert time.monotonic() < deadline, "the subscription never saw a command"
        bus.call("demo", "echo", {"text": "probe"})
        arrived.wait(0.2)
    assert "on_behalf_of" not in seen[-1]  # a direct caller acts for nobody else
    arrived.clear()
    assert httpx.post(base + "api/call/demo/echo", json={"text": "x"},
                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert arrived.wait(5)
    assert seen[-1]["on_behalf_of"] == "http:127.0.0.1 (token)"


# -- bodies bounded while they stream ---------------------------------------------------------------------------------

def rss_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")


def stream_body(port: int, path: str, chunks, headers: dict[str, str]) -> tuple[int, int]:
    """POST a chunked body from a generator over a raw socket, stopping when the server answers or hangs up.
    Returns (status, body bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    sent = 0
    try:
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer is there: stop sending, as a client that reads would
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
        else:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection on us: what it should do
    return read_status(sock), sent


def read_status(sock: socket.socket) -> int:
    data = b""
    try:
        while b"\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                break
            data += more
    finally:
        sock.close()
    return int(data.split(b" ", 2)[1])


def huge(total: int = 300 * 1024 * 1024, size: int = 256 * 1024):
    chunk = b"[" + b" " * (size - 1)
    for _ in range(total // size):
        yield chunk


def eio4_session(base: str) -> str:
    opened = httpx.get(base + "socket.io/", params={"EIO": "4", "transport": "polling"})
    return json.loads(opened.text[1:])["sid"]


@pytest.mark.parametrize("path, headers", [
    ("/api/call/demo/echo", {"Authorization": f"Bearer {TOKEN}"}),
    ("/socket.io/?EIO=4&transport=polling&sid={sid}", {}),  # python-engineio reads a whole body before its check
    ("/socket.io/?EIO=3&transport=polling&sid={sid}", {}),
])
def test_300_mb_streamed_body_is_413_before_it_is_buffered(gateway, path, headers):
    service = gateway()  # loopback is trusted: the body is the only thing in the way
    if "EIO=4" in path:
        path = path.format(sid=eio4_session(service.url))
    elif "EIO=3" in path:
        from benchbus_gateway.engineio3 import decode_payload
        opened = httpx.get(service.url + "socket.io/", params={"EIO": "3", "transport": "polling"})
        path = path.format(sid=json.loads(decode_payload(opened.content)[0][1:])["sid"])
    before = rss_peak_kib()
    status, sent = stream_body(service.port, path, huge(), {"Content-Type": "application/json", **headers})
    assert status == 413
    assert sent < 64 * 1024 * 1024, f"the server read {sent} bytes of a body it should have refused at 1 MB"
    assert rss_peak_kib() - before < 64 * 1024, "the gateway's memory grew with the body"


def test_declared_length_over_the_limit_is_413_before_a_byte_is_read(gateway):
    service = gateway()
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    sock.sendall(b"POST /api/call/demo/echo HTTP/1.1\r\nHost: localhost\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n")
    assert read_status(sock) == 413  # answered with no body sent at all


# -- no token string shipped ------------------------------------------------------------------------------------------

def test_no_default_token_string_in_the_repository():
    """The first start makes the token; nothing in the repository (compose, Docker, settings) supplies one."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    default = re.compile(r"change-me|GATEWAY_TOKEN:-|GATEWAY_TOKEN[=:][ \t]*['\"]?[A-Za-z0-9_-]{8}")
    offenders = [name for name in tracked if not name.startswith("tests/") and (REPO / name).is_file()
                 and default.search((REPO / name).read_text(errors="replace"))]
    assert offenders == []


def test_benchbus_up_points_the_gateway_at_its_data_folder_and_prints_the_token_path(tmp_path):
    from benchbus.settings import BrokerSettings
    from benchbus.up import UpContext
    from benchbus_gateway.up import units
    (unit,) = units(UpContext(broker=BrokerSettings(), device="dev", data_dir=tmp_path, http_port=8081))
    assert unit.env["BENCHBUS_GATEWAY_DATA_DIR"] == str(tmp_path / "gateway")
    assert "BENCHBUS_GATEWAY_TOKEN" not in unit.env  # the gateway makes its own at its first start
    assert f"write token in {tmp_path / 'gateway' / 'token'}" in unit.url
