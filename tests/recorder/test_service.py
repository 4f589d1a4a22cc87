"""The recorder on the bus (both databases): what it records, the commands, the HTTP endpoint and the metrics."""
from __future__ import annotations

import time

import httpx
import pytest

from benchbus import BusError
from benchbus_recorder.service import RecorderService
from benchbus_recorder.settings import RecorderSettings

from .conftest import VIALS, audit_record, broadcast, broadcast_topic
from benchbus.testing import wait_until


@pytest.fixture
def recorder(make_settings, serve, database_url, tmp_path):
    settings = make_settings(RecorderSettings, data_dir=tmp_path / "recorder", database_url=database_url,
                             http_port=0, commit_interval_s=0.05, ingest_client_id=f"rec-{tmp_path.name[-20:]}")
    service = serve(RecorderService, settings)
    assert service.ingest.subscribed.wait(10)
    return service


def status(bus) -> dict:
    return bus.call("recorder", "status", {})


def test_broadcasts_audit_events_and_states_are_recorded(recorder, bus, device, publisher):
    pub = publisher()
    start = time.time() - 100
    for cycle in range(5):
        pub.publish(broadcast_topic(device), broadcast(start + cycle * 20, cycle))
    pub.publish(f"benchbus/{device}/scheduler/$audit",
                audit_record("scheduler", "command", "alice", request={"param": "pump", "value": ["5"]}))
    pub.publish(f"benchbus/{device}/samd/$audit", audit_record("samd", "transact", "scheduler"))
    pub.publish(f"benchbus/{device}/samd/$audit", audit_record("samd", "transact", "bob"))
    pub.publish(f"benchbus/{device}/scheduler/event/overrun", {"cycle": 3, "overrun_s": 1.0})
    pub.publish(f"benchbus/{device}/gpio/$state", {"state": "degraded", "reason": "chip gone"}, retain=True)
    pub.publish(f"benchbus/{device}/scheduler/event/broadcast", b"not json")  # refused, never fatal

    def recorded():
        tables = status(bus)["tables"]
        return (tables["broadcasts"]["rows"] == 5 and tables["audit"]["rows"] >= 2
                and tables["events"]["rows"] >= 1 and tables["service_states"]["rows"] >= 2)
    wait_until(recorded, what="everything recorded", timeout=15)
    # the runtime audits this test's own calls to the recorder too (principal `dev`): leave those aside
    trail = [r for r in bus.call("recorder", "audit", {})["records"] if r["service"] != "recorder"]
    assert sorted(r["principal"] for r in trail) == ["alice", "bob"], "the scheduler's own transacts are skipped"
    assert bus.call("recorder", "audit", {"principal": "alice"})["records"][0]["request"]["param"] == "pump"
    names = {(e["service"], e["name"]) for e in bus.call("recorder", "events", {})["records"]}
    assert {("scheduler", "overrun"), ("gpio", "$state"), ("recorder", "$state")} <= names
    result = bus.call("recorder", "query", {"params": ["od"], "vials": [2], "start": start - 1, "points": 100})
    assert len(result["series"]) == 1 and len(result["series"][0]["t"]) == 5


def test_bad_requests_name_the_field(recorder, bus):
    with pytest.raises(BusError) as caught:
        bus.call("recorder", "query", {"points": 0})
    assert caught.value.code == "invalid_request" and "points" in caught.value.message
    with pytest.raises(BusError) as caught:
        bus.call("recorder", "query", {"start": 10, "end": 5})
    assert "end" in caught.value.message
    with pytest.raises(BusError) as caught:
        bus.call("recorder", "export", {"format": "xlsx"})
    assert "format" in caught.value.message


def test_http_history_query_export_and_metrics(recorder, bus, device, publisher):
    pub = publisher()
    start = time.time() - 200
    for cycle in range(4):
        pub.publish(broadcast_topic(device), broadcast(start + cycle * 20, cycle))
    pub.publish(f"benchbus/{device}/samd/state/bus", {"port": "x", "connected": True, "baudrate": 9600, "params": {
        "od_90": {"requests": 10, "ok": 9, "failed": 1, "attempts": 13, "errors": {"timeout": 3}}}}, retain=True)
    pub.publish(f"benchbus/{device}/smoothie/state/alarm", {"active": True, "message": "limit"}, retain=True)
    wait_until(lambda: status(bus)["tables"]["broadcasts"]["rows"] == 4, what="4 broadcasts", timeout=15)
    url = bus.call("recorder", "status", {})["http_url"]
    assert url == recorder.http.url
    with httpx.Client(base_url=url, timeout=10) as http:
        history = http.get("/api/history", params={"start": start - 1}).json()
        assert [b["broadcast"]["cycle"] for b in history["broadcasts"]] == [0, 1, 2, 3]
        query = http.get("/api/recorder/query", params={"params": "temp", "vials": "0,1", "start": start - 1}).json()
        assert {s["vial"] for s in query["result"]["series"]} == {0, 1}
        bad = http.get("/api/recorder/query", params={"vials": "x"})
        assert bad.status_code == 400 and "vials" in bad.json()["error"]["message"]
        tidy = http.get("/api/recorder/export", params={"format": "csv_tidy", "start": start - 1}).text.splitlines()
        assert tidy[0] == "time,device,param,vial,raw,calibrated,fit"
        assert len(tidy) == 1 + 4 * VIALS * 4
        def scraped() -> str | None:
            text = http.get("/metrics").text
            return text if "benchbus_serial_retries_total{" in text and 'flag="alarm"' in text else None
        metrics = wait_until(scraped, what="metrics from retained states", timeout=15)
    assert f'benchbus_vial_od{{device="{device}",kind="calibrated",vial="3"}} 0.08' in metrics
    assert f'benchbus_vial_temperature{{device="{device}",kind="calibrated",vial="0"}} 30.0' in metrics
    assert f'benchbus_serial_retries_total{{board="od_90",device="{device}"}} 3.0' in metrics
    assert f'benchbus_robot_state{{device="{device}",flag="alarm"}} 1.0' in metrics
    assert f'benchbus_service_state{{device="{device}",service="recorder",state="ready"}} 1.0' in metrics
    assert f'benchbus_cycle_duration_seconds{{device="{device}"}} 1.5' in metrics


def test_export_command_writes_a_file(recorder, bus, device, publisher, tmp_path):
    pub = publisher()
    start = time.time() - 100
    for cycle in range(3):
        pub.publish(broadcast_topic(device), broadcast(start + cycle * 20, cycle))
    wait_until(lambda: status(bus)["tables"]["broadcasts"]["rows"] == 3, what="3 broadcasts", timeout=15)
    result = bus.call("recorder", "export", {"format": "csv_wide", "start": start - 1, "params": ["od_90", "od"]})
    with open(result["path"]) as exported:
        lines = exported.read().splitlines()
    assert lines[0].split(",")[:2] == ["time", "od_90_0"] and "od_cal_15" in lines[0]
    assert len(lines) == 4 and result["rows"] == 3 and result["bytes"] > 0
    assert result["http_path"].startswith("/api/recorder/export?")


def test_retention_runs_in_the_service_and_keeps_the_downsampled_past(make_settings, serve, database_url, tmp_path,
                                                                      bus, device, publisher):
    settings = make_settings(RecorderSettings, data_dir=tmp_path / "recorder", database_url=database_url,
                             http_port=0, commit_interval_s=0.05, maintenance_interval_s=0.2, raw_retention_days=5,
                             ingest_client_id=f"rec-{tmp_path.name[-20:]}")
    service = serve(RecorderService, settings)
    assert service.ingest.subscribed.wait(10)
    pub = publisher()
    old = time.time() - 10 * 86400
    old -= old % 300
    for cycle in range(30):  # ten minutes of a run ten days ago
        pub.publish(broadcast_topic(device), broadcast(old + cycle * 20, cycle))
    pub.publish(broadcast_topic(device), broadcast(time.time() - 5, 99))  # and one of now
    wait_until(lambda: status(bus)["tables"]["rollups"]["rows"] > 0
               and status(bus)["tables"]["broadcasts"]["rows"] == 1, what="old readings rolled up, then deleted",
               timeout=15)
    past = bus.call("recorder", "query", {"start": old, "end": old + 3000, "points": 10, "params": ["temp"],
                                          "vials": [4]})
    assert past["source"] == "rollup_300"
    assert past["series"][0]["calibrated"] == [30.4, 30.4]


def test_an_unreachable_database_stops_the_start_with_one_clear_line(tmp_path):
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"BENCHBUS_RECORDER_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{port}/none",
           "BENCHBUS_DEVICE": "rig1", "BENCHBUS_RECORDER_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "benchbus_recorder"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1
    assert "cannot open the database" in run.stderr and "Traceback" not in run.stderr


def test_a_lab_recorder_keeps_every_device_apart(make_settings, serve, database_url, tmp_path, bus, device,
                                                 publisher):
    """all_devices: one recorder fed by many instruments (benchbus/<device>/...), everything keyed by device."""
    settings = make_settings(RecorderSettings, data_dir=tmp_path / "recorder", database_url=database_url,
                             http_port=0, commit_interval_s=0.05, all_devices=True,
                             ingest_client_id=f"rec-{tmp_path.name[-20:]}")
    service = serve(RecorderService, settings)
    assert service.ingest.subscribed.wait(10)
    pub = publisher()
    other = f"{device}-rig2"
    start = time.time() - 100
    for cycle in range(3):
        pub.publish(broadcast_topic(device), broadcast(start + cycle * 20, cycle))
        pub.publish(broadcast_topic(other), broadcast(start + cycle * 20, cycle + 50))
    pub.publish(f"benchbus/{other}/smoothie/$audit", audit_record("smoothie", "home", "carol"))
    wait_until(lambda: {device, other} <= set(status(bus)["devices"])
               and status(bus)["tables"]["broadcasts"]["rows"] == 6, what="both devices recorded", timeout=15)
    mine = bus.call("recorder", "query", {"params": ["od_90"], "vials": [0], "start": start - 1})
    theirs = bus.call("recorder", "query", {"device": other, "params": ["od_90"], "vials": [0], "start": start - 1})
    assert mine["device"] == device and theirs["device"] == other
    assert theirs["series"][0]["raw"][0] - mine["series"][0]["raw"][0] == 50
    assert bus.call("recorder", "audit", {"device": other})["records"][0]["principal"] == "carol"
    # this device's trail holds only the test's own calls to the recorder, none of the other device's
    assert {r["principal"] for r in bus.call("recorder", "audit", {})["records"]} <= {"dev"}
    with httpx.Client(base_url=service.http.url, timeout=10) as http:
        history = http.get("/api/history", params={"device": other, "start": start - 1}).json()
    assert [b["broadcast"]["cycle"] for b in history["broadcasts"]] == [50, 51, 52]
