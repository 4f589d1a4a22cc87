"""A JSON file that is never lost or corrupted: atomic writes, the last N versions kept, recovery at start.

Standard library only (the kill-storm test runs it in a bare interpreter many hundreds of times).

Layout, for `calibrations.json`:

    calibrations.json                      the current version (what other tools and people read)
    calibrations.json.history/v00000012.json  the last `keep` versions, the current one included
    calibrations.json.corrupt-<time>       a current file that did not parse or validate, moved aside at start

Every write: the version goes to the history (temp file, fsync, rename, fsync of the directory), then the same bytes
replace the current file the same way. Only then does `write` return, so a caller replies `ok` only for data on disk.
A kill between the two leaves a newer, never-acknowledged version in the history and the previous current file: the
current file wins at start (it was the last one acknowledged).
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any
    from collections.abc import Callable

# imports are kept to the few cheap modules above: the kill-storm test starts this file in a fresh interpreter 500 times
_temp_counter = itertools.count()


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash at any moment leaves either the old or the new file, whole."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{next(_temp_counter)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temp, path)
    fsync_directory(path.parent)


def utc_stamp(seconds: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Recovery:
    """What `open` had to repair; None from `open` means the current file was fine."""

    def __init__(self, path: str, reason: str, moved_aside: list[str] | None = None):
        self.path = path
        self.reason = reason
        self.moved_aside: list[str] = list(moved_aside or [])
        self.loaded_version: int | None = None
        self.started_empty = False

    def __repr__(self) -> str:
        return f"Recovery({self.__dict__!r})"


class VersionedFile:
    """One durable file. `parse(bytes)` returns the validated value or raises (any exception = invalid)."""

    def __init__(self, path: Path | str, parse: Callable[[bytes], Any], keep: int = 20):
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = Path(path)
        self.history_dir = self.path.with_name(self.path.name + ".history")
        self.parse = parse
        self.keep = keep
        self.version = 0
        self.value: Any = None
        self._highest = 0  # the highest version number ever seen, so numbers are never reused
        self._lock = threading.Lock()

    # -- start ---------------------------------------------------------------------------------------------------------

    def open(self, empty: bytes) -> Recovery | None:
        """Load the current file, repairing what a crash or a bad edit left. `empty` is written when nothing exists
        or nothing valid is left. Returns what was repaired, or None."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.history_dir.is_dir():
            self.history_dir.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.path.parent)
        self._remove_temp_files()
        versions = self._versions()
        self._highest = max(versions, default=0)
        if self.path.exists():
            data = self.path.read_bytes()
            try:
                self.value = self.parse(data)
            except Exception as exc:  # any reason the file is unusable
                reason = f"{self.path.name} is unreadable: {_short(exc)}"
                moved = self._move_aside(self.path, f"{self.path.name}.corrupt-{_file_stamp()}")
                return self._recover(reason, [moved], versions, empty)
            self._adopt_current(data, versions)
            return None
        if not versions:
            self._commit(empty)
            return None
        return self._recover(f"{self.path.name} is missing", [], versions, empty)

    def _adopt_current(self, data: bytes, versions: list[int]) -> None:
        newest = versions[-1] if versions else None
        if newest is not None and self._version_path(newest).read_bytes() == data:
            self.version = newest
            return
        # edited by hand, written by an older tool, or the newest history entry was never made current:
        # keep the current file as a version of its own
        self.version = self._highest + 1
        self._highest = self.version
        atomic_write(self._version_path(self.version), data)
        self._prune()

    def _recover(self, reason: str, moved: list[str], versions: list[int], empty: bytes) -> Recovery:
        recovery = Recovery(str(self.path), reason, moved)
        for version in reversed(versions):
            path = self._version_path(version)
            data = path.read_bytes()
            try:
                value = self.parse(data)
            except Exception:
                recovery.moved_aside.append(self._move_aside(path, f"{path.name}.corrupt-{_file_stamp()}"))
                continue
            atomic_write(self.path, data)
            self.value, self.version = value, version
            recovery.loaded_version = version
            return recovery
        recovery.started_empty = True
        self._commit(empty)
        return recovery

    def _move_aside(self, path: Path, name: str) -> str:
        target = path.with_name(name)
        for n in itertools.count(1):
            if not target.exists():
                break
            target = path.with_name(f"{name}.{n}")
        os.replace(path, target)
        fsync_directory(path.parent)
        return str(target)

    def _remove_temp_files(self) -> None:
        # temp files are writes that never completed, so never acknowledged: not data of record
        for directory in (self.path.parent, self.history_dir):
            for temp in directory.glob(".*.tmp-*"):
                temp.unlink(missing_ok=True)

    # -- writing -------------------------------------------------------------------------------------------------------

    def write(self, data: bytes) -> int:
        """Validate, then make `data` the current version; returns its number once it is on disk."""
        value = self.parse(data)
        with self._lock:
            self._commit(data, value)
            return self.version

    def _commit(self, data: bytes, value: Any = None) -> None:
        version = self._highest + 1
        atomic_write(self._version_path(version), data)
        atomic_write(self.path, data)
        self.version = self._highest = version
        self.value = self.parse(data) if value is None else value
        self._prune()

    def _prune(self) -> None:
        for old in self._versions()[:-self.keep]:
            self._version_path(old).unlink(missing_ok=True)

    # -- history -------------------------------------------------------------------------------------------------------

    def _version_path(self, version: int) -> Path:
        return self.history_dir / f"v{version:08d}.json"

    def _versions(self) -> list[int]:
        found = []
        for path in self.history_dir.iterdir() if self.history_dir.is_dir() else []:
            number = _version_number(path.name)
            if number is not None:
                found.append(number)
        return sorted(found)

    def history(self) -> list[dict[str, Any]]:
        """The kept versions, newest first."""
        import hashlib

        entries = []
        for version in reversed(self._versions()):
            path = self._version_path(version)
            try:
                data = path.read_bytes()
                saved = path.stat().st_mtime
            except FileNotFoundError:  # pruned meanwhile
                continue
            entries.append({"version": version, "saved_at": utc_stamp(saved), "size": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(), "current": version == self.version})
        return entries

    def read_version(self, version: int) -> bytes:
        path = self._version_path(version)
        if not path.is_file():
            raise KeyError(f"version {version} is not kept (kept: {', '.join(map(str, self._versions())) or 'none'})")
        return path.read_bytes()

    def restore(self, version: int) -> int:
        """Make a kept version current again, as a new version; raises KeyError or the parse error."""
        return self.write(self.read_version(version))


def _version_number(name: str) -> int | None:
    """v00000012.json -> 12; anything else (a corrupt copy moved aside, a stray file) -> None."""
    digits = name[1:-5]
    if name.startswith("v") and name.endswith(".json") and len(digits) >= 8 and digits.isdigit():
        return int(digits)
    return None


def _file_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:300]}"
