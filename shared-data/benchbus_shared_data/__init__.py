"""The robot's definitions, from one place, for Python code that must not import a service package (the gateway's
`/shared-data` route, the OT-2 backend, tests).

- Labware: Opentrons' own (the `opentrons-shared-data` package, schema 2, and schema 3 where a labware has no
  schema-2 file), plus ours in `shared-data/labware/<loadName>/<version>.json` (namespace `benchbus`, Opentrons'
  labware schema 2: loaded by Opentrons as custom labware, `-L` with `labware_dirs()`). A name in both is ours.
- Pipettes: Opentrons' OT-2 pipette name specifications (GEN1 and GEN2; Flex and 96-channel pipettes left out).
- Decks: Opentrons' deck definitions (schema 5); schemas: Opentrons' JSON Schemas.

The folder of our labware is `$BENCHBUS_SHARED_DATA/labware` when that is set, else the checkout's `shared-data/`
(an editable install), else the copy inside a built wheel.
"""
from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from opentrons_shared_data.load import get_shared_data_root

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
OT2_PIPETTE = re.compile(r"^p\d+_(single|multi)(_gen2)?$")
SCHEMAS = {"labware-2": "labware/schemas/2.json", "labware-3": "labware/schemas/3.json",
           "deck-5": "deck/schemas/5.json"}


class DefinitionError(Exception):
    """A definition could not be loaded (bad name, unreadable file)."""


class DefinitionNotFound(DefinitionError):
    """No definition of that name (or version)."""


def shared_data_root() -> Path:
    if os.environ.get("BENCHBUS_SHARED_DATA"):
        return Path(os.environ["BENCHBUS_SHARED_DATA"])
    here = Path(__file__).resolve().parent
    return here.parent if (here.parent / "labware").is_dir() else here


def _opentrons_data() -> Path:
    return Path(get_shared_data_root())


def _checked(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise DefinitionError(f"{name!r}: definition names are letters, digits, '_', '.' and '-'")
    return name


# -- labware ---------------------------------------------------------------------------------------------------------

def labware_dirs() -> list[Path]:
    """Our labware folders, one per load name: what Opentrons' `-L` / custom_labware_paths want."""
    root = shared_data_root() / "labware"
    return sorted(path for path in root.iterdir() if path.is_dir() and any(path.glob("*.json")))


def _our_labware() -> dict[str, dict[int, Path]]:
    return {folder.name: {int(p.stem): p for p in folder.glob("*.json") if p.stem.isdigit()}
            for folder in labware_dirs()}


@lru_cache(maxsize=1)
def _opentrons_labware() -> dict[str, dict[int, Path]]:
    found: dict[str, dict[int, Path]] = {}
    for schema in (3, 2):  # schema 2 wins where both exist: it is what OT-2 protocols load
        for path in (_opentrons_data() / "labware" / "definitions" / str(schema)).glob("*/*.json"):
            found.setdefault(path.parent.name, {})[int(path.stem)] = path
    return found


def labware_names() -> list[str]:
    return sorted(set(_opentrons_labware()) | set(_our_labware()))


def our_labware_names() -> list[str]:
    return sorted(_our_labware())


def load_labware(name: str, version: int | None = None) -> dict[str, Any]:
    versions = _our_labware().get(_checked(name)) or _opentrons_labware().get(name)
    if not versions:
        raise DefinitionNotFound(f"no labware named {name!r}")
    if version is not None and version not in versions:
        raise DefinitionNotFound(f"labware {name!r} has no version {version} (there are {sorted(versions)})")
    return _read(versions[version if version is not None else max(versions)])


# -- pipettes, decks, schemas ---------------------------------------------------------------------------------------

def pipette_names() -> list[str]:
    from opentrons_shared_data.pipette import name_config

    return sorted(name for name in name_config() if OT2_PIPETTE.match(name))


def load_pipette(name: str) -> dict[str, Any]:
    from opentrons_shared_data.pipette import name_config

    if _checked(name) not in pipette_names():
        raise DefinitionNotFound(f"no OT-2 pipette named {name!r}")
    specs: dict[str, Any] = {str(key): value for key, value in name_config().items()}
    return {"name": name, **json.loads(json.dumps(specs[name]))}


def deck_names() -> list[str]:
    return sorted(p.stem for p in (_opentrons_data() / "deck" / "definitions" / "5").glob("ot2_*.json"))


def load_deck(name: str = "ot2_standard") -> dict[str, Any]:
    if _checked(name) not in deck_names():
        raise DefinitionNotFound(f"no OT-2 deck named {name!r}")
    return _read(_opentrons_data() / "deck" / "definitions" / "5" / f"{name}.json")


def schema_names() -> list[str]:
    return sorted(SCHEMAS)


def load_schema(name: str) -> dict[str, Any]:
    if _checked(name) not in SCHEMAS:
        raise DefinitionNotFound(f"no schema named {name!r} (there are {', '.join(sorted(SCHEMAS))})")
    return _read(_opentrons_data() / SCHEMAS[name])


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"{path}: {exc}") from None
