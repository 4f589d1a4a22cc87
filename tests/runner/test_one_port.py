"""One port for the App: the robot's hardware routes and the update-agent's /server/* on the runner's port, driven
with a real HTTP client (httpx) through that port. The robot routes reach the real gpio-service and smoothie-bridge
of the emulated stack; /server/* reaches a real update-agent (file-backed slots) through the runner's proxy."""
from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest

from benchbus.testing import wait_until

from .conftest import HEADERS, emulator_lines

TOKEN = "runner-one-port-token-0123"
ADMIN = "update-admin-token-0123456"


# -- the robot routes ---------------------------------------------------------------------------------------------

def test_robot_routes_keep_the_robot_servers_conventions(runner):
    missing = httpx.get(runner.base + "/robot/lights")
    assert missing.status_code == 422 and "Opentrons-Version" in missing.json()["message"]
    assert httpx.get(runner.base + "/robot/lights", headers={"Opentrons-Version": "1"}).status_code == 400
    ok = httpx.get(runner.base + "/robot/lights", headers={"Opentrons-Version": "3"})
    assert ok.status_code == 200
    assert ok.headers["Opentrons-Version"] == "3" and ok.headers["Opentrons-Min-Version"] == "2"
    assert httpx.post(runner.base + "/robot/lights", json={"on": "yes"}, headers=HEADERS).status_code == 422
    assert httpx.post(runner.base + "/identify", headers=HEADERS).status_code == 422
    assert httpx.post(runner.base + "/robot/home", json={"target": "arm"}, headers=HEADERS).status_code == 400
    assert httpx.post(runner.base + "/motors/disengage", json={"axes": ["q"]}, headers=HEADERS).status_code == 422


def test_lights_identify_door_and_motors_reach_the_hardware_services(runner, bus):
    base = runner.base
    assert httpx.post(base + "/robot/lights", json={"on": True}, headers=HEADERS).json() == {"on": True}
    try:
        assert httpx.get(base + "/robot/lights", headers=HEADERS).json() == {"on": True}
        assert bus.call("gpio", "get_lights")["on"] is True  # it really reached the gpio-service
    finally:
        httpx.post(base + "/robot/lights", json={"on": False}, headers=HEADERS)
    assert httpx.post(base + "/identify?seconds=1", headers=HEADERS).json() == {"message": "identifying"}

    door = httpx.get(base + "/robot/door/status", headers=HEADERS).json()
    assert door == {"data": {"status": "closed", "doorRequiredClosedForProtocol": False}}
    bus.call("gpio", "sim_set_input", {"input": "door", "active": True})
    try:
        wait_until(lambda: httpx.get(base + "/robot/door/status", headers=HEADERS).json()["data"]["status"] == "open",
                   5, "the door showing open")
    finally:
        bus.call("gpio", "sim_set_input", {"input": "door", "active": False})
        wait_until(lambda: httpx.get(base + "/robot/door/status", headers=HEADERS).json()["data"]["status"]
                   == "closed", 5, "the door closed again")
        bus.call("smoothie", "resume", {})  # the open door paused motion; the next test starts from a free robot

    disengaged = httpx.post(base + "/motors/disengage", json={"axes": ["x", "y"]}, headers=HEADERS)
    assert disengaged.status_code == 200, disengaged.text
    engaged = httpx.get(base + "/motors/engaged", headers=HEADERS).json()
    assert engaged["x"] == {"enabled": False} and engaged["y"] == {"enabled": False}


def test_home_answers_when_the_bridge_has_homed(runner, stack, bus):
    """No gateway timeout in between: the answer comes with the bridge's own result, the homing G-code done."""
    _lines, mark = emulator_lines(stack)
    reply = httpx.post(runner.base + "/robot/home", json={"target": "robot"}, headers=HEADERS, timeout=150)
    assert reply.status_code == 200 and reply.json() == {"message": "Homing robot."}, reply.text
    lines, _ = emulator_lines(stack, mark)
    assert any("G28.2" in line for line in lines), lines  # homed before the answer, not after
    assert all(bus.call("smoothie", "homed", {})[axis] for axis in "XYZA")
    pipette = httpx.post(runner.base + "/robot/home", json={"target": "pipette", "mount": "left"}, headers=HEADERS,
                         timeout=150)
    assert pipette.status_code == 200 and pipette.json() == {"message": "Pipette on left homed successfully"}


def test_robot_writes_need_the_token_outside_the_trusted_networks(start_runner):
    runner = start_runner(env={"BENCHBUS_RUNNER_TRUSTED_NETWORKS": '["10.0.0.0/8"]', "BENCHBUS_RUNNER_TOKEN": TOKEN})
    refused = httpx.post(runner.base + "/robot/lights", json={"on": False}, headers=HEADERS)
    assert refused.status_code == 401 and refused.json()["errorCode"] == "4001"
    assert "127.0.0.1 is not in a trusted network" in refused.json()["message"]
    passed = httpx.post(runner.base + "/robot/lights", json={"on": False},
                        headers={**HEADERS, "Authorization": f"Bearer {TOKEN}"})
    assert passed.status_code == 200
    assert httpx.get(runner.base + "/robot/lights", headers=HEADERS).status_code == 200  # reads stay open


# -- the update-agent's /server/* ---------------------------------------------------------------------------------

@pytest.fixture
def update_agent(serve, make_settings, tmp_path):
    """A real update-agent on file-backed slots, believing X-Host-IP from the runner's address (127.0.0.1) only."""
    from benchbus_update.service import UpdateService
    from benchbus_update.settings import UpdateSettings

    folder = tmp_path / "update"
    settings = make_settings(UpdateSettings, http_port=0, state_dir=folder / "state", slot_dir=folder / "slots",
                             restart_command=None, authorized_keys=folder / "ssh" / "authorized_keys",
                             serial_file=folder / "serial", version_file=folder / "VERSION.json",
                             signature_required=False, admin_token=ADMIN, trusted_proxies=["127.0.0.1/32"])
    service = serve(UpdateService, settings)
    return service


@pytest.fixture
def proxied(start_runner, update_agent):
    """The runner on 127.0.0.2 (so the address a client reached differs from the update-agent's own), trusting
    127.0.0.1/32 (our client's address) only, with a write token, its own body limit at 1 MiB, a bundle's at 4 MiB."""
    return start_runner(env={"BENCHBUS_RUNNER_HTTP_HOST": "127.0.0.2",
                             "BENCHBUS_RUNNER_UPDATE_URL": f"http://127.0.0.1:{update_agent.http.port}",
                             "BENCHBUS_RUNNER_TRUSTED_NETWORKS": '["127.0.0.1/32"]', "BENCHBUS_RUNNER_TOKEN": TOKEN,
                             "BENCHBUS_RUNNER_MAX_BODY_BYTES": str(1024 * 1024),
                             "BENCHBUS_RUNNER_SERVER_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024)})


def bundle(rootfs: bytes) -> bytes:
    import hashlib

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("rootfs.ext4", rootfs)
        archive.writestr("rootfs.ext4.hash", hashlib.sha256(rootfs).hexdigest())
        archive.writestr("VERSION.json", json.dumps({"robot_type": "OT-2 Standard", "buildroot_version": "v2"}))
    return buffer.getvalue()


def test_a_system_update_goes_through_the_runners_port(proxied, update_agent):
    """begin, a bundle (3 MiB: past the runner's own 1 MiB body limit, streamed, not held), status, commit."""
    http = httpx.Client(base_url=proxied.base, timeout=60)
    health = http.get("/server/update/health")
    assert health.status_code == 200 and health.json()["capabilities"]["systemUpdate"] == "/server/update/begin"
    token = http.post("/server/update/begin")
    assert token.status_code == 201, token.text
    token = token.json()["token"]
    rootfs = bytes(range(256)) * 12288 + b"through-31950"
    uploaded = http.post(f"/server/update/{token}/file",
                         files={"ot2-system.zip": ("bundle.zip", bundle(rootfs), "application/zip")})
    assert uploaded.status_code == 201, uploaded.text
    status = wait_until(lambda: (s := http.get(f"/server/update/{token}/status").json())["stage"] in ("done", "error")
                        and s, 30, "the update checked")
    assert status["stage"] == "done", status
    assert (update_agent.settings.slot_dir / "slot-b.img").read_bytes() == rootfs  # every byte came through
    assert http.post(f"/server/update/{token}/commit").json()["stage"] == "ready-for-restart"


def test_server_bodies_keep_the_update_agents_limits(proxied, update_agent):
    """The update-agent's limits, kept at the runner's door: 64 KiB for a name, a declared length over it and a chunked
    body past it both 413; a bundle past the upload limit is 413 and the update-agent is never handed the truncated
    body as a whole one."""
    http = httpx.Client(base_url=proxied.base, timeout=30)
    declared = http.post("/server/name", content=b"{" + b" " * 100_000 + b"}",
                         headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"] == "Too Large"
    chunked = http.post("/server/name", content=iter([b"{" + b" " * 50_000] * 4),
                        headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    named = http.post("/server/name", json={"name": "bench-ot2"})
    assert named.status_code == 200 and named.json()["name"] == "bench-ot2"

    token = http.post("/server/update/begin").json()["token"]
    too_big = http.post(f"/server/update/{token}/file", content=iter([b"PK" + b"\0" * (1024 * 1024 - 2)] * 6),
                        headers={"Content-Type": "application/zip"})
    assert too_big.status_code == 413 and too_big.json()["error"] == "Too Large"
    # the cut body was not taken as a bundle: the session takes the whole file once the agent has seen the abort
    rootfs = b"after-the-refusal" * 4096
    whole = bundle(rootfs)
    wait_until(lambda: http.post(f"/server/update/{token}/file", content=whole,
                                 headers={"Content-Type": "application/zip"}).status_code == 201, 10,
               "the session taking the whole bundle after the refused one")
    done = wait_until(lambda: (s := http.get(f"/server/update/{token}/status").json())["stage"] in ("done", "error")
                      and s, 30, "the update checked")
    assert done["stage"] == "done", done
    assert (update_agent.settings.slot_dir / "slot-b.img").read_bytes() == rootfs


def test_server_writes_need_the_token_and_the_update_agent_sees_the_address_reached(proxied):
    outside = httpx.Client(base_url=proxied.base, timeout=30,
                           transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    with outside:
        refused = outside.post("/server/name", json={"name": "x"})
        assert refused.status_code == 401 and "127.0.0.3 is not in a trusted network" in refused.json()["message"]
        assert outside.get("/server/name").status_code == 200  # reads stay open
        allowed = outside.post("/server/name", json={"name": "by-token"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and allowed.json()["name"] == "by-token"

        # SSH keys only over a link-local interface: the update-agent hears from the runner (a trusted proxy) who the
        # client is and which address it reached (127.0.0.2), never the client's own claims
        claimed = outside.get("/server/ssh_keys", headers={"X-Host-IP": "169.254.10.10", "X-Forwarded-For": "10.9.9.9"})
        assert claimed.status_code == 403
        assert "from 127.0.0.3 came to 127.0.0.2" in claimed.json()["message"]
        # the update-agent's own admin token passes through (in X-Admin-Token, beside the runner's)
        admin = outside.get("/server/ssh_keys", headers={"X-Admin-Token": ADMIN})
        assert admin.status_code == 200 and admin.json() == {"public_keys": []}
