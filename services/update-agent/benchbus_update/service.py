"""`benchbus-update`: the update-agent on the bus (segment `update`) and on HTTP (the OT-2 update server's routes).

The bus side: the session's commands (`begin`, `cancel`, `status`, `load_file`, `commit`, `restart`), retained
`state/session`, `state/slots`, `state/name`, and `event/progress` / `event/trial`; SSH keys (`list_ssh_keys`,
`add_ssh_key`, `remove_ssh_key`, `clear_ssh_keys`, which need the admin token: the bus has no link-local address);
the name (`get_name`, `set_name`). It follows `benchbus/<device>/+/$state` to confirm or roll back a trial boot
(agent.py has the details): the slot is confirmed only when every service is `ready` since this boot within
`confirm_timeout_s`; otherwise the agent points the boot environment back at the good slot and reboots.

The boot-counter check, delivered with the deployment (U-Boot's boot script; emulator.DevBootLoader is its
stand-in here), must at every boot, before loading the kernel:
  1. if `bb_trial` is set: `bb_tries += 1` and save; when `bb_tries > bb_max_tries`, set `bb_slot := bb_good`,
     clear `bb_trial` and `bb_tries`, add the trial slot to `bb_invalid`, and save;
  2. never boot a slot listed in `bb_invalid` (boot `bb_good` instead);
  3. boot `root=` the partition of `bb_slot` (a = mmcblk0p2, b = mmcblk0p3).
So a trial that hangs or panics before the agent runs (with the hardware watchdog armed) still returns to the
good slot, and the agent reports that rollback at its next start.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from benchbus import BusError, RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler
from benchbus_schemas import topics
from benchbus_schemas.envelope import Empty
from benchbus_schemas.update import (
    AddSshKeyRequest,
    AdminRequest,
    BeginRequest,
    DeviceName,
    LoadFileRequest,
    SessionState,
    SetNameRequest,
    SshKeyIdRequest,
    TokenRequest,
)

from . import sshkeys
from .agent import SEGMENT, Hooks, UpdateAgent
from .http import HttpServer, build_app
from .session import SessionError, Snapshot
from .settings import UpdateSettings
from .slots import SlotStatus


def session_payload(snapshot: Snapshot) -> SessionState:
    return SessionState(token=snapshot.token, stage=snapshot.stage, progress=round(snapshot.progress, 4),
                        message=snapshot.message, error=snapshot.error, version=snapshot.version)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_session(step: Callable[[], Any]) -> Any:
    """A session step whose refusal (session.py knows nothing of the bus) reaches the caller as a bus error."""
    try:
        return step()
    except SessionError as exc:
        raise BusError(exc.kind, exc.message, {"error": exc.short}) from None


class UpdateService(Service[UpdateSettings]):
    """The update agent on the bus, and the HTTP server's lifetime."""

    segment = SEGMENT

    def __init__(self, settings: UpdateSettings):
        super().__init__(settings)
        hooks = Hooks(
            session=self._on_session,
            slots=self._on_slots,
            trial=lambda outcome, slot, reason: self.emit("trial", {"outcome": outcome, "slot": slot,
                                                                    "reason": reason}),
            name=lambda name, hostname: self.set_state("name", DeviceName(name=name, hostname=hostname)),
        )
        self.agent = UpdateAgent(settings, hooks)
        self.http: HttpServer | None = None

    def on_start(self) -> None:
        settings, agent = self.settings, self.agent
        name, hostname = agent.names.get()
        self.set_state("name", DeviceName(name=name, hostname=hostname))
        self.set_state("session", session_payload(agent.updates.current()))
        self.http = HttpServer(build_app(agent), settings.http_host, settings.http_port)
        self.http.start()
        self.log.info("update server on http://%s:%d/server/update/health", settings.http_host, self.http.port)
        self.watch(f"benchbus/{settings.device}/+/$state", self._on_lifecycle)
        agent.after_boot()
        self.every(1.0, agent.check_trial)

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        super().stop()

    # -- what the agent reports ----------------------------------------------------------------------------------

    def _on_session(self, snapshot: Snapshot, _stage_changed: bool) -> None:
        self.set_state("session", session_payload(snapshot))
        if snapshot.token is not None and snapshot.stage is not None:
            self.emit("progress", {"token": snapshot.token, "stage": snapshot.stage,
                                   "progress": round(snapshot.progress, 4), "message": snapshot.message,
                                   "error": snapshot.error})

    def _on_slots(self, status: SlotStatus, deadline: float | None) -> None:
        self.set_state("slots", {"running": status.running, "next_boot": status.next_boot, "good": status.good,
                                 "trial": status.trial, "invalid": status.invalid,
                                 "boot_count": status.boot_count, "confirm_deadline": _iso(deadline)})

    def _on_lifecycle(self, topic_name: str, data: Any) -> None:
        parsed = topics.parse(topic_name)
        if parsed and parsed[2] == "$state":
            self.agent.on_lifecycle(parsed[1], data)

    # -- the session --------------------------------------------------------------------------------------------

    @handler("begin")
    def begin(self, request: BeginRequest, ctx: RequestContext) -> dict[str, Any]:
        if request.force:
            self.log.warning("%s opens an update session that may downgrade the system (force)", ctx.client)
        return {"token": run_session(lambda: self.agent.updates.begin(force=request.force))}

    @handler("cancel")
    def cancel(self, _request: Empty, _ctx: RequestContext) -> dict[str, Any]:
        self.agent.updates.cancel()
        return {"message": "Session cancelled"}

    @handler("status")
    def status(self, request: TokenRequest, _ctx: RequestContext) -> SessionState:
        return session_payload(run_session(lambda: self.agent.updates.status(request.token)))

    @handler("load_file")
    def load_file(self, request: LoadFileRequest, _ctx: RequestContext) -> SessionState:
        return session_payload(run_session(lambda: self.agent.updates.use_file(request.token, Path(request.path))))

    @handler("commit")
    def commit(self, request: TokenRequest, _ctx: RequestContext) -> SessionState:
        return session_payload(run_session(lambda: self.agent.updates.commit(request.token)))

    @handler("restart")
    def restart(self, _request: Empty, _ctx: RequestContext) -> dict[str, Any]:
        self.agent.restart()
        return {"message": f"Restarting in {self.settings.restart_delay_s:g}s"}

    # -- SSH keys (the admin token is required on the bus) -------------------------------------------------------

    def _authorize(self, request: AdminRequest) -> None:
        if self.settings.admin_token is None:
            raise BusError("unauthorized", "SSH keys are managed on the bus only with the admin token, and none is "
                                           "configured (admin_token); use HTTP over a link-local address")
        if not self.agent.admin_token_ok(request.admin_token):
            raise BusError("unauthorized", "field 'admin_token': missing or wrong")

    @handler("list_ssh_keys")
    def list_keys(self, request: AdminRequest, _ctx: RequestContext) -> dict[str, Any]:
        self._authorize(request)
        return {"public_keys": [key.describe() for key in self.agent.keys.list()]}

    @handler("add_ssh_key")
    def add_key(self, request: AddSshKeyRequest, _ctx: RequestContext) -> dict[str, Any]:
        self._authorize(request)
        try:
            key, added = self.agent.keys.add(request.key)
        except sshkeys.InvalidKey as exc:
            raise BusError("invalid_request", f"field 'key': {exc}", {"field": "key", "reason": str(exc)}) from None
        return {"message": "Added key" if added else "Key already present", "key": key.describe()}

    @handler("remove_ssh_key")
    def remove_key(self, request: SshKeyIdRequest, _ctx: RequestContext) -> dict[str, Any]:
        self._authorize(request)
        try:
            key = self.agent.keys.remove(request.id)
        except sshkeys.NotFound as exc:
            raise BusError("not_found", str(exc)) from None
        return {"message": f"Key {key.fingerprint} deleted"}

    @handler("clear_ssh_keys")
    def clear_keys(self, request: AdminRequest, _ctx: RequestContext) -> dict[str, Any]:
        self._authorize(request)
        return {"message": f"Keys cleared ({self.agent.keys.clear()})"}

    # -- the name ------------------------------------------------------------------------------------------------

    @handler("get_name")
    def get_name(self, _request: Empty, _ctx: RequestContext) -> DeviceName:
        name, hostname = self.agent.names.get()
        return DeviceName(name=name, hostname=hostname)

    @handler("set_name")
    def set_name(self, request: SetNameRequest, _ctx: RequestContext) -> DeviceName:
        name, hostname = self.agent.set_name(request.name)
        return DeviceName(name=name, hostname=hostname)


def main(argv: list[str] | None = None) -> int:
    return run_service(UpdateService, argv)


if __name__ == "__main__":
    sys.exit(main())
