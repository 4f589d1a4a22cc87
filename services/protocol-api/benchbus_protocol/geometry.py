"""Points, locations, wells and labware on the deck, in deck coordinates (mm; origin at slot 1's front-left corner).

A well's x, y, z in its definition is the centre of its bottom relative to the labware's corner; on the deck it is
slot origin + the labware's cornerOffsetFromSlot + that. `well.top()`, `bottom()`, `center()` give Locations a
pipette can move to.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from .definitions import LabwareDefinition, WellDefinition
from .errors import LabwareError


class Point(NamedTuple):
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0

    def __add__(self, other) -> "Point":  # type: ignore[override]
        return Point(self.x + other[0], self.y + other[1], self.z + other[2])

    def __sub__(self, other) -> "Point":
        return Point(self.x - other[0], self.y - other[1], self.z - other[2])


@dataclass(frozen=True)
class Location:
    """A point on the deck, and the labware/well it belongs to (used for travel heights and messages)."""

    point: Point
    labware: "Labware | None" = None
    well: "Well | None" = None

    def move(self, offset: Point | tuple) -> "Location":
        return Location(self.point + Point(*offset), self.labware, self.well)

    def __str__(self) -> str:
        p = ", ".join(f"{v:.2f}" for v in self.point)
        return f"{self.well} ({p})" if self.well is not None else f"({p})"


class Well:
    def __init__(self, labware: "Labware", name: str, definition: WellDefinition):
        self.labware = labware
        self.name = name
        self.definition = definition
        self.bottom_point = labware.origin + Point(definition.x, definition.y, definition.z)

    @property
    def depth(self) -> float:
        return self.definition.depth

    @property
    def max_volume(self) -> float:
        return self.definition.totalLiquidVolume

    def top(self, z: float = 0.0) -> Location:
        return Location(self.bottom_point + Point(0, 0, self.depth + z), self.labware, self)

    def bottom(self, z: float = 0.0) -> Location:
        return Location(self.bottom_point + Point(0, 0, z), self.labware, self)

    def center(self) -> Location:
        return Location(self.bottom_point + Point(0, 0, self.depth / 2), self.labware, self)

    def __repr__(self) -> str:
        return f"{self.name} of {self.labware}"

    __str__ = __repr__


WELL_NAME = re.compile(r"^([A-Z]+)([0-9]+)$")


class Labware:
    def __init__(self, definition: LabwareDefinition, slot: str, slot_origin: Point, label: str | None = None):
        self.definition = definition
        self.slot = slot
        self.label = label or definition.metadata.displayName
        offset = definition.cornerOffsetFromSlot
        self.origin = slot_origin + Point(offset.x, offset.y, offset.z)
        self._wells = {name: Well(self, name, definition.wells[name])
                       for column in definition.ordering for name in column}
        self._used_tips: set[str] = set()

    # -- identity ----------------------------------------------------------------------------------------------------

    @property
    def load_name(self) -> str:
        return self.definition.load_name

    @property
    def uri(self) -> str:
        return self.definition.uri

    @property
    def is_tiprack(self) -> bool:
        return self.definition.parameters.isTiprack

    @property
    def highest_z(self) -> float:
        return self.origin.z + self.definition.dimensions.zDimension

    @property
    def tip_length(self) -> float:
        if not self.is_tiprack:
            raise LabwareError(f"{self} is not a tip rack")
        return float(self.definition.parameters.tipLength)

    def __repr__(self) -> str:
        return f"{self.label} in slot {self.slot}"

    __str__ = __repr__

    # -- wells -------------------------------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Well:
        return self.well(name)

    def well(self, name: str | int) -> Well:
        if isinstance(name, int):
            names = list(self._wells)
            if not 0 <= name < len(names):
                raise LabwareError(f"{self} has wells 0..{len(names) - 1}; there is no well {name}")
            return self._wells[names[name]]
        if name not in self._wells:
            first, last = next(iter(self._wells)), list(self._wells)[-1]
            raise LabwareError(f"{self} has no well {name!r}; its wells run {first}..{last} "
                               f"({len(self._wells)} wells)")
        return self._wells[name]

    def wells(self) -> list[Well]:
        """In the definition's order: down each column, column after column."""
        return list(self._wells.values())

    def wells_by_name(self) -> dict[str, Well]:
        return dict(self._wells)

    def columns(self) -> list[list[Well]]:
        return [[self._wells[name] for name in column] for column in self.definition.ordering]

    def rows(self) -> list[list[Well]]:
        by_row: dict[str, list[Well]] = {}
        for well in self._wells.values():
            by_row.setdefault(WELL_NAME.match(well.name).group(1), []).append(well)
        return list(by_row.values())

    def __iter__(self) -> Iterator[Well]:
        return iter(self.wells())

    # -- tips --------------------------------------------------------------------------------------------------------

    def next_tip(self, channels: int = 1) -> Well | None:
        """The first well (a column's top well for 8 channels) with `channels` unused tips below it, or None."""
        if not self.is_tiprack:
            raise LabwareError(f"{self} is not a tip rack")
        if channels == 1:
            return next((w for w in self._wells.values() if w.name not in self._used_tips), None)
        for column in self.definition.ordering:
            if len(column) >= channels and not self._used_tips.intersection(column[:channels]):
                return self._wells[column[0]]
        return None

    def use_tips(self, start: Well, channels: int = 1) -> None:
        """Mark `channels` tips from `start` down its column as used."""
        column = next(c for c in self.definition.ordering if start.name in c)
        index = column.index(start.name)
        taken = column[index:index + channels]
        if len(taken) < channels:
            raise LabwareError(f"{channels} tips from {start.name} run past the end of its column")
        self._used_tips.update(taken)

    def reset_tips(self) -> None:
        self._used_tips.clear()
