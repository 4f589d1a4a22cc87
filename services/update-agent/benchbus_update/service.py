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

from benchbus import BusError, RequestContext, Service
from benchbus.runner import run_service
from benchbus_schemas import topics
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


class UpdateService(Service):
    """The runtime's Service, plus the HTTP server's lifetime."""

    http: HttpServer | None = None
    agent: UpdateAgent | None = None  # for tests and embedding

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        super().stop()


def session_payload(snapshot: Snapshot) -> SessionState:
    return SessionState(token=snapshot.token, stage=snapshot.stage, progress=round(snapshot.progress, 4),
                        message=snapshot.message, error=snapshot.error, version=snapshot.version)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build(settings: UpdateSettings) -> tuple[UpdateService, Callable[[], None]]:
    service = UpdateService(SEGMENT, settings)

    def on_session(snapshot: Snapshot, _stage_changed: bool) -> None:
        service.set_state("session", session_payload(snapshot))
        if snapshot.token is not None and snapshot.stage is not None:
            service.emit("progress", {"token": snapshot.token, "stage": snapshot.stage,
                                      "progress": round(snapshot.progress, 4), "message": snapshot.message,
                                      "error": snapshot.error})

    def on_slots(status: SlotStatus, deadline: float | None) -> None:
        service.set_state("slots", {"running": status.running, "next_boot": status.next_boot, "good": status.good,
                                    "trial": status.trial, "invalid": status.invalid,
                                    "boot_count": status.boot_count, "confirm_deadline": _iso(deadline)})

    hooks = Hooks(
        session=on_session,
        slots=on_slots,
        trial=lambda outcome, slot, reason: service.emit("trial", {"outcome": outcome, "slot": slot, "reason": reason}),
        name=lambda name, hostname: service.set_state("name", DeviceName(name=name, hostname=hostname)),
    )
    agent = UpdateAgent(settings, hooks)
    service.agent = agent

    def run_session(step):
        try:
            return step()
        except SessionError as exc:
            raise BusError(exc.kind, exc.message, {"error": exc.short}) from None

    # -- the session --------------------------------------------------------------------------------------------

    @service.handles("begin")
    def begin(request: BeginRequest, ctx: RequestContext):
        if request.force:
            service.log.warning("%s opens an update session that may downgrade the system (force)", ctx.client)
        return {"token": run_session(lambda: agent.updates.begin(force=request.force))}

    @service.handles("cancel")
    def cancel(_request, _ctx: RequestContext):
        agent.updates.cancel()
        return {"message": "Session cancelled"}

    @service.handles("status")
    def status(request: TokenRequest, _ctx: RequestContext):
        return session_payload(run_session(lambda: agent.updates.status(request.token)))

    @service.handles("load_file")
    def load_file(request: LoadFileRequest, _ctx: RequestContext):
        return session_payload(run_session(lambda: agent.updates.use_file(request.token, Path(request.path))))

    @service.handles("commit")
    def commit(request: TokenRequest, _ctx: RequestContext):
        return session_payload(run_session(lambda: agent.updates.commit(request.token)))

    @service.handles("restart")
    def restart(_request, _ctx: RequestContext):
        agent.restart()
        return {"message": f"Restarting in {settings.restart_delay_s:g}s"}

    # -- SSH keys (the admin token is required on the bus) -------------------------------------------------------

    def authorize(request: AdminRequest) -> None:
        if settings.admin_token is None:
            raise BusError("unauthorized", "SSH keys are managed on the bus only with the admin token, and none is "
                                           "configured (admin_token); use HTTP over a link-local address")
        if not agent.admin_token_ok(request.admin_token):
            raise BusError("unauthorized", "field 'admin_token': missing or wrong")

    @service.handles("list_ssh_keys")
    def list_keys(request: AdminRequest, _ctx: RequestContext):
        authorize(request)
        return {"public_keys": [key.describe() for key in agent.keys.list()]}

    @service.handles("add_ssh_key")
    def add_key(request: AddSshKeyRequest, _ctx: RequestContext):
        authorize(request)
        try:
            key, added = agent.keys.add(request.key)
        except sshkeys.InvalidKey as exc:
            raise BusError("invalid_request", f"field 'key': {exc}", {"field": "key", "reason": str(exc)}) from None
        return {"message": "Added key" if added else "Key already present", "key": key.describe()}

    @service.handles("remove_ssh_key")
    def remove_key(request: SshKeyIdRequest, _ctx: RequestContext):
        authorize(request)
        try:
            key = agent.keys.remove(request.id)
        except sshkeys.NotFound as exc:
            raise BusError("not_found", str(exc)) from None
        return {"message": f"Key {key.fingerprint} deleted"}

    @service.handles("clear_ssh_keys")
    def clear_keys(request: AdminRequest, _ctx: RequestContext):
        authorize(request)
        return {"message": f"Keys cleared ({agent.keys.clear()})"}

    # -- the name ------------------------------------------------------------------------------------------------

    @service.handles("get_name")
    def get_name(_request, _ctx: RequestContext):
        name, hostname = agent.names.get()
        return DeviceName(name=name, hostname=hostname)

    @service.handles("set_name")
    def set_name(request: SetNameRequest, _ctx: RequestContext):
        name, hostname = agent.set_name(request.name)
        return DeviceName(name=name, hostname=hostname)

    # -- start ---------------------------------------------------------------------------------------------------

    def lifecycle(topic_name: str, data) -> None:
        parsed = topics.parse(topic_name)
        if parsed and parsed[2] == "$state":
            agent.on_lifecycle(parsed[1], data)

    def setup() -> None:
        name, hostname = agent.names.get()
        service.set_state("name", DeviceName(name=name, hostname=hostname))
        service.set_state("session", session_payload(agent.updates.current()))
        service.http = HttpServer(build_app(agent), settings.http_host, settings.http_port)
        service.http.start()
        service.log.info("update server on http://%s:%d/server/update/health", settings.http_host, service.http.port)
        service.watch(f"benchbus/{settings.device}/+/$state", lifecycle)
        agent.after_boot()
        service.every(1.0, agent.check_trial)

    return service, setup


def main(argv: list[str] | None = None) -> int:
    return run_service(SEGMENT, UpdateSettings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
