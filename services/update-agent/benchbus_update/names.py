"""The robot's name: validated as a DNS-SD instance name, stored, and the host name derived from it.

The rules of a name live in the contract (benchbus_schemas.update.name_problem), so the bus refuses a bad name with
`invalid_request` before this code runs and HTTP gives the same reason. The host name (`<hostname>.local`) is the
name folded to the letters, digits and hyphens a DNS label allows, lower case, at most 63 characters; a name with
nothing foldable gets `benchbus-<device>`.

On the Pi `apply_command` (for example `hostnamectl set-hostname --pretty {name}` and the static host name)
makes the system and Avahi follow; in development it is empty and the name only lives in its file.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import unicodedata
from pathlib import Path

from benchbus_schemas.update import name_problem

from .slots import atomic_write

log = logging.getLogger("benchbus.update.names")
LABEL_MAX = 63


class InvalidName(ValueError):
    pass


def validate(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidName("the name must be a string")
    problem = name_problem(name)
    if problem:
        raise InvalidName(problem)
    return name


def hostname_for(name: str, fallback: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    label = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:LABEL_MAX].rstrip("-")
    if label:
        return label
    fallback_label = re.sub(r"[^a-z0-9]+", "-", fallback.lower()).strip("-")[:LABEL_MAX - 9].rstrip("-")
    return f"benchbus-{fallback_label}" if fallback_label else "benchbus"


class NameStore:
    def __init__(self, path: Path, default: str, apply_command: list[str] | None = None):
        self.path = Path(path)
        self.default = default
        self.apply_command = apply_command
        self._lock = threading.Lock()

    def get(self) -> tuple[str, str]:
        """(name, hostname)"""
        name = self.default
        try:
            stored = json.loads(self.path.read_text()).get("name")
            if isinstance(stored, str) and name_problem(stored) is None:
                name = stored
        except (FileNotFoundError, ValueError, AttributeError):
            pass
        return name, hostname_for(name, self.default)

    def set(self, name: object) -> tuple[str, str]:
        name = validate(name)
        hostname = hostname_for(name, self.default)
        with self._lock:
            atomic_write(self.path, json.dumps({"name": name}, ensure_ascii=False).encode(), mode=0o644)
            self._apply(name, hostname)
        return name, hostname

    def _apply(self, name: str, hostname: str) -> None:
        if not self.apply_command:
            return
        argv = [part.replace("{name}", name).replace("{hostname}", hostname) for part in self.apply_command]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not apply the name with %s: %s", argv[0], exc)
            return
        if out.returncode != 0:
            log.warning("%s exited %d: %s", argv[0], out.returncode, out.stderr.strip()[:300])
