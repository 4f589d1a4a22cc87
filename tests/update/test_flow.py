"""The whole update flow on file-backed slots, over HTTP and on the bus, against the real broker."""
import threading

import httpx
import pytest

from benchbus import BusError, Service, ServiceSettings
from benchbus.demo import DemoService, DemoSettings
from benchbus.testing import wait_until


def collect(bus, device, kind_name):
    """Every message on one topic, in arrival order."""
    seen = []
    bus.subscribe(f"benchbus/{device}/update/{kind_name}", lambda _t, data, _m: seen.append(data))
    return seen


def retained(bus, device, name, predicate=lambda d: True, timeout=10.0):
    return bus.wait_for(f"benchbus/{device}/update/state/{name}", lambda _t, d: predicate(d), timeout)[1]


def install(running, bundle_path, tools) -> str:
    """begin -> file -> done; returns the token."""
    token = running.http.post("/server/update/begin").json()["token"]
    response = tools.upload(running.http, token, bundle_path)
    assert response.status_code == 201, response.text
    status = tools.wait_stage(running.http, token)
    assert status["stage"] == "done", status
    return token


def test_health_has_the_reference_fields_and_a_boot_id(running):
    body = running.http.get("/server/update/health")
    assert body.status_code == 200 and body.headers["access-control-allow-origin"] == "*"
    health = body.json()
    assert health["capabilities"]["systemUpdate"] == "/server/update/begin"
    assert health["robotModel"] == "OT-2 Standard" and health["bootId"]


def test_whole_update_flow_then_confirmation(running, bundle_file, rootfs, bus, device, serve, make_settings, tools):
    progress = collect(bus, device, "event/progress")
    trials = collect(bus, device, "event/trial")
    boot_before = running.http.get("/server/update/health").json()["bootId"]
    assert retained(bus, device, "slots")["running"] == "a"

    token = install(running, bundle_file(), tools)
    # the image is on the inactive slot, byte for byte, and the slot stays unbootable until the commit
    assert (running.slot_dir / "slot-b.img").read_bytes() == rootfs
    assert retained(bus, device, "slots")["invalid"] == ["b"]

    committed = running.http.post(f"/server/update/{token}/commit")
    assert committed.status_code == 200 and committed.json()["stage"] == "ready-for-restart"
    slots = retained(bus, device, "slots", lambda d: d["trial"] == "b")
    assert slots["next_boot"] == "b" and slots["good"] == "a" and slots["invalid"] == []

    assert running.http.post("/server/restart").json()["message"].startswith("Restarting")
    wait_until(lambda: running.http.get("/server/update/health").json()["bootId"] != boot_before,
               what="a new boot id", timeout=15)
    trial = retained(bus, device, "slots", lambda d: d["running"] == "b")
    assert trial["trial"] == "b" and trial["good"] == "a" and trial["confirm_deadline"]

    # every service (here: one, started after the boot) becomes ready -> the new slot is confirmed
    serve(DemoService, make_settings(DemoSettings))
    confirmed = retained(bus, device, "slots", lambda d: d["good"] == "b")
    assert confirmed == {**confirmed, "running": "b", "trial": None, "next_boot": "b"}
    wait_until(lambda: trials, what="the trial event", timeout=15)
    assert trials[0]["outcome"] == "confirmed" and trials[0]["slot"] == "b"

    # progress: stages in the reference's order, progress never going back within a stage
    order = ["awaiting-file", "validating", "writing", "done", "ready-for-restart"]
    stages = [p["stage"] for p in progress if p["token"] == token]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == order
    for stage in ("validating", "writing"):
        values = [p["progress"] for p in progress if p["stage"] == stage]
        assert values == sorted(values) and values[-1] == 1.0 and len(values) > 3


class StuckService(Service[ServiceSettings]):
    """Connects, says `starting`, never ready."""
    segment = "stuckservice"


def test_rollback_when_a_service_never_becomes_ready(start_agent, bundle_file, bus, device, make_settings, tools):
    running = start_agent(confirm_timeout_s=1.5)
    trials = collect(bus, device, "event/trial")
    token = install(running, bundle_file(), tools)
    running.http.post(f"/server/update/{token}/commit")
    running.http.post("/server/restart")
    retained(bus, device, "slots", lambda d: d["running"] == "b" and d["trial"] == "b")

    stuck = StuckService(make_settings(ServiceSettings))
    stuck.start(connect_timeout=10)
    try:
        wait_until(lambda: trials, timeout=15, what="the rollback")
        assert trials[0]["outcome"] == "rolled_back" and trials[0]["slot"] == "b"
        assert "stuckservice (starting)" in trials[0]["reason"]
        after = retained(bus, device, "slots", lambda d: d["running"] == "a")
        assert after["good"] == "a" and after["next_boot"] == "a"
        assert after["invalid"] == ["b"] and after["trial"] is None
    finally:
        stuck.stop()


def test_boot_script_gives_up_on_a_trial_that_never_reaches_the_agent(start_agent, bundle_file, bus, device, tools):
    """The new system dies before the agent starts: the boot script falls back; the agent reports it next boot."""
    running = start_agent()
    token = install(running, bundle_file(), tools)
    running.http.post(f"/server/update/{token}/commit")
    running.service.stop()
    loader = running.agent.boot_loader
    assert loader.boot() == "b"  # the trial boot (it dies before our agent runs)
    assert loader.boot() == "a"  # the next power-on: tries used up, back to the good slot
    trials = collect(bus, device, "event/trial")
    start_agent()
    wait_until(lambda: trials, what="the rollback report", timeout=15)
    assert trials[0]["outcome"] == "rolled_back" and "boot script" in trials[0]["reason"]
    slots = retained(bus, device, "slots", lambda d: d["running"] == "a")
    assert slots["invalid"] == ["b"] and slots["trial"] is None


def test_refused_bundle_ends_in_error_on_http_and_bus(running, bundle_file, rootfs, other_rsa_key, bus, device, tools):
    token = running.http.post("/server/update/begin").json()["token"]
    tools.upload(running.http, token, bundle_file(tools.bundle_members(rootfs, other_rsa_key)))
    status = tools.wait_stage(running.http, token)
    assert status["stage"] == "error" and status["error"] == "Signature Mismatch"
    assert "signature" in status["message"]
    session = retained(bus, device, "session", lambda d: d["stage"] == "error")
    assert session["error"] == "Signature Mismatch" and session["token"] == token
    assert not (running.slot_dir / "slot-b.img").exists()  # nothing was written
    # an ended session does not block the next one
    assert running.http.post("/server/update/begin").status_code == 201


def test_second_session_is_refused(running, bus):
    first = running.http.post("/server/update/begin")
    assert first.status_code == 201
    second = running.http.post("/server/update/begin")
    assert second.status_code == 409 and second.json()["error"] == "session-already-active"
    with pytest.raises(BusError) as caught:
        bus.call("update", "begin", {})
    assert caught.value.code == "conflict"


def test_status_and_commit_rules(running, tools):
    assert running.http.get("/server/update/nope/status").json() == {
        "error": "bad-token", "message": "no update session has the token 'nope'"}
    token = running.http.post("/server/update/begin").json()["token"]
    assert running.http.get(f"/server/update/{token}/status").json() == {
        "stage": "awaiting-file", "progress": 0.0, "message": "Waiting for update file"}
    not_ready = running.http.post(f"/server/update/{token}/commit")
    assert not_ready.status_code == 409 and not_ready.json()["error"] == "not-ready"


def test_upload_without_the_file_field(running, tools):
    token = running.http.post("/server/update/begin").json()["token"]
    response = running.http.post(f"/server/update/{token}/file", files={"other.zip": ("x.zip", b"abc")})
    assert response.status_code == 400 and response.json()["error"] == "no-file-name"
    # the session still waits for its file, and takes it
    assert running.http.get(f"/server/update/{token}/status").json()["stage"] == "awaiting-file"


def test_upload_over_the_size_limit(start_agent, bundle_file, tools):
    running = start_agent(max_upload_bytes=100_000)
    token = running.http.post("/server/update/begin").json()["token"]
    response = tools.upload(running.http, token, bundle_file())
    assert response.status_code == 413 and response.json()["error"] == "Too Large"


def test_cancel_mid_upload(running, bundle_file, tools):
    token = running.http.post("/server/update/begin").json()["token"]
    data = bundle_file().read_bytes()
    boundary = "benchbusboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"ot2-system.zip\"; filename=\"b.zip\"\r\n"
            "Content-Type: application/zip\r\n\r\n").encode()
    halfway = threading.Event()
    go_on = threading.Event()

    def body():
        yield head
        yield data[: len(data) // 2]
        halfway.set()
        go_on.wait(10)
        yield data[len(data) // 2:]
        yield f"\r\n--{boundary}--\r\n".encode()

    result = {}

    def send():
        with httpx.Client(base_url=running.url, timeout=30) as client:
            result["response"] = client.post(f"/server/update/{token}/file", content=body(),
                                             headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    sender = threading.Thread(target=send)
    sender.start()
    assert halfway.wait(10)
    wait_until(lambda: any((running.state_dir / "downloads" / token).glob("*")), what="the partial file",
               timeout=15)
    assert running.http.post("/server/update/cancel").json() == {"message": "Session cancelled"}
    go_on.set()
    sender.join(15)
    assert result["response"].status_code == 409 and result["response"].json()["error"] == "cancelled"
    assert running.http.get(f"/server/update/{token}/status").status_code == 404
    assert list((running.state_dir / "downloads").iterdir()) == []
    assert running.http.post("/server/update/begin").status_code == 201


def test_interrupted_upload_can_be_sent_again(running, bundle_file, tools):
    """#10714: an upload dies half-way (EPIPE); the session waits for the file again instead of wedging."""
    import socket
    token = running.http.post("/server/update/begin").json()["token"]
    data = bundle_file().read_bytes()
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"ot2-system.zip\"; "
            "filename=\"b.zip\"\r\n\r\n").encode()
    total = len(head) + len(data) + len(f"\r\n--{boundary}--\r\n")
    port = int(running.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(f"POST /server/update/{token}/file HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode() + head + data[:50000])
        wait_until(lambda: any((running.state_dir / "downloads" / token).glob("*")), what="the partial file",
                   timeout=15)  # the upload is under way when its connection dies
    wait_until(lambda: running.http.get(f"/server/update/{token}/status").json()["stage"] == "awaiting-file"
               and not any((running.state_dir / "downloads" / token).glob("*")), what="the session to wait again",
               timeout=15)
    assert tools.upload(running.http, token, bundle_file()).status_code == 201
    assert tools.wait_stage(running.http, token)["stage"] == "done"


def test_files_of_a_crashed_agent_are_cleaned_and_the_half_written_slot_stays_invalid(start_agent, agent_settings,
                                                                                     bundle_file, bus, device, tools):
    from benchbus_update.agent import UpdateAgent
    settings = agent_settings()
    crashed = UpdateAgent(settings)  # the agent as it was when it died: a session open, a slot half written
    crashed.updates.begin()
    writer = crashed.slots.open_writer("b", 10_000_000)
    writer.write(b"half" * 1000)  # ... and then the power went (no fsync, no close)
    leftovers = list((settings.state_dir / "downloads").iterdir())
    assert leftovers
    running = start_agent()
    assert list((running.state_dir / "downloads").iterdir()) == []
    slots = retained(bus, device, "slots")
    assert slots["invalid"] == ["b"] and slots["next_boot"] == "a"
    assert running.agent.boot_loader.boot() == "a"  # the boot loader never picks the half-written slot
    install(running, bundle_file(), tools)  # and a new update goes through


def test_the_whole_flow_on_the_bus(running, bundle_file, bus, device, tools):
    token = bus.call("update", "begin", {})["token"]
    state = bus.call("update", "load_file", {"token": token, "path": str(bundle_file())})
    assert state["stage"] == "validating"
    wait_until(lambda: bus.call("update", "status", {"token": token})["stage"] in ("done", "error"), what="done",
               timeout=15)
    assert bus.call("update", "status", {"token": token})["stage"] == "done"
    assert bus.call("update", "commit", {"token": token})["stage"] == "ready-for-restart"
    with pytest.raises(BusError) as caught:
        bus.call("update", "begin", {})  # a committed trial must be confirmed before another update
    assert caught.value.code == "conflict"
    assert bus.call("update", "cancel", {}) == {"message": "Session cancelled"}  # cancel after commit points back
    slots = retained(bus, device, "slots", lambda d: d["trial"] is None)
    assert slots["next_boot"] == "a" and slots["invalid"] == ["b"]
    with pytest.raises(BusError) as caught:
        bus.call("update", "status", {"token": "x" * 65})
    assert caught.value.code == "invalid_request" and "token" in caught.value.message
