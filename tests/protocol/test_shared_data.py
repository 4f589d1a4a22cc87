"""shared-data: every definition validates against its JSON Schema and loads into the typed models; the facts
they carry hold; the loader finds them in the repository, through BENCHBUS_SHARED_DATA, and in a built wheel."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from benchbus_protocol import definitions

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared-data"
KINDS = {"labware-2": "labware/*/*.json", "pipette": "pipettes/*.json", "deck": "deck/*.json"}


def files(kind: str) -> list[Path]:
    return sorted(SHARED.glob(KINDS[kind]))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_definition_validates_against_its_json_schema(kind):
    schema = json.loads((SHARED / "schemas" / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert files(kind)
    for path in files(kind):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(json.loads(path.read_text()))]
        assert errors == [], f"{path}: {errors}"


def test_the_json_schema_catches_a_broken_labware():
    schema = json.loads((SHARED / "schemas" / "labware-2.schema.json").read_text())
    plate = json.loads((SHARED / "labware/benchbus_96_wellplate_360ul_flat/1.json").read_text())
    del plate["wells"]["A1"]["diameter"]
    plate["wells"]["a1"] = plate["wells"].pop("B1")
    messages = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(plate)]
    assert any("'a1' does not match" in m for m in messages)
    assert any("is not valid under any of the given schemas" in m for m in messages)


def test_the_loader_reads_everything_the_issue_asks_for():
    labware = {name: definitions.load_labware(name) for name in definitions.labware_names()}
    assert {"benchbus_96_wellplate_360ul_flat", "benchbus_96_tiprack_300ul", "benchbus_96_tiprack_20ul",
            "benchbus_12_reservoir_15ml", "benchbus_24_tuberack_1500ul"} <= set(labware)
    pipettes = {name: definitions.load_pipette(name) for name in definitions.pipette_names()}
    assert set(pipettes) == {"p20_single_gen2", "p300_single_gen2", "p1000_single_gen2", "p300_multi_gen2"}
    deck = definitions.load_deck()
    assert [s.id for s in deck.slots] == [str(n) for n in range(1, 13)]
    assert definitions.pipette_for_model("p300_multi_v2.1").name == "p300_multi_gen2"
    assert definitions.pipette_for_model("p10_single_v1.5") is None


def test_the_definitions_carry_the_physical_facts():
    plate = definitions.load_labware("benchbus_96_wellplate_360ul_flat")
    for name in ("benchbus_96_wellplate_360ul_flat", "benchbus_96_tiprack_300ul", "benchbus_96_tiprack_20ul",
                 "benchbus_12_reservoir_15ml", "benchbus_24_tuberack_1500ul"):
        d = definitions.load_labware(name).dimensions
        assert (d.xDimension, d.yDimension) == (127.76, 85.48), name  # the SBS footprint
    wells = plate.wells
    assert len(wells) == 96 and plate.ordering[0] == [f"{r}1" for r in "ABCDEFGH"]
    assert (wells["A1"].x, wells["A1"].y) == (14.38, 74.24)  # 14.38 mm from the left, 11.24 mm from the back
    assert round(wells["A2"].x - wells["A1"].x, 6) == 9 and round(wells["A1"].y - wells["B1"].y, 6) == 9
    assert wells["H12"].z + wells["H12"].depth == pytest.approx(plate.dimensions.zDimension)
    reservoir = definitions.load_labware("benchbus_12_reservoir_15ml")
    assert len(reservoir.wells) == 12 and reservoir.wells["A1"].shape == "rectangular"
    assert len(definitions.load_labware("benchbus_24_tuberack_1500ul").wells) == 24
    tips = definitions.load_labware("benchbus_96_tiprack_20ul")
    assert tips.parameters.isTiprack and tips.parameters.tipLength == tips.wells["A1"].depth
    deck = definitions.load_deck()
    assert deck.slot("5").position == [132.5, 90.5, 0.0] and deck.slot("12").position == [265.0, 271.5, 0.0]
    assert all((s.boundingBox.xDimension, s.boundingBox.yDimension) == (128, 86) for s in deck.slots)
    assert deck.fixedTrash.slot == "12"
    p300 = definitions.load_pipette("p300_single_gen2")
    assert (p300.plungerPositions.bottom, p300.plungerPositions.dropTip) == (-14.5, -37)
    assert p300.smoothieConfig.stepsPerMM == 3200 and p300.smoothieConfig.homePosition == 172.15
    assert definitions.load_pipette("p300_multi_gen2").smoothieConfig.homePosition == 155.75
    for name in definitions.pipette_names():  # the largest volume fits the plunger's travel
        p = definitions.load_pipette(name)
        assert p.plunger_mm(p.maxVolume) <= p.plungerPositions.top - p.plungerPositions.bottom


def test_the_committed_labware_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("labware_generate", SHARED / "labware" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path, text in module.render().items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run shared-data/labware/generate.py"


def test_the_override_directory_is_used_and_bad_files_are_named(tmp_path, monkeypatch):
    copy = tmp_path / "shared"
    for part in ("labware", "pipettes", "deck", "schemas"):
        shutil.copytree(SHARED / part, copy / part)
    path = copy / "pipettes" / "p20_single_gen2.json"
    data = json.loads(path.read_text())
    data["maxVolume"] = 200  # cannot fit the plunger's travel
    path.write_text(json.dumps(data))
    (copy / "labware" / "benchbus_96_tiprack_20ul" / "1.json").write_text("{not json")
    monkeypatch.setenv(definitions.ENV_VAR, str(copy))
    definitions.clear_cache()
    try:
        assert definitions.shared_data_dir() == copy
        with pytest.raises(definitions.DefinitionError, match=r"(?s)p20_single_gen2.json is not a valid .*maxVolume 200.0 uL needs more than the plunger"):
            definitions.load_pipette("p20_single_gen2")
        with pytest.raises(definitions.DefinitionError, match="tiprack_20ul/1.json is not readable JSON"):
            definitions.load_labware("benchbus_96_tiprack_20ul")
        assert definitions.load_labware("benchbus_96_tiprack_300ul").uri == "benchbus/benchbus_96_tiprack_300ul/1"
        monkeypatch.setenv(definitions.ENV_VAR, str(tmp_path / "nowhere"))
        with pytest.raises(definitions.DefinitionError, match="is not a directory"):
            definitions.shared_data_dir()
    finally:
        monkeypatch.delenv(definitions.ENV_VAR)
        definitions.clear_cache()


def test_a_built_wheel_carries_the_definitions(tmp_path):
    """Installed without the repository, the package still finds its labware, pipettes, deck and schemas."""
    source = tmp_path / "protocol-api"  # a copy (links resolved), so the build leaves the checkout untouched
    shutil.copytree(ROOT / "services" / "protocol-api", source,
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", "evolver", "calibration"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        pytest.skip(f"pip cannot build a wheel here (no setuptools for the build): {built.stderr[-300:]}")
    wheel = next((tmp_path / "dist").glob("benchbus_protocol-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "benchbus_protocol/_shared_data/deck/ot2_standard.json" in names
    assert not any("evolver" in n or "calibration" in n for n in names)
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k != definitions.ENV_VAR}
    env["PYTHONPATH"] = str(tmp_path / "site")
    probe = ("from benchbus_protocol import definitions as d; print(d.shared_data_dir()); "
             "print(len(d.labware_names()), d.load_deck().otId, d.load_schema('pipette')['title'])")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where, counts = out.stdout.splitlines()
    assert where == str(tmp_path / "site" / "benchbus_protocol" / "_shared_data")
    assert counts.startswith("6 benchbus_ot2_standard benchbus pipette definition")
