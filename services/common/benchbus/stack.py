"""Which broker and device the command line talks to, and the record of a running `benchbus up` that tells it.

`benchbus up` writes `up.json` into its data folder (`.benchbus/` by default) and a copy into the stacks folder of
this user (`$BENCHBUS_STACKS_DIR`, else `$XDG_RUNTIME_DIR/benchbus/stacks`, else `~/.cache/benchbus/stacks`), so
the CLI finds the stack from any folder. The choice, first that applies:

1. `--broker` (and `--device`) on the command line;
2. `BENCHBUS_BROKER_HOST` / `BENCHBUS_BROKER_PORT` in the environment;
3. `.benchbus/up.json` of a running `up` in the current folder or one above it;
4. the one running `up` of this user (the newest, with a note naming the others, when several run);
5. an installed instrument (`/etc/benchbus` exists): its own broker on localhost:1883;
6. localhost:1883, with a note saying so (it may well be another system's broker).
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "up.json"
DATA_DIR_NAME = ".benchbus"
DEFAULT_BROKER = "localhost:1883"
INSTALLED_CONFIG_DIR = Path("/etc/benchbus")

Record = dict[str, Any]  # what up.json holds: broker, device, pid, http_port, data_dir, units


@dataclass(frozen=True)
class Target:
    broker: str  # HOST:PORT
    device: str
    source: str  # where the broker came from, for messages: "--broker", "environment", a file path, "default"
    note: str | None = None  # said on stderr before anything else, when the choice may surprise

    @property
    def host(self) -> str:
        return self.broker.rpartition(":")[0] or self.broker

    @property
    def port(self) -> int:
        host, sep, port = self.broker.rpartition(":")
        return int(port) if sep and port else 1883

    def describe(self) -> str:
        return f"broker {self.broker} ({self.source}), device {self.device}"


def stacks_dir() -> Path:
    if os.environ.get("BENCHBUS_STACKS_DIR"):
        return Path(os.environ["BENCHBUS_STACKS_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "benchbus" / "stacks"
    return Path.home() / ".cache" / "benchbus" / "stacks"


def register(record: Record) -> Path:
    """Called by `up` once its stack is running: the per-user copy of up.json (removed by `unregister`)."""
    folder = stacks_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['pid']}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    temporary.replace(path)
    return path


def unregister(pid: int) -> None:
    (stacks_dir() / f"{pid}.json").unlink(missing_ok=True)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True


def _read(path: Path) -> Record | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("broker"), str):
        return None
    return record


def running_stacks() -> list[Record]:
    """Every live `benchbus up` of this user, newest first (stale records of killed ones are removed)."""
    folder = stacks_dir()
    found: list[tuple[float, Record]] = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        record = _read(path)
        if record is None or not _alive(record.get("pid")):
            path.unlink(missing_ok=True)
            continue
        found.append((path.stat().st_mtime, record))
    return [record for _mtime, record in sorted(found, key=lambda item: item[0], reverse=True)]


def stack_in_folder(start: Path) -> tuple[Path, Record] | None:
    """The up.json of a running `up` in `start` or a folder above it."""
    for folder in [start, *start.parents]:
        path = folder / DATA_DIR_NAME / STATE_FILE
        record = _read(path) if path.is_file() else None
        if record is not None and _alive(record.get("pid")):
            return path, record
    return None


def _from_environment() -> str | None:
    if "BENCHBUS_BROKER_HOST" not in os.environ and "BENCHBUS_BROKER_PORT" not in os.environ:
        return None
    return f"{os.environ.get('BENCHBUS_BROKER_HOST', 'localhost')}:{os.environ.get('BENCHBUS_BROKER_PORT', '1883')}"


def _device(explicit: str | None, record: Record | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("BENCHBUS_DEVICE"):
        return os.environ["BENCHBUS_DEVICE"]
    if record is not None and isinstance(record.get("device"), str):
        return str(record["device"])
    return socket.gethostname()


def _where(record: Record) -> str:
    return str(record.get("data_dir") or f"pid {record.get('pid')}")


def choose(broker: str | None = None, device: str | None = None, cwd: Path | None = None) -> Target:
    """The broker and device to use, and where they came from (see the module's docstring for the order)."""
    if broker:
        return Target(broker, _device(device, None), "--broker")
    from_environment = _from_environment()
    if from_environment:
        return Target(from_environment, _device(device, None), "BENCHBUS_BROKER_HOST/PORT")
    here = stack_in_folder((cwd or Path.cwd()).resolve())
    if here is not None:
        path, record = here
        return Target(record["broker"], _device(device, record), str(path))
    stacks = running_stacks()
    if stacks:
        record = stacks[0]
        note = None
        if len(stacks) > 1:
            others = ", ".join(f"{s['broker']} ({_where(s)})" for s in stacks[1:])
            note = (f"benchbus: {len(stacks)} `benchbus up` are running; using the newest, {record['broker']} "
                    f"({_where(record)}); the others: {others}. Choose with --broker HOST:PORT.")
        return Target(record["broker"], _device(device, record), f"the `benchbus up` in {_where(record)}", note)
    if INSTALLED_CONFIG_DIR.is_dir():
        return Target(DEFAULT_BROKER, _device(device, None), "this instrument's broker")
    note = (f"benchbus: no running `benchbus up` found; using the broker at {DEFAULT_BROKER} "
            f"(choose with --broker HOST:PORT or BENCHBUS_BROKER_HOST/PORT)")
    return Target(DEFAULT_BROKER, _device(device, None), "default", note)


def state_table(states: dict[str, dict[str, Any]], segments: list[str]) -> str:
    """The `$state` of each service as a table (`benchbus status`, `benchbus up`); REASON says why one is degraded."""
    header = ("SERVICE", "STATE", "VERSION", "PID", "SINCE", "REASON")
    rows = [header]
    for segment in segments:
        s = states.get(segment, {})
        rows.append((segment, str(s.get("state", "(no $state)")), str(s.get("version", "")), str(s.get("pid", "")),
                     str(s.get("since", "")), str(s.get("reason") or "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
