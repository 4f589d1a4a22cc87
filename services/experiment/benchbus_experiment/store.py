"""The service's one state file: written whole, atomically (temp file, fsync, rename, fsync of the folder), so a
kill -9 or a power cut in the middle of a write leaves the last good file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchbus.files import write_atomic

TEMP_PREFIX = ".state-"


def save(path: Path, data: dict[str, Any]) -> None:
    """Atomically."""
    write_atomic(path, json.dumps(data, separators=(",", ":")), TEMP_PREFIX)


def load(path: Path) -> dict[str, Any] | None:
    """The saved state; None when there is none. Stale temp files of a killed write are removed. An unreadable
    file is moved aside (`<name>.corrupt-<n>`), never overwritten, and None returned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{TEMP_PREFIX}*.tmp"):
        stale.unlink(missing_ok=True)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError):
        aside = path.with_name(f"{path.name}.corrupt-{os.getpid()}")
        os.replace(path, aside)
        return None
