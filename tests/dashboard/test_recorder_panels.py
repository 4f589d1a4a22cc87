"""The dashboard's recorder panels in a real browser: history of a chosen range from the recorder, the export button
and the audit trail (who ran which command), on the whole stack on emulated hardware plus the recorder."""
from __future__ import annotations

import json
from datetime import datetime, UTC

import paho.mqtt.client as mqtt
import pytest

from benchbus.testing import wait_until
from benchbus_recorder.service import RecorderService
from benchbus_recorder.settings import RecorderSettings


def audit(service: str, command: str, principal: str, ok: bool, on_behalf_of: str | None = None) -> bytes:
    """An audit record as the runtime publishes it on benchbus/<device>/<service>/$audit (issue 15)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"records": [{"time": now, "service": service, "command": command, "principal": principal,
                                    "on_behalf_of": on_behalf_of, "ok": ok,
                                    "error": None if ok else {"code": "conflict", "message": "door open"},
                                    "request": {"axes": ["X"]}, "duration_ms": 3.5}]}).encode()


@pytest.mark.slow
def test_history_range_export_and_audit_trail(stack, browser, bus, serve, make_settings, tmp_path, broker, device):
    recorder = serve(RecorderService, make_settings(RecorderSettings, data_dir=tmp_path / "recorder", http_port=0,
                                                   commit_interval_s=0.05,
                                                   ingest_client_id=f"rec-{tmp_path.name[-16:]}"))
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    try:
        for record in (audit("smoothie", "home", "gateway", False, on_behalf_of="alice"),
                       audit("scheduler", "command", "bob", True)):
            topic = f"benchbus/{device}/{json.loads(record)['records'][0]['service']}/$audit"
            publisher.publish(topic, record, qos=1).wait_for_publish(10)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    wait_until(lambda: bus.call("recorder", "status", {})["tables"]["broadcasts"]["rows"] >= 3, 20,
               "3 broadcasts recorded", every=0.1)

    assert browser.open(stack.url, 1024, 900)["status"] == 200
    browser.wait("document.querySelector('#link').dataset.state === 'live' && 'live'")
    source = browser.wait("document.querySelector('#history-source').textContent.includes('from the recorder') && "
                          "document.querySelector('#history-source').textContent")
    assert int(source.split()[0]) >= 3

    # the audit trail: who did what, with the result; filtered to the failures
    trail = browser.wait("document.querySelectorAll('#audit-rows tr').length >= 2 && "
                         "document.querySelector('#audit-rows').textContent")
    assert "gateway for alice" in trail and "smoothie/home" in trail and "conflict" in trail and "bob" in trail
    browser.click("#audit-failed")
    browser.click("#audit-filter button")
    browser.wait("!document.querySelector('#audit-rows').textContent.includes('bob')")
    assert "alice" in browser.text("#audit-rows")

    # another range: the last 7 days, drawn from the recorder
    browser.eval("document.querySelector('#range').value = '604800'")
    browser.click("#history-load")
    browser.wait("document.querySelector('#history-result').textContent === ''")
    assert browser.wait("Number(document.querySelector('.vial').dataset.points || 0) >= 3 && 'drawn'")

    # the export button streams the range in the chosen format
    browser.eval("document.querySelector('#export-format').value = 'csv_wide'; "
                 "document.querySelector('#export-format').dispatchEvent(new Event('change'))")
    href = browser.eval("document.querySelector('#export').href")
    assert "format=csv_wide" in href and "start=" in href
    header = browser.wait("fetch(document.querySelector('#export').href).then(r => r.text())"
                          ".then(t => t.split('\\n')[0])")
    assert header.startswith("time,od_135_0,") and ",od_90_15," in header and "temp_cal_15" in header
    assert recorder.ingest.committed >= 5
    assert browser.problems() == []
