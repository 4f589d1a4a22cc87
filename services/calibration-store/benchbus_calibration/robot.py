"""OT-2 robot calibrations: deck attitude, pipette offsets, tip lengths, typed and versioned in one durable file."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from benchbus_schemas.calibration import RobotFile, RobotKey

from .store import Recovery, VersionedFile, utc_stamp


def parse_robot_file(data: bytes) -> RobotFile:
    return RobotFile.model_validate_json(data)


def dump_robot_file(document: RobotFile) -> bytes:
    return (document.model_dump_json(indent=1, exclude_none=True) + "\n").encode()


def key_of(record: Any) -> tuple[str, ...]:
    """What identifies a record: the deck has one; offsets are per mount and pipette; tip lengths per pipette and
    rack."""
    if record.kind == "deck":
        return ("deck",)
    if record.kind == "pipette_offset":
        return ("pipette_offset", record.mount, record.pipette_id)
    return ("tip_length", record.pipette_id, record.tiprack)


def describe(key: tuple[str, ...]) -> str:
    return "/".join(key)


class RobotCalibrations:
    def __init__(self, path: Path | str, keep: int = 20):
        self.file = VersionedFile(path, parse_robot_file, keep)
        self.lock = threading.RLock()

    def open(self) -> Recovery | None:
        return self.file.open(dump_robot_file(RobotFile()))

    @property
    def records(self) -> list[Any]:
        return list(self.file.value.records)

    @property
    def version(self) -> int:
        return self.file.version

    def list(self, kind: str | None = None) -> list[Any]:
        return [r for r in self.records if kind is None or r.kind == kind]

    def get(self, key: RobotKey) -> Any:
        wanted = key_of(key)
        for record in self.records:
            if key_of(record) == wanted:
                return record
        raise KeyError(f"no {key.kind} calibration for {describe(wanted)}")

    def set(self, record: Any) -> tuple[int, bool, str]:
        """Store a record, replacing the one with its key; returns (version, replaced, key)."""
        if record.last_modified is None:
            record = record.model_copy(update={"last_modified": utc_stamp()})
        key = key_of(record)
        with self.lock:
            current = self.records
            replaced = any(key_of(r) == key for r in current)
            updated = [record if key_of(r) == key else r for r in current] if replaced else current + [record]
            return self.file.write(dump_robot_file(RobotFile(records=updated))), replaced, describe(key)

    def delete(self, key: RobotKey) -> tuple[int, str]:
        with self.lock:
            self.get(key)
            wanted = key_of(key)
            remaining = [r for r in self.records if key_of(r) != wanted]
            return self.file.write(dump_robot_file(RobotFile(records=remaining))), describe(wanted)

    def restore(self, version: int) -> int:
        with self.lock:
            return self.file.restore(version)
