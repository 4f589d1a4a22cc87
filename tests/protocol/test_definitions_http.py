"""The gateway's /shared-data routes (benchbus_gateway/definitions_routes.py) serve what the loader loads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import asyncio

import httpx
from starlette.applications import Starlette

from benchbus_gateway import definitions_routes
from benchbus_protocol import definitions

SHARED = Path(__file__).resolve().parents[2] / "shared-data"


class client:
    """GET through the ASGI app in-process (httpx's ASGI transport)."""

    app = Starlette(routes=definitions_routes.routes())

    def get(self, path: str) -> httpx.Response:
        async def fetch():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gw") as http:
                return await http.get(path)
        return asyncio.run(fetch())


def test_the_definitions_are_served_as_the_files_say():
    http = client()
    index = http.get("/shared-data").json()
    assert "benchbus_96_tiprack_300ul" in index["labware"] and "p300_multi_gen2" in index["pipettes"]
    assert index["deck"] == ["ot2_standard"]
    served = http.get("/shared-data/labware/benchbus_96_wellplate_360ul_flat").json()
    on_disk = json.loads((SHARED / "labware/benchbus_96_wellplate_360ul_flat/1.json").read_text())
    assert served["wells"]["H12"] == on_disk["wells"]["H12"] and served["ordering"] == on_disk["ordering"]
    pipette = http.get("/shared-data/pipettes/p300_single_gen2").json()
    assert pipette["plungerPositions"] == {"top": 19.5, "bottom": -14.5, "blowOut": -19.0, "dropTip": -37.0}
    assert http.get("/shared-data/deck/ot2_standard").json()["fixedTrash"]["slot"] == "12"
    assert http.get("/shared-data/schemas/pipette").json()["title"].startswith("benchbus pipette")
    assert http.get("/shared-data/labware/benchbus_96_tiprack_20ul?version=1").status_code == 200


def test_unknown_and_hostile_names_are_refused():
    http = client()
    missing = http.get("/shared-data/labware/nope")
    assert missing.status_code == 404 and "no labware named 'nope'" in missing.json()["error"]["message"]
    assert http.get("/shared-data/pipettes/.hidden").status_code == 404
    for hostile in ("..", "../deck/ot2_standard", "", "a/b"):
        with pytest.raises(definitions.DefinitionError, match="names are letters"):
            definitions.load_labware(hostile)
    assert http.get("/shared-data/schemas/..%2Fdeck%2Fot2_standard").status_code == 404
    assert http.get("/shared-data/labware/benchbus_96_tiprack_20ul?version=x").status_code == 400
    assert http.get("/shared-data/labware/benchbus_96_tiprack_20ul?version=7").status_code == 404
