"""Typed models of the shared-data definitions (labware, pipettes, deck) and the loader that finds them.

Where the files are: the environment variable BENCHBUS_SHARED_DATA (a directory holding labware/, pipettes/,
deck/, schemas/) when it is set; otherwise the copy packaged inside this package (`_shared_data`, a link to the
repository's shared-data/ in a checkout, real files in a built wheel); otherwise the repository's shared-data/
found relative to this file. `shared_data_dir()` says which one is used.

The models are strict (unknown keys refused) and check what JSON Schema cannot: ordering and wells name the
same wells, plunger positions are in order, a pipette's largest volume fits in its plunger travel.
Used by the protocol API and by the gateway's definitions routes.
"""
from __future__ import annotations

import bisect
import functools
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENV_VAR = "BENCHBUS_SHARED_DATA"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a file name, never a path (served over HTTP too)
PACKAGED = Path(__file__).resolve().parent / "_shared_data"
IN_REPOSITORY = Path(__file__).resolve().parents[3] / "shared-data"
Number = float
Vector3 = Annotated[list[float], Field(min_length=3, max_length=3)]


class DefinitionError(ValueError):
    """A definition is missing, unreadable or invalid; the message names the file and the problem."""


class DefinitionNotFound(DefinitionError):
    """No definition of that name (or version)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)


# -- labware (schema v2 layout) ------------------------------------------------------------------------------------

class XYZ(Strict):
    x: float
    y: float
    z: float


class LabwareMetadata(Strict):
    displayName: str = Field(min_length=1)
    displayCategory: Literal["tipRack", "tubeRack", "reservoir", "trash", "wellPlate", "aluminumBlock", "adapter",
                             "other", "lid"]
    displayVolumeUnits: Literal["µL", "mL", "L"]
    tags: list[str] = []


class Brand(Strict):
    brand: str
    brandId: list[str] = []
    links: list[str] = []


class LabwareParameters(Strict):
    format: Literal["96Standard", "384Standard", "trough", "irregular", "trash"]
    isTiprack: bool
    loadName: str = Field(pattern=r"^[a-z0-9._]+$")
    isMagneticModuleCompatible: bool
    quirks: list[str] = []
    magneticModuleEngageHeight: float | None = None
    tipLength: float | None = Field(None, gt=0)
    tipOverlap: float | None = Field(None, ge=0)


class Dimensions(Strict):
    xDimension: float = Field(gt=0)
    yDimension: float = Field(gt=0)
    zDimension: float = Field(gt=0)


class WellDefinition(Strict):
    """x, y, z: the centre of the well bottom from the labware's left-front-bottom corner, mm."""

    depth: float = Field(ge=0)
    totalLiquidVolume: float = Field(ge=0)
    shape: Literal["circular", "rectangular"]
    x: float
    y: float
    z: float = Field(ge=0)
    diameter: float | None = Field(None, gt=0)
    xDimension: float | None = Field(None, gt=0)
    yDimension: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _size_matches_shape(self) -> "WellDefinition":
        if self.shape == "circular" and self.diameter is None:
            raise ValueError("a circular well needs diameter")
        if self.shape == "rectangular" and (self.xDimension is None or self.yDimension is None):
            raise ValueError("a rectangular well needs xDimension and yDimension")
        return self


class GroupMetadata(Strict):
    displayName: str | None = None
    displayCategory: str | None = None
    wellBottomShape: Literal["flat", "u", "v"] | None = None


class Group(Strict):
    wells: list[str]
    metadata: GroupMetadata
    brand: Brand | None = None


class LabwareDefinition(Strict):
    schema_: str | None = Field(None, alias="$schema")
    schemaVersion: Literal[2]
    version: int = Field(ge=1)
    namespace: str = Field(pattern=r"^[a-z0-9._]+$")
    metadata: LabwareMetadata
    brand: Brand
    parameters: LabwareParameters
    ordering: list[list[str]] = Field(min_length=1)
    cornerOffsetFromSlot: XYZ
    dimensions: Dimensions
    wells: dict[Annotated[str, Field(pattern=r"^[A-Z]+[0-9]+$")], WellDefinition] = Field(min_length=1)
    groups: list[Group]
    allowedRoles: list[str] = []
    stackingOffsetWithLabware: dict = {}
    stackingOffsetWithModule: dict = {}

    @model_validator(mode="after")
    def _consistent(self) -> "LabwareDefinition":
        ordered = [name for column in self.ordering for name in column]
        if sorted(ordered) != sorted(self.wells):
            raise ValueError("ordering and wells must name the same wells, each once")
        for group in self.groups:
            unknown = sorted(set(group.wells) - set(self.wells))
            if unknown:
                raise ValueError(f"group names wells that do not exist: {', '.join(unknown[:5])}")
        if self.parameters.isTiprack and self.parameters.tipLength is None:
            raise ValueError("a tip rack needs parameters.tipLength")
        for name, well in self.wells.items():
            if well.z + well.depth > self.dimensions.zDimension + 1e-6:
                raise ValueError(f"well {name} reaches above the labware's zDimension")
        return self

    @property
    def load_name(self) -> str:
        return self.parameters.loadName

    @property
    def uri(self) -> str:
        """namespace/loadName/version: how pipettes and calibrations name a tip rack."""
        return f"{self.namespace}/{self.parameters.loadName}/{self.version}"


# -- pipettes ------------------------------------------------------------------------------------------------------

class PlungerPositions(Strict):
    top: float
    bottom: float
    blowOut: float
    dropTip: float

    @model_validator(mode="after")
    def _in_order(self) -> "PlungerPositions":
        if not self.top > self.bottom > self.blowOut > self.dropTip:
            raise ValueError("plunger positions must run top > bottom > blowOut > dropTip")
        return self


class PickUpTip(Strict):
    current: float = Field(gt=0)
    distance: float = Field(gt=0)
    speed: float = Field(gt=0)
    presses: int = Field(ge=1)


class SmoothieConfig(Strict):
    stepsPerMM: float = Field(gt=0)
    homePosition: float = Field(gt=0)
    travelDistance: float = Field(gt=0)


VolumeTable = Annotated[list[Annotated[list[float], Field(min_length=2, max_length=2)]], Field(min_length=1)]


class UlPerMm(Strict):
    aspirate: VolumeTable
    dispense: VolumeTable


class FlowRates(Strict):
    aspirate: float = Field(gt=0)
    dispense: float = Field(gt=0)
    blowOut: float = Field(gt=0)


class PipetteDefinition(Strict):
    schema_: str | None = Field(None, alias="$schema")
    name: str = Field(pattern=r"^p[0-9]+_(single|multi)_gen[12]$")
    displayName: str
    generation: Literal["gen1", "gen2"]
    models: list[str] = Field(min_length=1)
    channels: Literal[1, 8]
    minVolume: float = Field(gt=0)
    maxVolume: float = Field(gt=0)
    plungerPositions: PlungerPositions
    plungerCurrent: float = Field(gt=0)
    dropTipCurrent: float = Field(gt=0)
    idleCurrent: float | None = Field(None, gt=0)
    pickUpTip: PickUpTip
    dropTipSpeed: float = Field(gt=0)
    maxPlungerSpeed: float = Field(gt=0)
    smoothieConfig: SmoothieConfig
    ulPerMm: UlPerMm
    defaultFlowRates: FlowRates
    tipOverlap: dict[str, float]
    defaultTipracks: list[str] = []
    quirks: list[Literal["pickupTipShake", "dropTipShake", "doubleDropTip", "needsUnstick"]] = []
    modelOffset: Vector3
    nozzlePitch: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> "PipetteDefinition":
        if self.minVolume >= self.maxVolume:
            raise ValueError("minVolume must be below maxVolume")
        if "default" not in self.tipOverlap:
            raise ValueError("tipOverlap needs a 'default' entry")
        for kind in ("aspirate", "dispense"):
            table = getattr(self.ulPerMm, kind)
            volumes = [point[0] for point in table]
            if volumes != sorted(volumes) or any(point[1] <= 0 for point in table):
                raise ValueError(f"ulPerMm.{kind}: volumes must increase and uL/mm be positive")
        travel = self.plungerPositions.top - self.plungerPositions.bottom
        if self.plunger_mm(self.maxVolume, "aspirate") > travel + 1e-9:
            raise ValueError(f"maxVolume {self.maxVolume} uL needs more than the plunger's {travel} mm travel")
        return self

    def ul_per_mm(self, volume: float, kind: Literal["aspirate", "dispense"]) -> float:
        """uL per mm of plunger travel at this volume: linear between the table's points, flat outside them."""
        table = getattr(self.ulPerMm, kind)
        volumes = [point[0] for point in table]
        index = bisect.bisect_left(volumes, volume)
        if index == 0:
            return table[0][1]
        if index >= len(table):
            return table[-1][1]
        (v0, k0), (v1, k1) = table[index - 1], table[index]
        return k0 + (k1 - k0) * (volume - v0) / (v1 - v0)

    def plunger_mm(self, volume: float, kind: Literal["aspirate", "dispense"] = "aspirate") -> float:
        """Plunger travel (mm) from `bottom` that holds `volume` uL."""
        return 0.0 if volume <= 0 else volume / self.ul_per_mm(volume, kind)

    def tip_overlap(self, tiprack_uri: str) -> float:
        return self.tipOverlap.get(tiprack_uri, self.tipOverlap["default"])


# -- deck ----------------------------------------------------------------------------------------------------------

class BoundingBox(Strict):
    xDimension: float = Field(ge=0)
    yDimension: float = Field(ge=0)
    zDimension: float = Field(ge=0)


class Slot(Strict):
    id: str
    position: Vector3
    boundingBox: BoundingBox
    displayName: str | None = None
    compatibleModuleTypes: list[str] = []


class FixedTrash(Strict):
    id: str
    slot: str
    labware: str
    position: Vector3
    boundingBox: BoundingBox


class CalibrationPoint(Strict):
    id: str
    position: Vector3
    displayName: str | None = None


class MountGeometry(Strict):
    mountAxis: Literal["Z", "A"]
    plungerAxis: Literal["B", "C"]
    offset: Vector3


class Mounts(Strict):
    left: MountGeometry
    right: MountGeometry


class DeckDefinition(Strict):
    schema_: str | None = Field(None, alias="$schema")
    otId: str
    schemaVersion: Literal[1]
    cornerOffsetFromOrigin: Vector3
    dimensions: Vector3
    robot: dict
    metadata: dict
    slots: list[Slot] = Field(min_length=1)
    fixedTrash: FixedTrash
    calibrationPoints: list[CalibrationPoint]
    mounts: Mounts
    homeRetract: dict[Literal["X", "Y", "Z", "A", "B", "C"], float]
    travelClearance: float = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> "DeckDefinition":
        ids = [slot.id for slot in self.slots]
        if len(set(ids)) != len(ids):
            raise ValueError("slot ids must be unique")
        if self.fixedTrash.slot not in ids:
            raise ValueError(f"the fixed trash names slot {self.fixedTrash.slot}, which the deck does not have")
        return self

    def slot(self, slot_id: str) -> Slot:
        for slot in self.slots:
            if slot.id == slot_id:
                return slot
        raise KeyError(slot_id)


# -- the loader ----------------------------------------------------------------------------------------------------

def shared_data_dir() -> Path:
    """Where definitions are read from (see the module docstring for the order)."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise DefinitionError(f"{ENV_VAR}={override} is not a directory")
        return path
    for candidate in (PACKAGED, IN_REPOSITORY):
        if (candidate / "labware").is_dir():
            return candidate
    raise DefinitionError(f"no shared-data found: set {ENV_VAR} to the directory holding labware/, pipettes/, deck/")


def _read(path: Path, model: type[BaseModel], what: str):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DefinitionNotFound(f"{what}: no file {path}") from None
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"{what}: {path} is not readable JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValueError as exc:
        raise DefinitionError(f"{what}: {path} is not a valid definition: {exc}") from None


def _checked(name: str, what: str) -> str:
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise DefinitionNotFound(f"no {what} named {name!r}: names are letters, digits, '.', '_' and '-'")
    return name


def _names(directory: Path, pattern: str) -> list[str]:
    return sorted(p.name if p.is_dir() else p.stem for p in directory.glob(pattern)) if directory.is_dir() else []


def labware_names(root: Path | None = None) -> list[str]:
    return _names((root or shared_data_dir()) / "labware", "*/")


def pipette_names(root: Path | None = None) -> list[str]:
    return _names((root or shared_data_dir()) / "pipettes", "*.json")


def deck_names(root: Path | None = None) -> list[str]:
    return _names((root or shared_data_dir()) / "deck", "*.json")


def _latest_version(directory: Path) -> int | None:
    versions = [int(p.stem) for p in directory.glob("*.json") if p.stem.isdigit()]
    return max(versions) if versions else None


@functools.lru_cache(maxsize=256)
def _labware(root: Path, load_name: str, version: int | None) -> LabwareDefinition:
    directory = root / "labware" / load_name
    if not directory.is_dir():
        known = ", ".join(labware_names(root))
        raise DefinitionNotFound(f"no labware named {load_name!r}; known: {known}")
    version = version or _latest_version(directory)
    if version is None:
        raise DefinitionError(f"labware {load_name!r} has no version files in {directory}")
    definition = _read(directory / f"{version}.json", LabwareDefinition, f"labware {load_name}")
    if definition.load_name != load_name:
        raise DefinitionError(f"{directory / f'{version}.json'} says its loadName is {definition.load_name!r}")
    return definition


def load_labware(load_name: str, version: int | None = None) -> LabwareDefinition:
    """The definition of `load_name` (its newest version unless one is given)."""
    return _labware(shared_data_dir(), _checked(load_name, "labware"), version)


@functools.lru_cache(maxsize=64)
def _pipette(root: Path, name: str) -> PipetteDefinition:
    path = root / "pipettes" / f"{name}.json"
    if not path.exists():
        raise DefinitionNotFound(f"no pipette named {name!r}; known: {', '.join(pipette_names(root))}")
    definition = _read(path, PipetteDefinition, f"pipette {name}")
    if definition.name != name:
        raise DefinitionError(f"{path} says its name is {definition.name!r}")
    return definition


def load_pipette(name: str) -> PipetteDefinition:
    return _pipette(shared_data_dir(), _checked(name, "pipette"))


def pipette_for_model(model: str) -> PipetteDefinition | None:
    """The pipette name whose models include `model` (what the board's EEPROM says), or None."""
    for name in pipette_names():
        definition = load_pipette(name)
        if model in definition.models:
            return definition
    return None


@functools.lru_cache(maxsize=16)
def _deck(root: Path, name: str) -> DeckDefinition:
    path = root / "deck" / f"{name}.json"
    if not path.exists():
        raise DefinitionNotFound(f"no deck named {name!r}; known: {', '.join(deck_names(root))}")
    return _read(path, DeckDefinition, f"deck {name}")


def load_deck(name: str = "ot2_standard") -> DeckDefinition:
    return _deck(shared_data_dir(), _checked(name, "deck"))


def load_schema(name: str) -> dict:
    """One of the JSON Schemas in shared-data/schemas (labware-2, pipette, deck)."""
    path = shared_data_dir() / "schemas" / f"{_checked(name, 'schema')}.schema.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DefinitionNotFound(f"no schema {name!r} at {path}") from None


def clear_cache() -> None:
    """Forget what was read (after the files changed, or the override moved)."""
    for cached in (_labware, _pipette, _deck):
        cached.cache_clear()
