"""A run belongs to the runner, not to a client: it survives the client that started it; a kill -9 of the runner
mid-run leaves the robot halted, the lease released and the run failed with the reason after the restart; stop
and the door behave as on an OT-2."""
from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from benchbus import BusClient

from .conftest import LONG, SHORT, lease_free, wait_steps

def run_holder_pid(bus: BusClient) -> int:
    _t, lease = bus.wait_for(bus.topic("smoothie", "state", "lease"),
                             lambda _t, d: bool(re.search(r"runner-\d+", (d or {}).get("holder") or "")), 60)
    return int(re.search(r"runner-(\d+)", lease["holder"]).group(1))


def wait_gone(pid: int, timeout: float = 10) -> None:
    """Until the process has ended (a zombie waiting for its parent to reap it counts as ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"the run's process {pid} is still there")


def test_run_survives_its_client_and_a_kill_9_of_the_runner(start_runner, stack, bus, tmp_path):
    data = tmp_path / "runner-data"
    runner = start_runner(data)
    with BusClient(stack.device, stack.broker, name="uploader") as uploader:
        short = uploader.call("runner", "upload", {"file_name": "short.py", "source": SHORT}, timeout=120)
        run = uploader.call("runner", "create_run", {"protocol_id": short["id"]}, timeout=30)
        uploader.call("runner", "play", {"run_id": run["id"]}, timeout=30)
    # the uploader has gone; the run goes on to the end
    bus.wait_for(bus.topic("runner", "state", "run"),
                 lambda _t, d: d.get("id") == run["id"] and d.get("status") in ("succeeded", "failed"), 180)
    assert runner.get(f"/runs/{run['id']}")["data"]["status"] == "succeeded"
    lease_free(bus)

    reply = runner.upload(LONG, "long.py")
    assert reply.status_code == 201, reply.text
    long_run = runner.post("/runs", {"data": {"protocolId": reply.json()["data"]["id"]}})["data"]
    runner.post(f"/runs/{long_run['id']}/actions", {"data": {"actionType": "play"}})
    child = run_holder_pid(bus)
    wait_steps(bus, long_run["id"], 20)
    runner.kill9()

    lease_free(bus)  # the run's process saw its runner go, halted the robot and gave the lease back
    _t, alarm = bus.wait_for(bus.topic("smoothie", "state", "alarm"), lambda _t, d: (d or {}).get("active"), 15)
    wait_gone(child)

    restarted = start_runner(data)
    failed = restarted.get(f"/runs/{long_run['id']}")["data"]
    assert failed["status"] == "failed" and failed["current"] is False
    assert failed["errors"][0]["errorType"] == "RunnerRestarted"
    assert "killed" in failed["errors"][0]["detail"] and failed["errors"][0]["step"]
    kept = restarted.get(f"/runs/{long_run['id']}/commands")["data"]
    assert len(kept) >= 20 and kept[0]["status"] == "succeeded"  # the log up to the kill, read back

    again = restarted.post("/runs", {"data": {"protocolId": short["id"]}})["data"]
    restarted.post(f"/runs/{again['id']}/actions", {"data": {"actionType": "play"}})
    done = restarted.wait_status(again["id"], ("succeeded", "failed", "stopped"))
    assert done["status"] == "succeeded", done["errors"]  # the run homes first, which clears the halt's alarm


def test_stop_mid_move_halts_and_releases_within_a_second(runner, bus):
    reply = runner.upload(LONG, "long.py")
    run = runner.post("/runs", {"data": {"protocolId": reply.json()["data"]["id"]}})["data"]
    runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "play"}})
    child = run_holder_pid(bus)
    wait_steps(bus, run["id"], 10)
    runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "stop"}})
    stopped = runner.get(f"/runs/{run['id']}")["data"]
    assert stopped["status"] == "stopped"  # the stop action answers once the run's process has ended
    wait_gone(child)
    lease_free(bus, timeout=2)
    bus.wait_for(bus.topic("smoothie", "state", "alarm"), lambda _t, d: (d or {}).get("active"), 5)


def test_door_pauses_and_play_resumes(runner, bus):
    reply = runner.upload(LONG.replace("range(400)", "range(40)"), "door.py")
    run = runner.post("/runs", {"data": {"protocolId": reply.json()["data"]["id"]}})["data"]
    runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "play"}})
    wait_steps(bus, run["id"], 5)
    try:
        bus.call("gpio", "sim_set_input", {"input": "door", "active": True})
        _t, paused = bus.wait_for(bus.topic("runner", "state", "run"),
                                  lambda _t, d: d.get("id") == run["id"] and d.get("status") == "paused", 30)
        assert "door" in (paused["paused_reason"] or "").lower()
    finally:
        bus.call("gpio", "sim_set_input", {"input": "door", "active": False})
    bus.wait_for(bus.topic("smoothie", "state", "paused"), lambda _t, d: (d or {}).get("door") == "closed", 10)
    runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "play"}})  # play on a paused run resumes
    done = runner.wait_status(run["id"], ("succeeded", "failed", "stopped"))
    assert done["status"] == "succeeded", done["errors"]


def test_an_alarm_fails_the_run_with_the_step_and_the_message(runner, stack, bus):
    reply = runner.upload(LONG, "alarm.py")
    run = runner.post("/runs", {"data": {"protocolId": reply.json()["data"]["id"]}})["data"]
    runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "play"}})
    wait_steps(bus, run["id"], 5)
    fault = urllib.request.Request(f"{stack._control.rstrip('/')}/fault", method="POST",
                                   data=json.dumps({"kind": "limit_alarm", "count": 1}).encode(),
                                   headers={"Content-Type": "application/json"})
    urllib.request.urlopen(fault, timeout=5).close()
    failed = runner.wait_status(run["id"], ("succeeded", "failed", "stopped"))
    assert failed["status"] == "failed"
    error = failed["errors"][0]
    assert "alarm" in error["detail"].lower() and error["step"], error
    assert "Moving to" in error["step"]  # the step the run was on: a move_to of the protocol
    lease_free(bus)
