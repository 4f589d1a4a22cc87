"""The update-agent's core, shared by HTTP (http.py) and the bus (service.py); it publishes nothing itself.

Trial boots and rollback (what the OT-2 lacks: it keeps any kernel that boots, #16718 boot loops):

- The commit points the boot environment at the new slot on trial (slots.arm_trial) and records, in
  `<state_dir>/trial.json`, the services that were ready then and the boot id of the commit.
- After the reboot the agent finds itself running the trial slot. It follows every service's `$state`
  (`benchbus/<device>/+/$state`) and confirms the slot (bb_good := it) once every expected service (those ready at
  the commit, plus `expected_services`, plus any other that shows up) is `ready` with a `since` from this boot, all
  within `confirm_timeout_s`. Otherwise it rolls back: bb_slot := bb_good, the trial slot goes into bb_invalid,
  and it reboots.
- If the new system never gets as far as the agent (a kernel panic, a hang in early boot), the boot script does
  the rollback. What the boot script (delivered by the deployment issue; emulator.DevBootLoader is its stand-in
  here) must do at every boot, before loading the kernel:
    1. if bb_trial is set: bb_tries += 1 and save; if bb_tries > bb_max_tries, set bb_slot := bb_good, clear
       bb_trial and bb_tries, add the trial slot to bb_invalid, and save;
    2. never boot a slot in bb_invalid: boot bb_good instead;
    3. boot root=<partition of bb_slot>.
  A hardware watchdog (bcm2835_wdt, armed by systemd's RuntimeWatchdogSec) turns a hang into a reset, so a
  hung trial also ends in step 1.
- The agent reports a rollback the boot script made (bb_trial cleared while the record says otherwise) as a
  `rolled_back` trial event at its next start.
"""
from __future__ import annotations

import hmac
import json
import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from collections.abc import Callable

from . import bundle, names, sshkeys
from .emulator import DevBootLoader
from .session import Config, Snapshot, Updates
from .settings import UpdateSettings
from .slots import FileBootEnv, FileBootSource, FwBootEnv, KernelBootSource, SlotSet, SlotStatus, atomic_write

log = logging.getLogger("benchbus.update.agent")
SEGMENT = "update"
SINCE_MARGIN_S = 1.0  # a `$state` whose `since` is older than the boot (less this) is from before the reboot


@dataclass
class Hooks:
    """What the agent reports; service.py publishes these on the bus."""

    session: Callable[[Snapshot, bool], None] = lambda snapshot, stage_changed: None
    slots: Callable[[SlotStatus, float | None], None] = lambda status, deadline: None
    trial: Callable[[str, str, str], object] = lambda outcome, slot, reason: None  # what they return is unused
    name: Callable[[str, str], object] = lambda name, hostname: None


@dataclass
class _Trial:
    slot: str
    expected: set[str]
    booted_at: float
    deadline: float  # time.time()


class UpdateAgent:
    def __init__(self, settings: UpdateSettings, hooks: Hooks | None = None):
        self.settings = settings
        self.hooks = hooks or Hooks()
        state_dir = Path(settings.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.trial_record = state_dir / "trial.json"
        self.boot_loader: DevBootLoader | None = None
        self.slots = self._make_slots()
        self.slots.ensure_initialised()
        key = None
        if settings.public_key_file is not None:
            key = bundle.load_public_key(Path(settings.public_key_file).read_bytes())
        config = Config(downloads=state_dir / "downloads", key=key, signature_required=settings.signature_required,
                        robot_type=settings.robot_type, limits=bundle.Limits(max_image_bytes=settings.max_image_bytes),
                        max_upload_bytes=settings.max_upload_bytes, abandon_after_s=settings.abandon_after_s,
                        running_version=lambda: _read_json(Path(settings.version_file)))
        self.updates = Updates(config, self.slots, on_change=self._session_changed, can_begin=self._begin_refusal,
                               on_commit=self._committed)
        self.updates._wipe_downloads()  # an agent that crashed mid-session left files behind
        self.keys = sshkeys.AuthorizedKeys(settings.authorized_keys)
        self.names = names.NameStore(state_dir / "name.json", settings.default_name or settings.device,
                                     settings.name_command)
        self._states: dict[str, tuple[str, float | None]] = {}  # service -> (state, since as epoch seconds)
        self._trial: _Trial | None = None
        self._lock = threading.RLock()

    def _make_slots(self) -> SlotSet:
        s = self.settings
        if s.slot_dir is not None:
            folder = Path(s.slot_dir)
            folder.mkdir(parents=True, exist_ok=True)
            env = FileBootEnv(folder / "bootenv.json")
            self.boot_loader = DevBootLoader(env, folder / "boot.json")
            self.boot_loader.ensure_booted()
            devices = {"a": folder / "slot-a.img", "b": folder / "slot-b.img"}
            return SlotSet(devices, env, FileBootSource(folder / "boot.json"), s.max_trial_boots)
        devices = {"a": s.slot_a, "b": s.slot_b}
        return SlotSet(devices, FwBootEnv(s.fw_printenv, s.fw_setenv),
                       KernelBootSource(devices, boot_id=s.boot_id_file), s.max_trial_boots)

    # -- health ---------------------------------------------------------------------------------------------

    def boot_id(self) -> str:
        return self.slots.boot().boot_id

    def health(self) -> dict:
        versions = _read_json(Path(self.settings.version_file))
        try:
            serial = Path(self.settings.serial_file).read_text().strip() or "unknown"
        except OSError:
            serial = "unknown"
        return {
            "name": self.names.get()[0],
            "serialNumber": serial,
            "bootId": self.boot_id(),
            "updateServerVersion": _package_version(),
            "apiServerVersion": versions.get("opentrons_api_version", "unknown"),
            "smoothieVersion": "unimplemented",
            "systemVersion": versions.get("buildroot_version", "unknown"),
            "capabilities": {"systemUpdate": "/server/update/begin", "buildrootUpdate": "/server/update/begin",
                             "restart": "/server/restart"},
            "robotModel": self.settings.robot_type,
        }

    # -- names and keys -------------------------------------------------------------------------------------

    def set_name(self, name: object) -> tuple[str, str]:
        result = self.names.set(name)
        self.hooks.name(*result)
        return result

    def admin_token_ok(self, token: str | None) -> bool:
        expected = self.settings.admin_token
        return bool(expected and token and hmac.compare_digest(expected.encode(), token.encode()))

    # -- the session ----------------------------------------------------------------------------------------

    def _session_changed(self, snapshot: Snapshot, stage_changed: bool) -> None:
        self.hooks.session(snapshot, stage_changed)
        if stage_changed and snapshot.stage in ("writing", "done", "error", None):
            self.publish_slots()  # the write marks the target slot invalid; the commit or a cancel changes more

    def _begin_refusal(self) -> str | None:
        status = self.slots.status()
        if status.trial is not None:
            where = "running" if status.trial == status.running else "armed for the next boot"
            return (f"slot {status.trial} is on trial ({where}) and not yet confirmed; an update now would "
                    "overwrite the only known-good slot")
        return None

    def _committed(self, slot: str) -> None:
        with self._lock:
            ready = sorted(name for name, (state, _since) in self._states.items()
                           if state == "ready" and name != SEGMENT)
        record = {"slot": slot, "expected": ready, "commit_boot_id": self.boot_id(), "committed_at": time.time()}
        atomic_write(self.trial_record, json.dumps(record).encode(), mode=0o644)
        self.publish_slots()

    def restart(self) -> None:
        """Reboot after `restart_delay_s`, once any commit in progress is through."""
        threading.Thread(target=self._restart_later, name="update-restart", daemon=True).start()

    def _restart_later(self) -> None:
        time.sleep(self.settings.restart_delay_s)
        with self.updates.restart_lock:
            if self.settings.restart_command:
                log.warning("restarting: %s", " ".join(self.settings.restart_command))
                subprocess.run(self.settings.restart_command, check=False)
                return
            log.warning("restarting (simulated: the boot-script stand-in chooses the slot)")
            self.updates.forget()
            assert self.boot_loader is not None, "a simulated restart needs slot_dir"
            self.boot_loader.boot()
        self.after_boot()

    # -- trial boots ----------------------------------------------------------------------------------------

    def after_boot(self) -> None:
        """At start (and after a simulated reboot): is this boot a trial, or did the boot script roll one back?"""
        status = self.slots.status()
        boot = self.slots.boot()
        record = _read_json(self.trial_record)
        with self._lock:
            self._trial = None
            if status.trial is not None and status.trial == boot.slot:
                expected = set(record.get("expected", [])) | set(self.settings.expected_services)
                expected.discard(SEGMENT)
                self._trial = _Trial(boot.slot, expected, boot.booted_at, time.time() + self.settings.confirm_timeout_s)
                log.warning("running slot %s on trial: confirming once %s are ready (within %.0f s)", boot.slot,
                            ", ".join(sorted(expected)) or "all services seen", self.settings.confirm_timeout_s)
            elif status.trial is not None and record.get("commit_boot_id") not in (None, boot.boot_id):
                # armed, rebooted, yet the old slot runs: the trial never booted far enough for the boot script
                self.slots.roll_back()
                self._report("rolled_back", status.trial, f"slot {status.trial} was armed but slot {boot.slot} booted")
            elif status.trial is None and record.get("slot") and record.get("commit_boot_id") != boot.boot_id:
                if record["slot"] != boot.slot:
                    self._report("rolled_back", record["slot"], f"the boot script gave up on slot {record['slot']} "
                                 f"and returned to slot {boot.slot}")
                else:
                    self.trial_record.unlink(missing_ok=True)
        self.publish_slots()
        self.check_trial()

    def on_lifecycle(self, service: str, data: dict) -> None:
        """A `$state` of any service of the device (service.py feeds these from the bus)."""
        if service == SEGMENT or not isinstance(data, dict):
            return
        with self._lock:
            self._states[service] = (str(data.get("state")), _epoch(data.get("since")))
        self.check_trial()

    def check_trial(self) -> None:
        """Confirm when everyone is ready; roll back when the time is up. Also runs every second (service.py)."""
        with self._lock:
            trial = self._trial
            if trial is None:
                return
            waiting = self._not_ready(trial)
            if not waiting and self._known(trial):
                self._trial = None
                self.slots.confirm()
                self._report("confirmed", trial.slot, "every service reported ready since the boot")
                self.publish_slots()
                return
            if time.time() < trial.deadline:
                return
            self._trial = None
            good = self.slots.roll_back()
            self._report("rolled_back", trial.slot, f"not ready within {self.settings.confirm_timeout_s:g} s: "
                         + (", ".join(waiting) or "no service reported at all"))
        self.publish_slots()
        log.error("rolling back to slot %s and restarting", good)
        self.restart()

    def _not_ready(self, trial: _Trial) -> list[str]:
        """The services still to be ready: the expected ones, and any other that has started since this boot.

        A retained `$state` older than the boot (a service that no longer runs) counts only if it is expected."""
        def fresh(since: float | None) -> bool:
            return since is None or since >= trial.booted_at - SINCE_MARGIN_S

        started = {name for name, (_state, since) in self._states.items() if fresh(since)}
        waiting = []
        for service in sorted(trial.expected | started):
            state, since = self._states.get(service, ("not seen", None))
            if state != "ready" or not fresh(since):
                waiting.append(f"{service} ({state if fresh(since) else 'not started since this boot'})")
        return waiting

    def _known(self, trial: _Trial) -> bool:
        return bool(trial.expected) or any(since is None or since >= trial.booted_at - SINCE_MARGIN_S
                                           for _state, since in self._states.values())

    def _report(self, outcome: str, slot: str, reason: str) -> None:
        log.warning("trial of slot %s %s: %s", slot, outcome, reason)
        self.trial_record.unlink(missing_ok=True)
        self.hooks.trial(outcome, slot, reason)

    def publish_slots(self) -> None:
        with self._lock:
            deadline = self._trial.deadline if self._trial else None
        self.hooks.slots(self.slots.status(), deadline)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _epoch(since: object) -> float | None:
    if not isinstance(since, str):
        return None
    try:
        return datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _package_version() -> str:
    from importlib import metadata
    try:
        return metadata.version("benchbus-update")
    except metadata.PackageNotFoundError:
        return "0+unknown"
