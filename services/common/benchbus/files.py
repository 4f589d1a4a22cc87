"""Files a kill cannot corrupt: every owner of a file on the device writes it the same way."""
from __future__ import annotations

import logging
import os
import secrets
import tempfile
from pathlib import Path

log = logging.getLogger("benchbus.files")


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


def load_or_create_token(folder: Path, min_length: int = 16) -> tuple[str, Path]:
    """The HTTP write token of `<folder>/token` (the gateway's, the protocol-runner's), made (mode 0600, written
    whole or not at all) when the file is missing."""
    path = Path(folder) / "token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".token.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        log.info("made the write token in %s", path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
        path.chmod(0o600)
    token = path.read_text().strip()
    if len(token) < min_length:
        raise ValueError(f"{path} holds a token of {len(token)} characters; at least {min_length} are needed "
                         "(delete the file and a new token is made at the next start)")
    return token, path
