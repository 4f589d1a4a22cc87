"""Calibrations for a run: calibration-store owns them; Opentrons reads them from files under OT_API_CONFIG_DIR.

`private_config_dir()` gives this process its own Opentrons config folder (so a run never reads or writes
~/.opentrons or another run's files), and `materialise()` writes the store's robot records (deck attitude, pipette
offsets, tip lengths: `calibration/cmd/robot_list`) into it with Opentrons' own calibration_storage functions, in
the files and formats Opentrons reads back. Nothing here is the owner: the store is, the folder is a copy for one
run. What the run calibrated (a file Opentrons wrote or changed in the folder) is read back with Opentrons' own
readers by `calibrated_since()` and sent to the store (`robot_set`) when the run ends.

OT_API_CONFIG_DIR is read once, when `opentrons.config` is imported; when a notebook imported opentrons earlier, its
path table (`opentrons.config.CONFIG`) is pointed at the private folder instead.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("benchbus.ot2.calibration")
_PRIVATE: Path | None = None
_MATERIALISED: dict[tuple, dict[str, Any]] = {}  # what the store gave this run, as folder records


def private_config_dir() -> Path:
    """This process's Opentrons config folder, made on first use."""
    global _PRIVATE
    if _PRIVATE is not None:
        return _PRIVATE
    folder = Path(tempfile.mkdtemp(prefix="benchbus-ot2-config-"))
    atexit.register(shutil.rmtree, folder, True)  # a copy for this process only: gone with it
    if "opentrons.config" not in sys.modules:
        os.environ["OT_API_CONFIG_DIR"] = str(folder)
    else:
        _repoint_loaded_config(folder)
    _PRIVATE = folder
    return folder


def _repoint_loaded_config(folder: Path) -> None:
    import opentrons.config as ot_config

    base = ot_config.infer_config_base_dir()
    log.warning("opentrons was imported before benchbus_ot2: pointing its config paths from %s to %s", base, folder)
    for name, path in list(ot_config.CONFIG.items()):
        try:
            relative = Path(path).relative_to(base)
        except ValueError:
            continue
        ot_config.CONFIG[name] = folder / relative
        if Path(path).suffix == "":
            (folder / relative).mkdir(parents=True, exist_ok=True)


def materialise(records: list[dict[str, Any]]) -> list[str]:
    """Make the folder's calibrations exactly the store's: clear what a previous run left, write the store's robot
    records as Opentrons calibration files; one note per record written."""
    global _MATERIALISED
    _clear_calibration_files()
    notes = []
    for record in records:
        kind = record.get("kind")
        try:
            if kind == "deck":
                _write_deck(record)
                notes.append("deck attitude")
            elif kind == "pipette_offset":
                _write_pipette_offset(record)
                notes.append(f"pipette offset {record['mount']} {record['pipette_id']}")
            elif kind == "tip_length":
                _write_tip_length(record)
                notes.append(f"tip length {record['pipette_id']} {record['tiprack']}")
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("calibration record %r not usable: %s", record, exc)
    _MATERIALISED = folder_records()
    return notes


def folder_records() -> dict[tuple, dict[str, Any]]:
    """The calibrations in the folder as store records, by the store's key (kind + mount/pipette/tip rack)."""
    from opentrons.calibration_storage.ot2 import deck_attitude, pipette_offset, tip_length

    found: dict[tuple, dict[str, Any]] = {}
    deck = deck_attitude.get_robot_deck_attitude()
    if deck is not None:
        found[("deck",)] = {"kind": "deck", "attitude": [list(map(float, row)) for row in deck.attitude],
                            "pipette_calibrated_with": deck.pipette_calibrated_with, "tiprack": deck.tiprack}
    for offset in pipette_offset.get_all_pipette_offset_calibrations():
        found[("pipette_offset", offset.mount, offset.pipette)] = {
            "kind": "pipette_offset", "mount": offset.mount, "pipette_id": offset.pipette,
            "offset": [float(v) for v in offset.offset], "tiprack": offset.tiprack or None, "uri": offset.uri or None}
    for length in tip_length.get_all_tip_length_calibrations():
        found[("tip_length", length.pipette, length.uri)] = {
            "kind": "tip_length", "pipette_id": length.pipette, "tiprack": length.uri,
            "tip_length": float(length.tipLength), "uri": length.uri}
    return found


def calibrated_since() -> list[dict[str, Any]]:
    """The records the run added or changed in the folder since `materialise()` (what goes back to the store)."""
    return [record for key, record in folder_records().items() if _MATERIALISED.get(key) != record]


def _clear_calibration_files() -> None:
    from opentrons.config import get_opentrons_path

    (get_opentrons_path("robot_calibration_dir") / "deck_calibration.json").unlink(missing_ok=True)
    for folder in ("pipette_calibration_dir", "tip_length_calibration_dir"):
        path = get_opentrons_path(folder)
        for child in path.iterdir() if path.is_dir() else []:
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def _status(record: dict[str, Any]) -> Any:
    from opentrons.calibration_storage.ot2.models import v1

    status = record.get("status") or {}
    return v1.CalibrationStatus(markedBad=bool(status.get("marked_bad")), source=status.get("source"),
                                markedAt=status.get("marked_at"))


def _write_deck(record: dict[str, Any]) -> None:
    from opentrons.calibration_storage.ot2 import deck_attitude

    deck_attitude.save_robot_deck_attitude(record["attitude"], record.get("pipette_calibrated_with"),
                                           record.get("tiprack"), cal_status=_status(record))


def _write_pipette_offset(record: dict[str, Any]) -> None:
    from opentrons.calibration_storage.ot2 import pipette_offset
    from opentrons.types import Mount, Point

    pipette_offset.save_pipette_calibration(Point(*record["offset"]), record["pipette_id"],
                                            Mount[record["mount"].upper()], record.get("tiprack") or "",
                                            record.get("uri") or "", cal_status=_status(record))


def _write_tip_length(record: dict[str, Any]) -> None:
    from opentrons.calibration_storage.ot2 import tip_length
    from opentrons.calibration_storage.ot2.models import v1
    from opentrons.util.helpers import utc_now

    tiprack = record["tiprack"]
    uri = record.get("uri") or (tiprack if tiprack.count("/") == 2 else None)
    if uri is None:
        raise ValueError("a tip length needs the tip rack's labware URI (namespace/loadName/version)")
    model = v1.TipLengthModel(tipLength=record["tip_length"], lastModified=utc_now(), status=_status(record),
                              definitionHash="" if uri == tiprack else tiprack)
    tip_length.save_tip_length_calibration(record["pipette_id"], {uri: model})
