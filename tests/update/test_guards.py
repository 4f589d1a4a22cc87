"""Issue 15 against the update-agent: no downgrade unless an admin forces it, every body bounded while it streams."""
from __future__ import annotations

import json
import select
import socket
from pathlib import Path

import pytest

from benchbus import BusError
from benchbus.testing import wait_until


@pytest.fixture
def running_v3(start_agent, tmp_path):
    """The agent on a system whose /etc/VERSION.json says buildroot v3 (the fixture's bundles are v2)."""
    (tmp_path / "VERSION.json").write_text(json.dumps({"buildroot_version": "v3", "robot_type": "OT-2 Standard"}))
    return start_agent()


def bundle_of(bundle_file, rootfs, rsa_key, tools, version: dict | None, name: str) -> Path:
    return bundle_file(tools.bundle_members(rootfs, rsa_key, version), name=name)


# -- downgrades -------------------------------------------------------------------------------------------------------

def test_an_older_bundle_is_refused(running_v3, bundle_file, rootfs, tools):
    http = running_v3.http
    token = http.post("/server/update/begin").json()["token"]
    assert tools.upload(http, token, bundle_file()).status_code == 201
    status = tools.wait_stage(http, token)
    assert status["stage"] == "error" and status["error"] == "Downgrade"
    assert "2" in status["message"] and "3" in status["message"] and "force" in status["message"]
    slot_b = running_v3.slot_dir / "slot-b.img"
    assert not slot_b.exists() or slot_b.read_bytes() != rootfs  # nothing was written


def test_a_forced_downgrade_needs_the_admin_token_and_then_installs(running_v3, bundle_file, rootfs, tools):
    http = running_v3.http
    refused = http.post("/server/update/begin?force=true")
    assert refused.status_code == 403 and refused.json()["error"] == "force-needs-admin"
    admin = {"Authorization": f"Bearer {tools.ADMIN_TOKEN}"}
    token = http.post("/server/update/begin", json={"force": True}, headers=admin).json()["token"]
    assert tools.upload(http, token, bundle_file()).status_code == 201
    assert tools.wait_stage(http, token)["stage"] == "done"
    assert (running_v3.slot_dir / "slot-b.img").read_bytes() == rootfs


@pytest.mark.parametrize("version, stage", [
    ({"buildroot_version": "v3.0.1"}, "done"),   # newer
    ({"buildroot_version": "3"}, "done"),        # the same system again
    ({"robot_type": "OT-2 Standard"}, "error"),  # no version to compare: not shown to be no older
    (None, "error"),                             # no VERSION.json at all
])
def test_versions_on_the_bus_and_force(running_v3, bundle_file, rootfs, rsa_key, bus, tools, version, stage):
    path = bundle_of(bundle_file, rootfs, rsa_key, tools, version, "candidate.zip")
    token = bus.call("update", "begin", {})["token"]
    bus.call("update", "load_file", {"token": token, "path": str(path)})
    wait_until(lambda: bus.call("update", "status", {"token": token})["stage"] in ("done", "error"), timeout=15)
    result = bus.call("update", "status", {"token": token})
    assert result["stage"] == stage, result
    if stage == "error":
        assert result["error"] == "Downgrade"
        bus.call("update", "cancel", {})
        forced = bus.call("update", "begin", {"force": True})["token"]  # the admin's explicit decision
        bus.call("update", "load_file", {"token": forced, "path": str(path)})
        wait_until(lambda: bus.call("update", "status", {"token": forced})["stage"] in ("done", "error"), timeout=15)
        assert bus.call("update", "status", {"token": forced})["stage"] == "done"


def test_force_is_a_boolean(running, bus):
    with pytest.raises(BusError) as caught:
        bus.call("update", "begin", {"force": "yes"})
    assert caught.value.code == "invalid_request" and "force" in caught.value.message


# -- bodies bounded while they stream ---------------------------------------------------------------------------------

def stream_body(port: int, path: str, chunks, headers: dict[str, str]) -> tuple[int, int, bytes]:
    """POST a chunked body from a generator over a raw socket, stopping when the server answers or hangs up."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
    sock.sendall((head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
    sent = 0
    try:
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
    except OSError:
        pass
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                break
            data += more
    finally:
        sock.close()
    return int(data.split(b" ", 2)[1]), sent, data


def huge(total: int = 300 * 1024 * 1024, size: int = 256 * 1024):
    chunk = b"{" + b" " * (size - 1)
    for _ in range(total // size):
        yield chunk


@pytest.mark.parametrize("path", ["/server/ssh_keys", "/server/name", "/server/update/begin"])
def test_300_mb_body_is_413_before_it_is_buffered(running, path):
    status, sent, _ = stream_body(running.service.http.port, path, huge(),
                                  {"Content-Type": "application/json", "X-Admin-Token": "a-long-admin-token-for-tests"})
    assert status == 413
    assert sent < 64 * 1024 * 1024, f"the agent read {sent} bytes of a body it should have refused at 64 KiB"


def test_declared_length_over_the_limit_is_413_at_once(running):
    sock = socket.create_connection(("127.0.0.1", running.service.http.port), timeout=10)
    sock.sendall(b"POST /server/name HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 314572800\r\n\r\n")
    answer = sock.recv(4096)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413") and b"Too Large" in answer
