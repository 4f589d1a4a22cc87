"""What the gateway serves for the dashboard: the page and uPlot by default, and the bounded broadcast history."""
from __future__ import annotations

import json

import httpx
import pytest

from benchbus_gateway.history import BroadcastHistory


def test_the_gateway_serves_the_dashboard_and_uplot_by_default(make_settings, serve, tmp_path):
    from benchbus_gateway.service import GatewayService
    from benchbus_gateway.settings import GatewaySettings
    from benchbus_gateway.dashboard import BUNDLED, UPLOT_DIST
    if not (BUNDLED / UPLOT_DIST).is_dir():
        pytest.skip(f"uPlot is not installed: npm ci in {BUNDLED} (./dev does it)")
    base = serve(GatewayService, make_settings(GatewaySettings, host="127.0.0.1", port=0, token="t" * 16,
                                               data_dir=tmp_path / "gateway")).url
    page = httpx.get(base)
    assert page.status_code == 200 and "<title>benchbus dashboard</title>" in page.text
    for asset in ("main.js", "rig.js", "bus.js", "panels.js", "style.css", "vendor/uplot/uPlot.iife.min.js",
                  "vendor/uplot/uPlot.min.css"):
        assert httpx.get(base + asset).status_code == 200, asset
    assert httpx.get(base + "api/history").json()["broadcasts"] == []  # the API still wins over the static mount


def test_the_dashboard_can_be_switched_off(make_settings, serve, tmp_path):
    from benchbus_gateway.service import GatewayService
    from benchbus_gateway.settings import GatewaySettings
    base = serve(GatewayService, make_settings(GatewaySettings, host="127.0.0.1", port=0, dashboard=False,
                                               data_dir=tmp_path / "gateway")).url
    assert httpx.get(base).status_code == 404
    assert httpx.get(base + "health").status_code == 200


def broadcast(cycle: int) -> str:
    return json.dumps({"cycle": cycle, "timestamp": 1000.0 + cycle, "data": {"od_90": ["1"] * 16}})


def test_history_is_bounded_by_count_oldest_first():
    history = BroadcastHistory(max_count=3, max_age_s=None)
    for cycle in range(5):
        history.add_raw(broadcast(cycle), received=100.0 + cycle)
    body = json.loads(history.render())
    assert [b["broadcast"]["cycle"] for b in body["broadcasts"]] == [2, 3, 4]
    assert body["size"] == 3
    assert [b["broadcast"]["cycle"] for b in json.loads(history.render(limit=1))["broadcasts"]] == [4]
    assert json.loads(history.render(limit=0))["broadcasts"] == []


def test_history_forgets_what_is_older_than_its_age_bound():
    history = BroadcastHistory(max_count=100, max_age_s=60.0)
    history.add_raw(broadcast(1), received=1000.0)
    history.add_raw(broadcast(2), received=1030.0)
    history.add_raw(broadcast(3), received=1070.0)  # 1000 is now more than 60 s old
    assert [entry["broadcast"]["cycle"] for entry in history] == [2, 3]
    assert json.loads(history.render())["broadcasts"] == []  # rendered now: all of them are long past


def test_history_keeps_the_dict_form_callers_used_before():
    history = BroadcastHistory(max_count=10, max_age_s=None)
    history.append({"received": 5.0, "broadcast": {"cycle": 7}})
    assert list(history) == [{"received": 5.0, "broadcast": {"cycle": 7}}] and len(history) == 1
