"""shared-data: Opentrons' definitions come from opentrons-shared-data; benchbus's labware is Opentrons labware
schema 2 and loads in Opentrons as custom labware; the gateway's /shared-data route serves both through the small
`benchbus_shared_data` package (no service package imported)."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import jsonschema
import pytest
from starlette.applications import Starlette

import benchbus_shared_data as definitions
from benchbus_gateway import definitions_routes

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared-data"
OURS = {"benchbus_96_wellplate_360ul_flat", "benchbus_96_tiprack_300ul", "benchbus_96_tiprack_20ul",
        "benchbus_12_reservoir_15ml", "benchbus_24_tuberack_1500ul", "benchbus_1_trash_fixed"}


def get(path: str) -> httpx.Response:
    """GET through the gateway's /shared-data routes in-process (httpx's ASGI transport)."""
    app = Starlette(routes=definitions_routes.routes())

    async def fetch():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            return await http.get(path)
    return asyncio.run(fetch())


def test_our_labware_is_valid_opentrons_labware_schema_2():
    validator = jsonschema.Draft7Validator(definitions.load_schema("labware-2"))
    assert set(definitions.our_labware_names()) == OURS
    for name in OURS:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(definitions.load_labware(name))]
        assert errors == [], name


def test_opentrons_loads_our_labware_as_custom_labware():
    from opentrons.protocols.labware import verify_definition
    from opentrons.util import entrypoint_util

    found = entrypoint_util.labware_from_paths([str(p) for p in definitions.labware_dirs()])
    assert {uri.split("/")[1] for uri in found} == OURS
    for item in found.values():
        verify_definition(json.dumps(item.definition))  # Opentrons' own check


def test_opentrons_definitions_are_all_there_and_one_name_means_one_labware():
    names = definitions.labware_names()
    assert "opentrons_96_tiprack_300ul" in names and set(names) >= OURS and len(names) > 130
    assert definitions.load_labware("opentrons_96_tiprack_300ul")["parameters"]["isTiprack"] is True
    assert "p300_single_gen2" in definitions.pipette_names() and "p1000_96" not in definitions.pipette_names()
    assert definitions.load_pipette("p300_multi_gen2")["channels"] == 8
    assert definitions.load_deck("ot2_standard")["otId"]  # Opentrons' OT-2 deck, schema 5


def test_the_committed_labware_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("labware_generate", SHARED / "labware" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path, text in module.render().items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run shared-data/labware/generate.py"


def test_the_gateway_serves_opentrons_and_our_definitions():
    index = get("/shared-data").json()
    assert {"opentrons_96_tiprack_300ul", "benchbus_96_tiprack_300ul"} <= set(index["labware"])
    assert "p300_single_gen2" in index["pipettes"] and "ot2_standard" in index["deck"]
    ours = get("/shared-data/labware/benchbus_96_wellplate_360ul_flat").json()
    on_disk = json.loads((SHARED / "labware/benchbus_96_wellplate_360ul_flat/1.json").read_text())
    assert ours == on_disk
    theirs = get("/shared-data/labware/opentrons_96_tiprack_300ul?version=1").json()
    assert theirs["namespace"] == "opentrons" and len(theirs["wells"]) == 96
    assert get("/shared-data/pipettes/p20_single_gen2").json()["maxVolume"] == 20
    assert get("/shared-data/deck/ot2_standard").json()["cutoutFixtures"]
    assert get("/shared-data/schemas/labware-2").json()["type"] == "object"


def test_unknown_and_hostile_names_are_refused():
    missing = get("/shared-data/labware/nope")
    assert missing.status_code == 404 and "no labware named 'nope'" in missing.json()["error"]["message"]
    assert get("/shared-data/pipettes/p1000_96").status_code == 404
    for hostile in ("..", "../deck/ot2_standard", "", "a/b"):
        with pytest.raises(definitions.DefinitionError, match="names are letters"):
            definitions.load_labware(hostile)
    assert get("/shared-data/schemas/..%2Fdeck").status_code == 404
    assert get("/shared-data/labware/benchbus_96_tiprack_20ul?version=x").status_code == 400
    assert get("/shared-data/labware/benchbus_96_tiprack_20ul?version=7").status_code == 404


def test_a_built_wheel_carries_our_labware(tmp_path):
    """Installed without the repository (a wheel), the package still finds benchbus's labware."""
    source = tmp_path / "shared-data"  # a copy with the link resolved, so the build leaves the checkout untouched
    shutil.copytree(SHARED, source, symlinks=False, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr[-500:]
    wheel = next((tmp_path / "dist").glob("benchbus_shared_data-*.whl"))
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {key: value for key, value in os.environ.items() if key != "BENCHBUS_SHARED_DATA"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    probe = "import benchbus_shared_data as d; print(d.shared_data_root()); print(','.join(d.our_labware_names()))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where, names = out.stdout.splitlines()
    assert where == str(tmp_path / "site" / "benchbus_shared_data") and set(names.split(",")) == OURS
