"""The running gateway serves the shared-data definitions (definitions_routes wired into app.py)."""
from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
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


def test_the_index_pipettes_deck_and_schemas_are_served(served):
    index = httpx.get(served.url + "shared-data")
    assert index.status_code == 200
    names = index.json()
    assert "benchbus_96_wellplate_360ul_flat" in names["labware"] and "opentrons_96_tiprack_300ul" in names["labware"]
    assert "p300_single_gen2" in names["pipettes"] and "ot2_standard" in names["deck"]
    assert "labware-2" in names["schemas"]
    pipette = httpx.get(served.url + "shared-data/pipettes/p300_single_gen2")
    assert pipette.status_code == 200 and pipette.json()["channels"] == 1
    deck = httpx.get(served.url + "shared-data/deck/ot2_standard")
    assert deck.status_code == 200 and deck.json()["otId"] == "ot2_standard" and deck.json()["schemaVersion"] == 5
    schema = httpx.get(served.url + "shared-data/schemas/labware-2")
    assert schema.status_code == 200 and "properties" in schema.json()
    bad = httpx.get(served.url + "shared-data/labware/benchbus_96_wellplate_360ul_flat?version=x")
    assert bad.status_code == 400 and "'version'" in bad.json()["error"]["message"]


def _imported_top_levels(package_dir: Path) -> set[str]:
    names: set[str] = set()
    for source in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_package_the_gateway_imports_is_a_declared_dependency():
    """The /shared-data route imports benchbus_shared_data: an install from the gateway's pyproject alone must bring
    it (and everything else it imports), directly or through a declared benchbus package."""
    service = Path(__file__).resolve().parents[2] / "services" / "websocket-gateway"
    project = tomllib.loads((service / "pyproject.toml").read_text())["project"]
    declared = {_dist(req) for req in project["dependencies"]}
    through = {_dist(req) for dist in declared if dist.startswith("benchbus") for req in (requires(dist) or [])}
    owners = packages_distributions()
    undeclared = {}
    imported = _imported_top_levels(service / "benchbus_gateway")
    for module in imported - set(sys.stdlib_module_names) - {"benchbus_gateway"}:
        dists = {_dist(d) for d in owners.get(module, [module])}
        if not dists & (declared | through):
            undeclared[module] = sorted(dists)
    assert "benchbus_shared_data" in imported
    assert undeclared == {}, f"imported by the gateway but not declared in its pyproject.toml: {undeclared}"


def _dist(requirement: str) -> str:
    """`uvicorn[standard]>=0.29` -> `uvicorn` (normalised as pip does)."""
    name = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()
