"""`benchbus-experiment`: experiments that run on the device (the only place that subscribes and publishes).

On every `scheduler/event/broadcast` each running experiment's vials decide (controller.py, the DPU's arithmetic);
the pump actions of one broadcast go to the scheduler as ONE `pump` command (a batch), temperature and stir
setpoints as `temp`/`stir` commands whose other vials are "NaN" (kept).

Survival: the state file is written before every action. A batch is stored as `sending` before its command is
published and `sent` once the scheduler replied. After a kill -9 a `sending` batch is in doubt: the scheduler's
retained `state/config` tells, because its stored pump value is exactly the last pump command it took and every
batch is made to differ from the value stored before it. Equal: it was taken (never re-sent, no double dose);
different: it is sent again with the same idempotency key (the batch id). The retained value alone cannot tell a
command still in flight (the scheduler took it during its fsync, after we read the value) from one never sent; the
key can: the scheduler answers a key it has taken with the first reply (`repeated`) and sends nothing. The value
still decides when the scheduler restarted too (its keys are kept in memory).
"""
from __future__ import annotations

import sys
import threading
import time
import uuid
from typing import Any

from benchbus import BusError, CallTimeout, RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler
from benchbus_schemas.calibration_math import temperature_setpoint
from benchbus_schemas.envelope import Empty
from benchbus_schemas.experiment import (
    SERVICE,
    Chemostat,
    Decision,
    DoseOutcome,
    EditRequest,
    ExperimentDefinition,
    ExperimentsState,
    GrowthCurve,
    GrowthRate,
    ListResult,
    NameRequest,
    Ownership,
    StartRequest,
    Status,
    VialGroup,
    VialOwner,
    VialStatus,
)

from . import controller, store
from .settings import ExperimentSettings

VIALS = 16
PUMPS = 48
KEEP = "--"  # a pump field the board leaves alone
NAN = "NaN"  # a list element the scheduler keeps
ACTIVE = ("scheduled", "running", "paused")
STATE_FILE = "state.json"
EARLY_RESULTS_KEPT = 64
RESULT_WAIT_S = 10.0  # a pump command's result not seen by then is taken as applied (for freshness only)


class ExperimentService(Service[ExperimentSettings]):
    """Every experiment, its vials' controllers and the batches in flight; one lock around all of it."""

    segment = SERVICE

    def __init__(self, settings: ExperimentSettings):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(settings)
        # who the scheduler will see calling (RequestContext.client): only we may change the vials we own
        self._caller = f"{self.bus.principal}/{self.bus.name}"
        self.path = settings.data_dir / STATE_FILE
        self.lock = threading.RLock()
        self.calibration: dict[str, Any] = {}
        self.scheduler_pump: list[str] | None = None  # the pump value the scheduler last stored
        self.scheduler_config_seen = False
        self.early_results: dict[str, dict] = {}
        # vial -> (sent at, applied at or None): a decision only uses ODs read after the vial's last dose was
        # applied (on a time-scaled rig a broadcast can read a vial while its dose is still running)
        self.dosing: dict[int, tuple[float, float | None]] = {}
        self.last_saved = 0.0
        loaded = store.load(self.path)
        self.data: dict[str, Any] = loaded or {"schema": 1, "experiments": {}, "batches": [], "seq": 0, "log": []}
        scheduler = settings.scheduler_service
        self.watch(self.topic("state", "active", settings.calibration_service), self.on_calibration)
        self.watch(self.topic("state", "config", scheduler), self.on_scheduler_config)
        self.watch(self.topic("event", "command_result", scheduler), self.on_command_result)
        self.watch(self.topic("event", "broadcast", scheduler), self.on_broadcast)

    def on_start(self) -> None:
        with self.lock:
            self.publish()

    # -- persistence -----------------------------------------------------------------------------------------------

    def save(self) -> None:
        store.save(self.path, self.data)
        self.last_saved = time.monotonic()

    def save_if_due(self) -> None:
        with self.lock:
            if time.monotonic() - self.last_saved >= self.settings.persist_interval_s:
                self.save()

    # -- what the service publishes ----------------------------------------------------------------------------------

    def definition(self, name: str) -> ExperimentDefinition:
        return ExperimentDefinition.model_validate(self.data["experiments"][name]["definition"])

    def elapsed_h(self, record: dict, now: float) -> float:
        started = record.get("started_at")
        if started is None:
            return 0.0
        until = record.get("ended_at") or now
        return max(0.0, (until - started) * self.settings.time_scale / 3600.0)

    def status(self, name: str) -> Status:
        record = self.data["experiments"][name]
        definition = self.definition(name)
        vials = []
        for group in definition.groups:
            for vial in group.vials:
                state = controller.VialState.from_json(record["vials"].get(str(vial), {}))
                elapsed = self.elapsed_h(record, time.time())
                recent = sum(p[1] for p in state.pumped if elapsed - p[0] < 1.0)
                vials.append(VialStatus(vial=vial, group=group.name, mode=group.control.mode, od=state.median,
                                        od_set=state.od_set if group.control.mode == "turbidostat" else None,
                                        growth_rate_per_h=state.growth_rate_per_h, doses=state.doses,
                                        influx_s_last_h=round(recent, 2)))
        pending = sum(1 for b in self.data["batches"] if b["phase"] == "sending"
                      and any(d["experiment"] == name for d in b["decisions"]))
        return Status(name=name, version=definition.version, status=record["status"],
                      started_at=record.get("started_at"), elapsed_h=round(self.elapsed_h(record, time.time()), 6),
                      vials=vials, definition=definition, pending_decisions=pending)

    def publish(self) -> None:
        owners: dict[str, VialOwner] = {}
        for name, record in self.data["experiments"].items():
            if record["status"] in ACTIVE:
                definition = self.definition(name)
                for vial in definition.vials():
                    owners[str(vial)] = VialOwner(experiment=name, version=definition.version,
                                                  status=record["status"])
        self.set_state("ownership", Ownership(vials=owners, principal=self._caller))
        statuses = [self.status(name) for name in self.data["experiments"]]
        self.set_state("experiments", ExperimentsState(experiments=statuses))

    # -- commands ------------------------------------------------------------------------------------------------

    def owner_of(self, vial: int, besides: str | None = None) -> str | None:
        for name, record in self.data["experiments"].items():
            if name != besides and record["status"] in ACTIVE and vial in self.definition(name).vials():
                return name
        return None

    def check_vials_free(self, definition: ExperimentDefinition, besides: str | None = None) -> None:
        for vial in definition.vials():
            owner = self.owner_of(vial, besides)
            if owner is not None:
                raise BusError("conflict", f"vial {vial} is run by experiment '{owner}'",
                               {"field": "definition.groups", "vial": vial, "experiment": owner})

    @handler("start")
    def start_experiment(self, request: StartRequest, _ctx: RequestContext) -> Status:
        definition = request.definition
        with self.lock:
            existing = self.data["experiments"].get(definition.name)
            if existing is not None and existing["status"] in ACTIVE:
                raise BusError("conflict", f"experiment '{definition.name}' is already {existing['status']}",
                               {"field": "definition.name"})
            self.check_vials_free(definition)
            now = time.time()
            begins = definition.start_at.timestamp() if definition.start_at is not None else now
            record = {"definition": definition.model_dump(mode="json"), "vials": {},
                      "status": "running" if begins <= now else "scheduled",
                      "started_at": begins if begins <= now else None, "begins_at": begins, "ended_at": None,
                      "setpoints_sent": False}
            self.data["experiments"][definition.name] = record
            self.save()
            self.publish()
            return self.status(definition.name)

    def _require_no_doubt(self) -> None:
        """A command that sends pumps waits until no batch is in doubt: a newer stored value would hide the answer."""
        self._resolve_in_doubt()
        if any(b["phase"] == "sending" for b in self.data["batches"]):
            raise BusError("unavailable", "a pump command to the scheduler is still unanswered; try again when the "
                                          "scheduler answers")

    def _record(self, name: str) -> dict:
        record = self.data["experiments"].get(name)
        if record is None:
            raise BusError("not_found", f"no experiment '{name}'", {"field": "name"})
        return record

    @handler("pause")
    def pause_experiment(self, request: NameRequest, _ctx: RequestContext) -> Status:
        with self.lock:
            record = self._record(request.name)
            self._require_no_doubt()
            if record["status"] != "running":
                raise BusError("conflict", f"experiment '{request.name}' is {record['status']}, not running",
                               {"field": "name"})
            record["status"] = "paused"
            self._stop_pumps(request.name, "paused")
            return self.status(request.name)

    @handler("resume")
    def resume_experiment(self, request: NameRequest, _ctx: RequestContext) -> Status:
        with self.lock:
            record = self._record(request.name)
            if record["status"] != "paused":
                raise BusError("conflict", f"experiment '{request.name}' is {record['status']}, not paused",
                               {"field": "name"})
            record["status"] = "running"
            record["setpoints_sent"] = False
            for state in record["vials"].values():
                state["chemo_period_s"] = 0.0  # its programs were stopped: send them again
            self.save()
            self.publish()
            return self.status(request.name)

    @handler("stop")
    def stop_experiment(self, request: NameRequest, _ctx: RequestContext) -> Status:
        with self.lock:
            record = self._record(request.name)
            self._require_no_doubt()
            if record["status"] not in ACTIVE:
                raise BusError("conflict", f"experiment '{request.name}' is already {record['status']}",
                               {"field": "name"})
            record["status"] = "stopped"
            record["ended_at"] = time.time()
            self._stop_pumps(request.name, "stopped")
            return self.status(request.name)

    @handler("edit")
    def edit_experiment(self, request: EditRequest, _ctx: RequestContext) -> Status:
        with self.lock:
            record = self._record(request.definition.name)
            self._require_no_doubt()
            if record["status"] not in ACTIVE:
                raise BusError("conflict", f"experiment '{request.definition.name}' is {record['status']}",
                               {"field": "definition.name"})
            old = self.definition(request.definition.name)
            self.check_vials_free(request.definition, besides=old.name)
            definition = request.definition.model_copy(update={"version": old.version + 1})
            # a vial leaving the experiment, or leaving chemostat mode, must not keep its pump program running
            stopped = [v for v in old.vials()
                       if _mode_of(old, v) == "chemostat" and _mode_of(definition, v) != "chemostat"]
            record["definition"] = definition.model_dump(mode="json")
            record["setpoints_sent"] = False
            for vial in old.vials():
                if vial not in definition.vials() or _mode_of(old, vial) != _mode_of(definition, vial):
                    record["vials"].pop(str(vial), None)  # a new controller state for a new mode
            if stopped:
                self._stop_pumps(definition.name, "edited", stopped)
            self.save()
            self.publish()
            return self.status(definition.name)

    @handler("status")
    def get_status(self, request: NameRequest, _ctx: RequestContext) -> Status:
        with self.lock:
            self._record(request.name)
            return self.status(request.name)

    @handler("list")
    def list_experiments(self, _request: Empty, _ctx: RequestContext) -> ListResult:
        with self.lock:
            return ListResult(experiments=[self.status(n) for n in self.data["experiments"]])

    def _stop_pumps(self, name: str, why: str, vials: list[int] | None = None) -> None:
        """Stop the pump programs of the experiment's vials (a running chemostat) as one batch, then publish."""
        definition = self.definition(name)
        pump = [KEEP] * PUMPS
        decisions = []
        for vial in definition.vials() if vials is None else vials:
            pump[vial] = pump[vial + 16] = "0"
            decisions.append(self._decision(name, definition.version, vial, "stop",
                                            controller.Action("chemostat_stop", f"experiment {why}"), None))
        self._send_batch(pump, decisions)
        self.publish()

    # -- inputs from other services --------------------------------------------------------------------------------

    def on_calibration(self, _topic: str, data: Any) -> None:
        by_type = data.get("by_type") if isinstance(data, dict) else None
        with self.lock:
            self.calibration = by_type if isinstance(by_type, dict) else {}

    def on_scheduler_config(self, _topic: str, data: Any) -> None:
        pump = ((data or {}).get("experimental_params") or {}).get("pump") if isinstance(data, dict) else None
        value = pump.get("value") if isinstance(pump, dict) else None
        with self.lock:
            self.scheduler_pump = [str(v) for v in value] if isinstance(value, list) else None
            self.scheduler_config_seen = True

    def on_command_result(self, _topic: str, data: Any) -> None:
        if not isinstance(data, dict) or data.get("param") != "pump":
            return
        with self.lock:
            batch = next((b for b in self.data["batches"] if b.get("command_id") == data.get("command_id")), None)
            if batch is None:
                # a result before its reply (or another client's): kept briefly, bounded
                self.early_results[str(data.get("command_id"))] = data
                while len(self.early_results) > EARLY_RESULTS_KEPT:
                    del self.early_results[next(iter(self.early_results))]
                return
            self._settle(batch, data)

    def _settle(self, batch: dict, result: dict) -> None:
        outcome = result.get("outcome")
        if outcome not in ("applied", "failed") or batch["phase"] in ("applied", "failed"):
            return
        batch["phase"] = outcome
        message = ((result.get("error") or {}).get("message")) or ""
        for decision in batch["decisions"]:
            sent_at = self.dosing.get(decision["vial"], (time.time(), None))[0]
            self.dosing[decision["vial"]] = (sent_at, time.time())
        for decision in batch["decisions"]:
            self._log_outcome(decision, outcome)
            self.emit("dose", DoseOutcome(decision_id=decision["decision_id"], experiment=decision["experiment"],
                                              vial=decision["vial"], outcome=outcome,
                                              command_id=batch.get("command_id"), message=message))
        self._trim_batches()
        self.save()

    # -- the broadcast ---------------------------------------------------------------------------------------------

    def on_broadcast(self, _topic: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        with self.lock:
            self._resolve_in_doubt()
            if any(b["phase"] == "sending" for b in self.data["batches"]):
                return  # the scheduler has not answered a batch: no new one until it has (one in doubt at most)
            now = float(data.get("timestamp") or time.time())
            ods = (data.get("calibrated") or {}).get("od") or []
            pump = [KEEP] * PUMPS
            decisions: list[dict] = []
            changed = False
            for name, record in self.data["experiments"].items():
                changed |= self._advance_status(name, record, now)
                if record["status"] != "running":
                    continue
                changed |= self._ensure_setpoints(name, record, data)
                decisions += self._decide(name, record, ods, now, data, pump)
            actions = [d for d in decisions if d["influx"] is not None]
            if actions:
                self._send_batch(pump, actions)
            elif changed or decisions:
                self.save()
                self.publish()
            else:
                self.save_if_due()
            for decision in decisions:
                if decision["influx"] is None:
                    self.emit("decision", self._decision_event(decision))

    def _advance_status(self, name: str, record: dict, now: float) -> bool:
        if record["status"] == "scheduled" and now >= record["begins_at"]:
            record["status"], record["started_at"] = "running", record["begins_at"]
            return True
        duration = record["definition"].get("duration_h")
        if record["status"] == "running" and duration is not None and self.elapsed_h(record, now) >= duration:
            record["status"], record["ended_at"] = "finished", now
            self._stop_pumps(name, "finished")
            return True
        return False

    def _fresh(self, vial: int, broadcast: dict) -> bool:
        """Was this broadcast's OD of the vial read after its last dose was applied?"""
        dose = self.dosing.get(vial)
        if dose is None:
            return True
        sent_at, applied_at = dose
        if applied_at is None and time.time() - sent_at > RESULT_WAIT_S:
            applied_at = sent_at + RESULT_WAIT_S  # the result was lost; the dose is long done
        cycle_started = float(broadcast.get("timestamp") or 0) - float(broadcast.get("cycle_s") or 0)
        if applied_at is None or applied_at > cycle_started:
            return False
        del self.dosing[vial]
        return True

    def _decide(self, name: str, record: dict, ods: list, now: float, broadcast: dict, pump: list[str]) -> list[dict]:
        definition = self.definition(name)
        elapsed = self.elapsed_h(record, now)
        decisions = []
        for group in definition.groups:
            for vial in group.vials:
                od = ods[vial] if vial < len(ods) else None
                if not isinstance(od, (int, float)):
                    continue  # no calibrated OD this cycle (no fit, or out of its range)
                if not self._fresh(vial, broadcast):
                    continue  # read before (or during) its last dose
                state = controller.VialState.from_json(record["vials"].get(str(vial), {}))
                actions, growth = self._control(group, state, float(od), elapsed, definition, vial)
                record["vials"][str(vial)] = state.to_json()
                if growth is not None:
                    self.emit("growth_rate", GrowthRate(experiment=name, vial=vial, mode=group.control.mode,
                                                            rate_per_h=round(growth.rate_per_h, 6),
                                                            start_h=growth.start_h, end_h=growth.end_h,
                                                            points=growth.points))
                for action in actions:
                    decision = self._decision(name, definition.version, vial, group.control.mode, action, broadcast,
                                              elapsed)
                    if action.influx is not None:
                        pump[vial], pump[vial + 16] = action.influx, action.efflux or KEEP
                    decisions.append(decision)
        return decisions

    def _control(self, group: VialGroup, state: controller.VialState, od: float, elapsed: float,
                 definition: ExperimentDefinition, vial: int) -> tuple[list[controller.Action], Any]:
        mode = group.control
        if isinstance(mode, GrowthCurve):
            return controller.growth_curve(state, od, elapsed, mode, definition.growth_window_h)
        rates = self._rates(vial)
        if rates is None:
            controller.observe(state, od, elapsed, mode.od_values_to_average)
            return [], None
        if isinstance(mode, Chemostat):
            return controller.chemostat(state, od, elapsed, mode, definition.volume_ml, rates, definition.safety)
        return controller.turbidostat(state, od, elapsed, mode, definition.volume_ml, rates, definition.safety)

    def _rates(self, vial: int) -> controller.Rates | None:
        """The vial's influx and efflux rates from the active pump calibration (None: no usable calibration)."""
        fit = self.calibration.get("pump") or {}
        coefficients = fit.get("coefficients") or []
        try:
            influx, efflux = float(coefficients[vial]), float(coefficients[vial + 16])
        except (IndexError, TypeError, ValueError):
            return None
        return controller.Rates(influx, efflux) if influx > 0 and efflux > 0 else None

    def _decision(self, name: str, version: int, vial: int, mode: str, action: controller.Action,
                  broadcast: dict | None, elapsed: float = 0.0) -> dict:
        self.data["seq"] += 1
        return {"decision_id": f"{name}-{self.data['seq']}", "experiment": name, "version": version, "vial": vial,
                "mode": mode, "action": action.action, "elapsed_h": round(elapsed, 6), "od": action.od,
                "od_set": action.od_set, "influx": action.influx, "efflux": action.efflux,
                "influx_s": action.influx_s, "efflux_s": action.efflux_s, "period_s": action.period_s,
                "reason": action.reason, "broadcast_cycle": (broadcast or {}).get("cycle"),
                "broadcast_timestamp": (broadcast or {}).get("timestamp")}

    @staticmethod
    def _decision_event(decision: dict) -> Decision:
        fields = {k: v for k, v in decision.items() if k not in ("influx", "efflux")}
        return Decision.model_validate(fields)

    # -- setpoints -------------------------------------------------------------------------------------------------

    def _ensure_setpoints(self, name: str, record: dict, broadcast: dict) -> bool:
        """Temperature and stir of the experiment's vials, sent when the scheduler's conf differs (as the DPU)."""
        config = broadcast.get("config") or {}
        definition = self.definition(name)
        temps: list[str] = [NAN] * VIALS
        stirs: list[str] = [NAN] * VIALS
        linear = self.calibration.get("temperature") or {}
        for group in definition.groups:
            for vial in group.vials:
                if group.temp_c is not None and vial < len(linear.get("coefficients") or []):
                    raw = temperature_setpoint(group.temp_c, linear["coefficients"][vial])
                    if raw.ok:
                        temps[vial] = str(int(raw.value))
                if group.stir is not None:
                    stirs[vial] = str(group.stir)
        sent = False
        for param, wanted in (("temp", temps), ("stir", stirs)):
            current = ((config.get(param) or {}).get("value")) or []
            differs = [v for v, w in enumerate(wanted) if w != NAN and (v >= len(current) or str(current[v]) != w)]
            if differs:
                sent |= self._send_setpoints(name, definition.version, param, wanted, differs)
        return sent

    def _send_setpoints(self, name: str, version: int, param: str, values: list[str], vials: list[int]) -> bool:
        try:
            self.call(self.settings.scheduler_service, "command", {"param": param, "value": values},
                          self.settings.command_timeout_s)
        except (BusError, CallTimeout) as error:
            self.log.warning("%s setpoints of %s not taken: %s", param, name, error)
            return False
        for vial in vials:
            decision = self._decision(name, version, vial, "setpoints",
                                      controller.Action("setpoints", f"{param} set to {values[vial]}"), None)
            self.emit("decision", self._decision_event(decision))
        return True

    # -- batches: the pump commands and their survival -------------------------------------------------------------

    def _send_batch(self, pump: list[str], decisions: list[dict]) -> None:
        """Store the batch as `sending` (with the vials' new state), then publish it."""
        if self.scheduler_pump is not None and pump == self.scheduler_pump:
            pump = self._distinct(pump)
            for decision in decisions:
                if decision["influx"] is not None:
                    decision["influx"] = pump[decision["vial"]]
        batch = {"batch_id": uuid.uuid4().hex[:12], "phase": "sending", "pump": pump, "decisions": decisions,
                 "command_id": None, "created": time.time(), "attempts": 0}
        self.data["batches"].append(batch)
        for decision in decisions:
            self.data["log"].append({"decision_id": decision["decision_id"], "vial": decision["vial"],
                                     "action": decision["action"], "influx": decision["influx"],
                                     "efflux": decision["efflux"], "outcome": "decided"})
        self.data["log"] = self.data["log"][-self.settings.log_size:]
        self.save()
        for decision in decisions:
            self.emit("decision", self._decision_event(decision))
        self._publish_batch(batch)
        self.publish()

    @staticmethod
    def _distinct(pump: list[str]) -> list[str]:
        """The same list as the one the scheduler holds would be undecidable after a crash: lengthen its first
        influx by 10 ms (7 uL) so that the stored value tells which batch was taken."""
        out = list(pump)
        for index in range(VIALS):
            if out[index] not in (KEEP, "0"):
                seconds, _, period = out[index].partition("|")
                out[index] = f"{float(seconds) + 0.01:.2f}" + (f"|{period}" if period else "")
                return out
        return out

    def _publish_batch(self, batch: dict) -> None:
        batch["attempts"] += 1
        for decision in batch["decisions"]:
            self.dosing[decision["vial"]] = (time.time(), None)
        # the batch's id is its idempotency key: a batch in doubt that the scheduler took while we were down is
        # answered `repeated` when we send it again, not sent twice
        request = {"param": "pump", "value": batch["pump"], "immediate": True, "recurring": False,
                   "idempotency_key": batch["batch_id"]}
        try:
            reply = self.call(self.settings.scheduler_service, "command", request, self.settings.command_timeout_s)
        except CallTimeout as error:
            self.log.warning("pump batch %s: %s; in doubt until the scheduler's config tells", batch["batch_id"],
                                 error)
            return
        except BusError as error:
            batch["phase"] = "failed"
            for decision in batch["decisions"]:
                self.dosing.pop(decision["vial"], None)  # nothing was sent: the next reading is fresh
                self._log_outcome(decision, "refused")
                self.emit("dose", DoseOutcome(decision_id=decision["decision_id"],
                                                  experiment=decision["experiment"], vial=decision["vial"],
                                                  outcome="refused", message=error.message))
            self.save()
            return
        batch["phase"], batch["command_id"] = "sent", reply.get("command_id")
        self.scheduler_pump = list(batch["pump"])
        self._mark_sent(batch, "sent" if batch["attempts"] == 1 or reply.get("repeated") else "resent")
        early = self.early_results.pop(str(batch["command_id"]), None)
        if early is not None:
            self._settle(batch, early)

    def _mark_sent(self, batch: dict, outcome: str) -> None:
        for decision in batch["decisions"]:
            self._log_outcome(decision, outcome)
            self.emit("dose", DoseOutcome(decision_id=decision["decision_id"], experiment=decision["experiment"],
                                              vial=decision["vial"], outcome=outcome,
                                              command_id=batch.get("command_id")))
        self._trim_batches()
        self.save()

    def _log_outcome(self, decision: dict, outcome: str) -> None:
        for entry in reversed(self.data["log"]):
            if entry["decision_id"] == decision["decision_id"]:
                entry["outcome"] = outcome
                return

    def _trim_batches(self) -> None:
        settled = [b for b in self.data["batches"] if b["phase"] != "sending"]
        keep = {id(b) for b in settled[-50:]}
        self.data["batches"] = [b for b in self.data["batches"] if b["phase"] == "sending" or id(b) in keep]

    def _resolve_in_doubt(self) -> None:
        """Batches stored as `sending` whose reply never came (a kill, a timeout): the scheduler's stored pump value
        says whether it took them. No batch is made while one is in doubt (broadcasts wait, commands are refused),
        so there is at most one."""
        doubtful = [b for b in self.data["batches"] if b["phase"] == "sending"]
        if not doubtful or not self.scheduler_config_seen:
            return
        newest_taken = doubtful[-1]["pump"] == self.scheduler_pump
        for batch in doubtful:
            if batch is doubtful[-1] and newest_taken:
                batch["phase"] = "sent"
                for decision in batch["decisions"]:
                    # taken before we died: applied by now, its result went by while we were away
                    self.dosing[decision["vial"]] = (time.time(), time.time())
                self._mark_sent(batch, "sent")
            else:
                self._publish_batch(batch)


def _mode_of(definition: ExperimentDefinition, vial: int) -> str | None:
    return next((g.control.mode for g in definition.groups if vial in g.vials), None)


def main(argv: list[str] | None = None) -> int:
    return run_service(ExperimentService, argv)


if __name__ == "__main__":
    sys.exit(main())
