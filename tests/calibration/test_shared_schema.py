"""shared-data/calibration/*.schema.json are the JSON Schemas of the two files, generated from bus-schemas.

Regenerate after changing the models: .venv/bin/python tests/calibration/test_shared_schema.py
"""
import json
import sys
from pathlib import Path

from pydantic import TypeAdapter

from benchbus_schemas.calibration import Calibration, RobotFile

DIRECTORY = Path(__file__).resolve().parents[2] / "shared-data" / "calibration"


def expected() -> dict[str, str]:
    schemas = {"calibrations.schema.json": TypeAdapter(list[Calibration]).json_schema(),
               "robot-calibrations.schema.json": RobotFile.model_json_schema()}
    for schema in schemas.values():
        schema["$comment"] = ("generated from bus-schemas/benchbus_schemas/calibration.py "
                              "(tests/calibration/test_shared_schema.py checks it)")
    return {name: json.dumps(schema, indent=2, sort_keys=True) + "\n" for name, schema in schemas.items()}


def test_shared_calibration_schemas_are_fresh():
    for name, text in expected().items():
        assert (DIRECTORY / name).read_text() == text, f"{name} is stale: run python {__file__}"


if __name__ == "__main__":
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    for file_name, content in expected().items():
        (DIRECTORY / file_name).write_text(content)
    sys.exit(0)
