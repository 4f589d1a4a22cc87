"""Files a kill cannot corrupt: every owner of a file on the device writes it the same way."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, temp_prefix: str) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: a kill leaves the old file or the new one.

    `temp_prefix` names the temp files, so the owner can remove the ones a kill left behind at its next start."""
    folder = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=temp_prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
