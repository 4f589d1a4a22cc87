"""The recorder behind the gateway's port, on the emulated eVOLVER stack: history that survives a gateway restart,
streamed exports and the metrics, all relayed (the gateway never opens the database)."""
from __future__ import annotations

import csv
import io
import zipfile

import httpx

from benchbus_recorder.service import RecorderService
from benchbus_recorder.settings import RecorderSettings
from benchbus.testing import wait_until


def test_history_and_exports_come_from_the_recorder(stack, serve, make_settings, gateway, tmp_path, bus):
    first_gateway, _emulator = stack
    serve(RecorderService, make_settings(RecorderSettings, data_dir=tmp_path / "recorder", http_port=0,
                                        commit_interval_s=0.05, ingest_client_id=f"rec-{tmp_path.name[-16:]}"))

    def recorded(at: str, n: int):
        history = httpx.get(at + "api/history", timeout=10).json()
        return history if history.get("source") == "recorder" and len(history["broadcasts"]) >= n else None

    history = wait_until(lambda: recorded(first_gateway.url, 3), what="3 broadcasts through the gateway", timeout=30)
    last = history["broadcasts"][-1]["broadcast"]
    assert set(last["data"]) >= {"od_90", "od_135", "temp"} and len(last["data"]["od_90"]) == 16
    assert last["calibrated"].get("temp") and last["calibration"].get("temp"), "the shipped fits calibrate temp"

    # a second gateway (a restart) has an empty ring, and still the same history
    second = gateway()
    again = wait_until(lambda: recorded(second.url, 3), what="history through a new gateway", timeout=30)
    assert again["broadcasts"][0] == history["broadcasts"][0]

    with httpx.Client(base_url=second.url, timeout=30) as http:
        with http.stream("GET", "api/recorder/export", params={"format": "csv_tidy", "params": "temp"}) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
            text = b"".join(response.iter_raw()).decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows and {r["param"] for r in rows} == {"temp"} and rows[0]["fit"]
        zipped = http.get("api/recorder/export", params={"format": "dpu_zip"})
        names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
        assert "temp/vial0_temp.txt" in names and "od_90_raw/vial15_od_90_raw.txt" in names
        query = http.get("api/recorder/query", params={"params": "temp", "vials": "3", "points": 10}).json()
        assert query["result"]["series"][0]["vial"] == 3
        bad = http.get("api/recorder/query", params={"points": "many"})
        assert bad.status_code == 400 and "points" in bad.json()["error"]["message"]
        assert http.get("api/recorder/..%2Fetc").status_code == 404
        metrics = http.get("api/recorder/metrics").text
        assert "benchbus_vial_temperature{" in metrics and "benchbus_cycle_duration_seconds{" in metrics
        assert 'benchbus_service_state{device="' in metrics


def test_without_a_recorder_history_is_the_gateway_ring(gateway):
    alone = gateway()
    with httpx.Client(base_url=alone.url, timeout=10) as http:
        history = http.get("api/history").json()
        assert "source" not in history and history["broadcasts"] == []
        missing = http.get("api/recorder/status")
        assert missing.status_code == 503 and "recorder" in missing.json()["error"]["message"]
