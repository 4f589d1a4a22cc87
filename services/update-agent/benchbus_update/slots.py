"""The A/B system slots, the boot environment, trial boots and rollback. No bus, no HTTP.

Two slots, `a` and `b`, each a root filesystem: block devices on the Pi (`/dev/mmcblk0p2`, `/dev/mmcblk0p3`), plain
files on a laptop or in CI. The boot environment (U-Boot's, through `fw_printenv`/`fw_setenv` on the Pi; a JSON
file in development) holds what the boot script reads:

    bb_slot       the slot to boot (a|b)
    bb_good       the last slot confirmed to boot into a ready system
    bb_trial      the slot on trial (empty when none)
    bb_tries      trial boots the boot script has started
    bb_max_tries  how many trial boots it may start before it returns to bb_good
    bb_invalid    space-separated slots that must never boot (a write in progress, a failed trial)

Writing marks the target slot invalid first, so a crash half-way leaves it marked, never bootable-but-broken; only
`arm_trial` (the commit) clears the mark and points `bb_slot` at it.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from collections.abc import Callable

from .bundle import Cancelled

SLOTS = ("a", "b")
SLOT, GOOD, TRIAL, TRIES, MAX_TRIES, INVALID = (
    "bb_slot", "bb_good", "bb_trial", "bb_tries", "bb_max_tries", "bb_invalid")
CHUNK = 1024 * 1024


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def slot_named(env: dict[str, str], variable: str) -> str | None:
    """The slot a boot variable names, or None when it names none."""
    value = env.get(variable)
    return value if value in SLOTS else None


class SlotError(Exception):
    """A slot could not be written or read back; `code` is the session's short error."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write beside, fsync, rename over, fsync the folder: a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# -- the boot environment ---------------------------------------------------------------------------------------


class BootEnv(Protocol):
    def read(self) -> dict[str, str]: ...

    def update(self, changes: dict[str, str | None]) -> None:
        """Set (or, with None, delete) several variables in one write."""


class FileBootEnv:
    """Development: the environment as a JSON object in a file, written atomically."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> dict[str, str]:
        try:
            return {str(k): str(v) for k, v in json.loads(self.path.read_text()).items()}
        except FileNotFoundError:
            return {}

    def update(self, changes: dict[str, str | None]) -> None:
        env = self.read()
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        atomic_write(self.path, json.dumps(env, indent=1, sort_keys=True).encode())


class FwBootEnv:
    """The Pi: U-Boot's environment through `fw_printenv` / `fw_setenv -s` (one write for several variables)."""

    def __init__(self, printenv: list[str], setenv: list[str]):
        self.printenv = printenv
        self.setenv = setenv

    def read(self) -> dict[str, str]:
        out = subprocess.run(self.printenv, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise SlotError("Boot Env", f"{' '.join(self.printenv)} failed: {out.stderr.strip()}")
        env = {}
        for line in out.stdout.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                env[name] = value
        return env

    def update(self, changes: dict[str, str | None]) -> None:
        # fw_setenv's script format: "name value" per line, a name alone deletes the variable
        script = "".join(f"{name} {value}\n" if value is not None else f"{name}\n" for name, value in changes.items())
        with tempfile.NamedTemporaryFile("w", suffix=".env") as handle:
            handle.write(script)
            handle.flush()
            out = subprocess.run([*self.setenv, "-s", handle.name], capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise SlotError("Boot Env", f"{' '.join(self.setenv)} failed: {out.stderr.strip()}")


# -- which slot runs, and which boot this is --------------------------------------------------------------------


@dataclass(frozen=True)
class Boot:
    slot: str
    boot_id: str
    booted_at: float  # epoch seconds


class BootSource(Protocol):
    def current(self) -> Boot: ...


class FileBootSource:
    """Development: the record the boot-script stand-in (emulator.DevBootLoader) writes at each simulated boot."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def current(self) -> Boot:
        data = json.loads(self.path.read_text())
        return Boot(data["slot"], data["boot_id"], float(data["booted_at"]))


class KernelBootSource:
    """The Pi: the root device from /proc/cmdline, the kernel's boot id, the boot time from /proc/stat."""

    def __init__(self, devices: dict[str, Path], cmdline: Path = Path("/proc/cmdline"),
                 boot_id: Path = Path("/proc/sys/kernel/random/boot_id")):
        self.devices = devices
        self.cmdline = cmdline
        self.boot_id_path = boot_id

    def current(self) -> Boot:
        root = next((arg.split("=", 1)[1] for arg in self.cmdline.read_text().split() if arg.startswith("root=")), "")
        for prefix, folder in (("PARTUUID=", "/dev/disk/by-partuuid/"), ("UUID=", "/dev/disk/by-uuid/")):
            if root.startswith(prefix):
                root = folder + root[len(prefix):].lower()
        root_path = os.path.realpath(root)
        slot = next((name for name, dev in self.devices.items() if os.path.realpath(dev) == root_path), None)
        if slot is None:
            raise SlotError("Boot Env", f"root={root} is neither slot ({', '.join(map(str, self.devices.values()))})")
        btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return Boot(slot, self.boot_id_path.read_text().strip(), btime)


# -- the slots --------------------------------------------------------------------------------------------------


@dataclass
class SlotStatus:
    running: str
    next_boot: str
    good: str | None
    trial: str | None
    invalid: list[str] = field(default_factory=list)
    boot_count: int = 0


class SlotSet:
    def __init__(self, devices: dict[str, Path], env: BootEnv, boots: BootSource, max_tries: int = 1):
        self.devices = {name: Path(path) for name, path in devices.items()}
        self.env = env
        self.boots = boots
        self.max_tries = max_tries

    def boot(self) -> Boot:
        return self.boots.current()

    def running(self) -> str:
        return self.boot().slot

    def inactive(self) -> str:
        return other(self.running())

    def ensure_initialised(self) -> None:
        """A freshly flashed device has no variables of ours: the slot it runs is the good one."""
        env = self.env.read()
        if env.get(SLOT) in SLOTS and env.get(GOOD) in SLOTS:
            return
        running = self.running()
        self.env.update({SLOT: env.get(SLOT) if env.get(SLOT) in SLOTS else running,
                         GOOD: env.get(GOOD) if env.get(GOOD) in SLOTS else running,
                         MAX_TRIES: str(self.max_tries)})

    def status(self) -> SlotStatus:
        env = self.env.read()
        running = self.running()
        return SlotStatus(
            running=running,
            next_boot=slot_named(env, SLOT) or running,
            good=slot_named(env, GOOD),
            trial=slot_named(env, TRIAL),
            invalid=invalid_of(env),
            boot_count=int(env.get(TRIES) or 0) if (env.get(TRIES) or "0").isdigit() else 0,
        )

    # -- writing --------------------------------------------------------------------------------------------

    def mark_invalid(self, slot: str) -> None:
        self.env.update({INVALID: " ".join(sorted(set(invalid_of(self.env.read())) | {slot}))})

    def open_writer(self, slot: str, size: int) -> SlotWriter:
        if slot == self.running():
            raise SlotError("Write Failed", f"slot {slot} is the running system; only the inactive slot is written")
        self.mark_invalid(slot)  # before the first byte: a crash from here on leaves it marked
        return SlotWriter(self.devices[slot], size)

    # -- trial boots ----------------------------------------------------------------------------------------

    def arm_trial(self, slot: str) -> None:
        """The commit: boot `slot` next, on trial; the boot script counts the tries."""
        env = self.env.read()
        self.env.update({SLOT: slot, TRIAL: slot, TRIES: "0", MAX_TRIES: str(self.max_tries),
                         INVALID: " ".join(s for s in invalid_of(env) if s != slot) or None})

    def confirm(self) -> str:
        running = self.running()
        self.env.update({GOOD: running, SLOT: running, TRIAL: None, TRIES: None})
        return running

    def roll_back(self) -> str:
        """Give up the running (or pending) trial: boot the good slot next, and never the failed one."""
        env = self.env.read()
        failed = slot_named(env, TRIAL) or self.running()
        good = slot_named(env, GOOD) or other(failed)
        self.env.update({SLOT: good, TRIAL: None, TRIES: None,
                         INVALID: " ".join(sorted(set(invalid_of(env)) | {failed}))})
        return good


def invalid_of(env: dict[str, str]) -> list[str]:
    return sorted(s for s in (env.get(INVALID) or "").split() if s in SLOTS)


class SlotWriter:
    """Writes one root filesystem image to a slot: chunks, fsync, then a read-back of the hash from the device."""

    def __init__(self, path: Path, size: int):
        self.path = path
        self.size = size
        self.written = 0
        is_block = path.exists() and stat.S_ISBLK(path.stat().st_mode)
        flags = os.O_WRONLY | (0 if is_block else os.O_CREAT | os.O_TRUNC)
        try:
            self.fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise SlotError("Write Failed", f"cannot open slot {path}: {exc.strerror}") from None
        if is_block:
            capacity = os.lseek(self.fd, 0, os.SEEK_END)
            os.lseek(self.fd, 0, os.SEEK_SET)
            if capacity < size:
                os.close(self.fd)
                raise SlotError("Write Failed", f"the image is {size} bytes; slot {path} holds {capacity}")

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        try:
            while view:
                count = os.write(self.fd, view)
                view = view[count:]
                self.written += count
        except OSError as exc:
            raise SlotError("Write Failed",
                            f"writing slot {self.path} at byte {self.written}: {exc.strerror}") from None

    def finish(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise SlotError("Write Failed", f"fsync of slot {self.path}: {exc.strerror}") from None

    def read_back(self, expected_sha256: str, progress: Callable[[int, int], None] | None = None,
                  cancelled: Callable[[], bool] = lambda: False) -> None:
        """Hash what the device holds (the page cache dropped first, so the bytes come from the medium)."""
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        digest = hashlib.sha256()
        done = 0
        with open(self.path, "rb", buffering=0) as device:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(device.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            while done < self.size:
                if cancelled():
                    raise Cancelled()
                chunk = device.read(min(CHUNK, self.size - done))
                if not chunk:
                    break
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, self.size)
        if done != self.size or digest.hexdigest() != expected_sha256:
            raise SlotError("Verify Failed", f"slot {self.path} reads back {done} bytes with SHA-256 "
                                             f"{digest.hexdigest()}; expected {self.size} bytes with {expected_sha256}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
