"""`benchbus-broadcast-scheduler`: the bus wiring of the broadcast loop (the only place that subscribes/publishes).

It owns conf.yml. Every board step is one `samd/cmd/transact` call; the samd-bridge owns the serial line.
"""
from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from benchbus import BusError, CallTimeout, RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler
from benchbus.yamlfile import FileError
from benchbus_schemas.scheduler import (
    SERVICE,
    Broadcast,
    CommandAccepted,
    CommandRequest,
    CommandResult,
    ConfigState,
    GetConfigResult,
    LoadConfRequest,
    LoadConfResult,
    Overrun,
    PauseResult,
    StepError,
    StepReport,
)
from benchbus_schemas.envelope import Empty

from . import calibration, ownership
from . import conf as conffile
from .loop import BroadcastLoop, CycleReport, Immediate, Outcome, Pending, Step, group_status
from .settings import SchedulerSettings

SLOWEST_SHOWN = 3
KEYS_KEPT = 256  # idempotency keys remembered (per scheduler run); a resend comes within seconds of its first try
NO_REPLY = "no_reply"  # the kind of a step whose transact got no reply at all (samd-bridge down, broker away)


def find_ip() -> str:
    """The address other machines reach us at; never fails (the original did not start without a default route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP connect sends nothing; it only picks the outgoing interface
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def step_report(outcome: Outcome) -> StepReport:
    step = outcome.step
    return StepReport(group=step.group, phase=step.phase, param=step.param, duration_s=round(outcome.duration_s, 4),
                      status=outcome.status)


def step_error(outcome: Outcome) -> StepError | None:
    if outcome.ok:
        return None
    return StepError(code=outcome.error_code or "internal", kind=outcome.status, message=outcome.message)


class SchedulerService(Service[SchedulerSettings]):
    """The conf this service owns, the loop, and what they publish."""

    segment = SERVICE

    def __init__(self, settings: SchedulerSettings):
        try:
            conf = load_own_conf(settings)
        except FileError as error:
            print(f"benchbus-{SERVICE}: refusing to start, bad conf:\n{error}", file=sys.stderr)
            raise SystemExit(2) from None
        super().__init__(settings)
        for warning in conf.warnings:
            self.log.warning("%s", warning)
        self.path = settings.conf_path
        self.current = conf  # swapped whole, never edited, so the loop reads it without a lock
        self.write_lock = threading.Lock()  # one change of conf.yml at a time
        self.publish_lock = threading.Lock()  # state/config is retained: never an older conf published after a newer
        # (principal, idempotency_key) -> the reply it got: a command taken once is never sent twice
        self.taken: OrderedDict[tuple[str, str], CommandAccepted] = OrderedDict()
        self.ip = settings.ip or find_ip()
        self.active_fits: dict | None = None
        self.owners: dict | None = None  # experiment/state/ownership: vials an on-device experiment controls
        self.loop = BroadcastLoop(lambda: self.current, self.transact, on_cycle=self.cycle_done,
                                  on_immediate=self.immediate_done, on_pending=self.pending_done)
        self.watch(self.topic("state", "active", settings.calibration_service), self.on_calibration)
        self.watch(self.topic("state", "ownership", settings.experiment_service), self.on_ownership)

    def on_start(self) -> None:
        if self.settings.start_paused:
            self.loop.pause()
        self.publish_config()
        self.loop.start()

    def stop(self) -> None:
        """The broadcast loop ends first, so no step is sent on a closing connection."""
        self.loop.stop()
        super().stop()

    # -- steps -----------------------------------------------------------------------------------------------------

    def transact(self, step: Step) -> Outcome:
        request = {"param": step.param, "type": step.type, "values": list(step.values),
                   "fields_out": step.fields_out, "fields_in": step.fields_in}
        try:
            reply = self.call(self.settings.samd_service, "transact", request, self.settings.transact_timeout_s)
        except CallTimeout as error:
            kind = NO_REPLY if error.detail and "command" in error.detail else "timeout"
            return Outcome(step, False, 0.0, error_code="timeout", error_kind=kind, message=error.message)
        except BusError as error:
            detail = error.detail if isinstance(error.detail, dict) else {}
            return Outcome(step, False, 0.0, error_code=error.code, error_kind=str(detail.get("kind") or error.code),
                           message=error.message)
        return Outcome(step, True, 0.0, reply_kind=reply.get("kind"),
                       reply_values=[str(v) for v in reply.get("values") or []],
                       attempts=reply.get("attempts"), duration_ms=reply.get("duration_ms"))

    # -- what the loop reports -------------------------------------------------------------------------------------

    def cycle_done(self, report: CycleReport) -> None:
        if report.overrun_s > 0:
            steps = [step_report(o) for o in report.outcomes]
            slowest = sorted(steps, key=lambda s: s.duration_s, reverse=True)[:SLOWEST_SHOWN]
            self.emit("overrun", Overrun(cycle=report.cycle, cycle_s=round(report.duration_s, 4),
                                             broadcast_timing=report.broadcast_timing,
                                             overrun_s=round(report.overrun_s, 4), steps=steps, slowest=slowest))
        self.emit("broadcast", self.broadcast(report))
        self.track_health(report.outcomes)

    def broadcast(self, report: CycleReport) -> Broadcast:
        data: dict[str, list[str]] = {}
        status: dict[str, str] = {}
        errors: dict[str, str] = {}
        by_group: dict[str, list[Outcome]] = {}
        for outcome in report.outcomes:
            if outcome.step.phase != "immediate":
                by_group.setdefault(outcome.step.group, []).append(outcome)
        for name in report.recurring:
            outcomes = by_group.get(name)
            if not outcomes:
                continue  # dropped from the conf mid-cycle, or the cycle was cut short by a stop
            status[name], message = group_status(outcomes)
            if message:
                errors[name] = message
            main = next(o for o in outcomes if o.step.phase == "main")
            if main.ok and main.reply_kind == "data":
                data[name] = main.reply_values
        calibrated, fit_names = calibration.apply(self.active_fits, data)
        return Broadcast(data=data, config=report.conf.experimental_params_json(), ip=self.ip,
                         timestamp=time.time(), status=status, errors=errors, cycle=report.cycle,
                         cycle_s=round(report.duration_s, 4), broadcast_timing=report.broadcast_timing,
                         calibrated=calibrated, calibration=fit_names)

    def track_health(self, outcomes: list[Outcome]) -> None:
        sent = [o for o in outcomes if o.step.param != conffile.WAIT]
        if sent and all(o.status == NO_REPLY for o in sent):
            self.degraded(f"{self.settings.samd_service} does not answer transact")
        elif sent and self.state == "degraded":
            self.ready()

    def immediate_done(self, command: Immediate, outcome: Outcome) -> None:
        self.emit("command_result", self.result(command.command_id, command.param, command.client, outcome,
                                                    list(command.values)))

    def pending_done(self, pending: Pending, outcome: Outcome | None) -> None:
        if outcome is None:
            result = CommandResult(command_id=pending.command_id, param=pending.param, client=pending.client,
                                   outcome="stored")
        else:
            result = self.result(pending.command_id, pending.param, pending.client, outcome, list(outcome.step.values))
        self.emit("command_result", result)

    @staticmethod
    def result(command_id: str, param: str, client: str | None, outcome: Outcome, values: list[str]) -> CommandResult:
        return CommandResult(command_id=command_id, param=param, client=client,
                             outcome="applied" if outcome.ok else "failed", values=values,
                             reply_kind=outcome.reply_kind, reply_values=outcome.reply_values,
                             error=step_error(outcome), attempts=outcome.attempts, duration_ms=outcome.duration_ms)

    # -- the conf --------------------------------------------------------------------------------------------------

    def publish_config(self) -> None:
        with self.publish_lock:
            conf = self.current
            self.set_state("config", ConfigState(experimental_params=conf.experimental_params_json(),
                                                     broadcast_timing=conf.model.broadcast_timing,
                                                     num_sleeves=conf.model.num_sleeves, source=conf.source,
                                                     paused=self.loop.paused))

    def store(self, new: conffile.Conf, text: str) -> None:
        """Persist, then run: the loop never runs a conf that is not on disk."""
        conffile.save_atomic(self.path, text)
        self.current = new

    @handler("command")
    def command(self, request: CommandRequest, ctx: RequestContext) -> CommandAccepted:
        command_id = uuid.uuid4().hex[:12]
        # scoped by the broker-proven principal, not the session: a restarted caller is a new session of the same one
        key = None if request.idempotency_key is None else (ctx.principal, request.idempotency_key)
        with self.write_lock:
            first = self.taken.get(key) if key is not None else None
            if first is not None:
                return first.model_copy(update={"repeated": True})
            new = self.merged(request, ctx)
            entry = new.params[request.param]
            applies = "next_boundary" if request.immediate else "next_cycle" if entry.recurring else "not_sent"
            accepted = CommandAccepted(command_id=command_id, param=request.param, value=entry.value,
                                       immediate=bool(request.immediate), applies=applies)
            if request.immediate:
                # queued before the fsync (~10 ms here, more on an SD card) so the board hears it at once;
                # its values are fixed by the merge, and event/command_result reports what the board did
                self.loop.submit(Immediate(command_id, request.param, tuple(conffile.values_of(entry.value)),
                                           entry.fields_expected_outgoing, entry.fields_expected_incoming,
                                           ctx.client))
                self.remember(key, accepted)  # sent: a repeat arriving during the fsync must not send it again
            try:
                self.store(new, conffile.dump(new.data))
            except OSError as error:
                sent = " (the immediate command is still sent; see event/command_result)" if request.immediate else ""
                raise BusError("internal", f"conf.yml could not be written: {error}{sent}",
                               {"path": str(self.path)}) from None
            self.remember(key, accepted)
        self.publish_config()
        if applies == "next_cycle":
            self.loop.expect(Pending(command_id, request.param, ctx.client))
        return accepted

    def remember(self, key: tuple[str, str] | None, accepted: CommandAccepted) -> None:
        """Called under write_lock; the oldest keys go first."""
        if key is None:
            return
        self.taken[key] = accepted
        while len(self.taken) > KEYS_KEPT:
            self.taken.popitem(last=False)

    def merged(self, request: CommandRequest, ctx: RequestContext) -> conffile.Conf:
        """The conf with the command merged in, or the refusal (an experiment owns the vial, a bad value)."""
        current = self.current.params.get(request.param)
        refused = ownership.refusal(self.owners, ctx.client, request.param, request.value,
                                    current.value if current is not None else None)
        if refused is not None:
            raise BusError("conflict", refused[0], refused[1])
        try:
            return conffile.apply_command(self.current, request.param, request.value, request.recurring,
                                          request.fields_expected_outgoing, request.fields_expected_incoming,
                                          value_given="value" in request.model_fields_set,
                                          max_pump_s=self.settings.max_pump_s)
        except conffile.CommandRefused as refusal:
            raise BusError(refusal.code, refusal.message, {"field": refusal.field}) from None

    @handler("get_config")
    def get_config(self, _request: Empty, _ctx: RequestContext) -> GetConfigResult:
        conf = self.current
        shown = dict(conf.data)
        shown["experimental_params"] = conf.experimental_params_json()
        shown["evolver_ip"] = self.ip
        shown = json.loads(json.dumps(shown, default=str))  # YAML may hold dates; JSON gets their text
        return GetConfigResult(config=shown, source=conf.source, path=str(self.path), paused=self.loop.paused,
                               warnings=list(conf.warnings), alternates=self.alternates())

    def alternates(self) -> list[str]:
        folder = self.settings.alternates_dir
        return sorted(p.stem for p in folder.glob("*.yml")) if folder.is_dir() else []

    @handler("load_conf")
    def load_conf(self, request: LoadConfRequest, _ctx: RequestContext) -> LoadConfResult:
        if request.alternate is not None:
            if request.alternate not in self.alternates():
                raise BusError("not_found", f"no alternate conf '{request.alternate}'; known: "
                               f"{', '.join(self.alternates()) or 'none'}", {"field": "alternate"})
            path = self.settings.alternates_dir / f"{request.alternate}.yml"
            text, source = None, str(path)
        else:
            text, source = request.text, "load_conf"
        try:
            if text is None:  # LoadConfRequest holds exactly one of text and alternate
                text = conffile.read_text(path)
            new = conffile.parse_text(text, source, self.settings.max_pump_s)
        except FileError as error:
            raise BusError("invalid_request", str(error), {"errors": error.problems}) from None
        with self.write_lock:
            self.store(new, text)  # the user's text as given: comments and layout kept
        for pending in self.loop.drop_pending():
            self.emit("command_result", CommandResult(command_id=pending.command_id, param=pending.param,
                                                          client=pending.client, outcome="dropped"))
        self.publish_config()
        self.loop.restart_timing()
        self.log.info("conf replaced from %s", source)
        return LoadConfResult(source=source, recurring=[n for n, p in new.params.items() if p.recurring],
                              broadcast_timing=new.model.broadcast_timing, warnings=list(new.warnings))

    @handler("pause")
    def pause(self, _request: Empty, _ctx: RequestContext) -> PauseResult:
        self.loop.pause()
        self.publish_config()
        return PauseResult(paused=True)

    @handler("resume")
    def resume(self, _request: Empty, _ctx: RequestContext) -> PauseResult:
        self.loop.resume()
        self.publish_config()
        return PauseResult(paused=False)

    def on_calibration(self, _topic: str, data: Any) -> None:
        self.active_fits = data if isinstance(data, dict) else None

    def on_ownership(self, _topic: str, data: Any) -> None:
        self.owners = data if isinstance(data, dict) else None


def load_own_conf(settings: SchedulerSettings) -> conffile.Conf:
    """The conf at start: created from the default on first start; a bad file stops us with file, line, field."""
    path = settings.conf_path
    path.parent.mkdir(parents=True, exist_ok=True)
    conffile.remove_stale_temps(path.parent)
    if not path.exists():
        if not settings.default_conf.is_file():
            raise FileError(str(path), [{"field": None, "line": None, "message": "missing, and so is the default "
                                         f"conf to copy ({settings.default_conf}): set conf_path or default_conf"}])
        shutil.copyfile(settings.default_conf, path)
    return conffile.load(path, settings.max_pump_s)


def main(argv: list[str] | None = None) -> int:
    return run_service(SchedulerService, argv)


if __name__ == "__main__":
    sys.exit(main())
