"""The running gateway serves the shared-data definitions (definitions_routes wired into app.py)."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared-data"


@pytest.fixture
def served(gateway):
    return gateway()


def test_a_labware_definition_is_served_and_an_unknown_name_is_404(served):
    on_disk = json.loads((SHARED / "labware/benchbus_96_wellplate_360ul_flat/1.json").read_text())
    found = httpx.get(served.url + "shared-data/labware/benchbus_96_wellplate_360ul_flat")
    assert found.status_code == 200
    body = found.json()
    assert body["parameters"]["loadName"] == "benchbus_96_wellplate_360ul_flat"
    assert body["wells"]["H12"] == on_disk["wells"]["H12"] and body["ordering"] == on_disk["ordering"]
    missing = httpx.get(served.url + "shared-data/labware/no_such_plate")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert "no_such_plate" in missing.json()["error"]["message"]
    opentrons = httpx.get(served.url + "shared-data/labware/opentrons_96_tiprack_300ul")
    assert opentrons.status_code == 200 and opentrons.json()["namespace"] == "opentrons"
