"""The generated contract (bus-schemas/json, asyncapi.yaml) must match the models: regenerate with
`.venv/bin/python -m benchbus_schemas.generate`."""
from pathlib import Path

import yaml

from benchbus_schemas import generate, specs

BUS_SCHEMAS = Path(__file__).resolve().parent.parent / "bus-schemas"


def test_generated_files_are_fresh():
    stale = generate.stale_files(BUS_SCHEMAS)
    assert stale == [], f"stale generated files (run python -m benchbus_schemas.generate): {stale}"


def test_asyncapi_lists_every_declared_topic():
    document = yaml.safe_load((BUS_SCHEMAS / "asyncapi.yaml").read_text())
    assert document["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in document["channels"].values()}
    for spec in specs():
        principal = "/{principal}" if spec.kind == "cmd" else ""  # a request's topic ends with its caller
        assert f"benchbus/{{device}}/{spec.service}/{spec.kind}/{spec.name}{principal}" in addresses
    for operation in document["operations"].values():
        if operation["action"] == "send":
            assert "reply" in operation, "every command has a reply"
