import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "buildroot-overlay"


def bus_services() -> dict[str, dict]:
    """Service folders that are bus services (they plug into `benchbus up`), with their console scripts."""
    found = {}
    for project in sorted(REPO.glob("services/*/pyproject.toml")):
        data = tomllib.loads(project.read_text())["project"]
        up_entries = data.get("entry-points", {}).get("benchbus.up", {})
        if up_entries:
            found[project.parent.name] = {"segments": sorted(up_entries), "scripts": sorted(data.get("scripts", {}))}
    return found


@pytest.fixture(scope="session")
def services() -> dict[str, dict]:
    return bus_services()
