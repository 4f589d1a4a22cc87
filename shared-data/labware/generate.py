"""Writes shared-data/labware/<loadName>/1.json from the parameters below (run it after changing them).

Layout and fields follow Opentrons' labware schema 2 (opentrons-shared-data's labware/schemas/2.json); the
numbers are physical facts of common labware (the SBS/ANSI footprint 127.76 x 85.48 mm, 9 mm pitch with A1 14.38 mm
from the left and 11.24 mm from the back edge, tip and tube sizes); the files are ours. Well x, y, z is the centre of
the well bottom, measured from the labware's left-front-bottom corner. tests/protocol/test_definitions.py checks that
the committed files are what this script writes.

    .venv/bin/python shared-data/labware/generate.py
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMESPACE = "benchbus"
SBS_X, SBS_Y = 127.76, 85.48
ROWS_8 = "ABCDEFGH"


def r(value: float) -> float:
    return round(value, 3)


def grid(rows: str, columns: int, first_x: float, first_y: float, pitch_x: float, pitch_y: float, bottom_z: float,
         well: dict) -> tuple[list[list[str]], dict]:
    """Wells in a rectangular grid: A1 at back-left (high y), rows run towards the front (lower y)."""
    ordering, wells = [], {}
    for column in range(columns):
        names = []
        for row_index, row in enumerate(rows):
            name = f"{row}{column + 1}"
            names.append(name)
            wells[name] = {**well, "x": r(first_x + column * pitch_x), "y": r(first_y - row_index * pitch_y),
                           "z": r(bottom_z)}
        ordering.append(names)
    return ordering, wells


def definition(load_name: str, display: str, category: str, fmt: str, height: float, ordering, wells,
               bottom_shape: str, *, units: str = "µL", tiprack: dict | None = None, brand: str = "generic",
               x: float = SBS_X, y: float = SBS_Y) -> dict:
    parameters = {"format": fmt, "isTiprack": tiprack is not None, "loadName": load_name,
                  "isMagneticModuleCompatible": False}
    if tiprack:
        parameters.update(tiprack)
    return {
        "schemaVersion": 2,
        "version": 1,
        "namespace": NAMESPACE,
        "metadata": {"displayName": display, "displayCategory": category, "displayVolumeUnits": units, "tags": []},
        "brand": {"brand": brand, "brandId": []},
        "parameters": parameters,
        "ordering": ordering,
        "cornerOffsetFromSlot": {"x": 0, "y": 0, "z": 0},
        "dimensions": {"xDimension": x, "yDimension": y, "zDimension": height},
        "wells": wells,
        "groups": [{"wells": [name for column in ordering for name in column],
                    "metadata": {"wellBottomShape": bottom_shape} if bottom_shape else {}}],
    }


def plate_96() -> dict:
    # flat-bottom 96-well plate: 14.22 mm tall, wells 10.67 mm deep, 6.86 mm across, 360 uL
    height, depth = 14.22, 10.67
    ordering, wells = grid(ROWS_8, 12, 14.38, SBS_Y - 11.24, 9, 9, height - depth,
                           {"depth": depth, "totalLiquidVolume": 360, "shape": "circular", "diameter": 6.86})
    return definition("benchbus_96_wellplate_360ul_flat", "96 Well Plate 360 µL Flat", "wellPlate", "96Standard",
                      height, ordering, wells, "flat")


def tiprack(volume: int, height: float, tip_length: float, diameter: float, overlap: float) -> dict:
    # the well of a tip rack is the tip: its depth is the tip's length, its bottom the tip's end
    ordering, wells = grid(ROWS_8, 12, 14.38, SBS_Y - 11.24, 9, 9, height - tip_length,
                           {"depth": tip_length, "totalLiquidVolume": volume, "shape": "circular",
                            "diameter": diameter})
    return definition(f"benchbus_96_tiprack_{volume}ul", f"96 Tip Rack {volume} µL", "tipRack", "96Standard",
                      height, ordering, wells, "",
                      tiprack={"tipLength": tip_length, "tipOverlap": overlap})


def reservoir_12() -> dict:
    # 12 troughs across, each 8.2 x 71.2 mm, 26.85 mm deep in a 31.4 mm tall body, 15 mL
    height, depth = 31.4, 26.85
    ordering, wells = grid("A", 12, 14.38, SBS_Y / 2, 9, 0, height - depth,
                           {"depth": depth, "totalLiquidVolume": 15000, "shape": "rectangular",
                            "xDimension": 8.2, "yDimension": 71.2})
    return definition("benchbus_12_reservoir_15ml", "12 Well Reservoir 15 mL", "reservoir", "trough", height,
                      ordering, wells, "v", units="mL")


def tuberack_24() -> dict:
    # 4 x 6 rack of 1.5 mL snap-cap tubes: 19.89 mm column and 19.28 mm row pitch, tubes 37.9 mm deep, 8.69 mm across
    height, depth = 79.85, 37.9
    ordering, wells = grid("ABCD", 6, 18.21, 75.43, 19.89, 19.28, height - depth,
                           {"depth": depth, "totalLiquidVolume": 1500, "shape": "circular", "diameter": 8.69})
    return definition("benchbus_24_tuberack_1500ul", "24 Tube Rack with 1.5 mL Tubes", "tubeRack", "irregular",
                      height, ordering, wells, "v")


def fixed_trash() -> dict:
    # the OT-2 fixed trash box: 107.11 x 165.67 x 82 mm; one well, open at the top
    x, y, height = 107.11, 165.67, 82.0
    wells = {"A1": {"depth": height, "totalLiquidVolume": 1100000, "shape": "rectangular",
                    "xDimension": x, "yDimension": y, "x": r(x / 2), "y": r(y / 2), "z": 0}}
    return definition("benchbus_1_trash_fixed", "Fixed Trash", "trash", "trash", height, [["A1"]], wells, "",
                      units="mL", x=x, y=y)


ALL = [plate_96, lambda: tiprack(300, 64.49, 59.3, 5.23, 7.47), lambda: tiprack(20, 64.69, 39.2, 3.27, 8.25),
       reservoir_12, tuberack_24, fixed_trash]


def render() -> dict[Path, str]:
    out = {}
    for make in ALL:
        data = make()
        out[HERE / data["parameters"]["loadName"] / "1.json"] = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return out


if __name__ == "__main__":
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(HERE.parent))
