"""Protocols and runs: what the runner keeps and decides. No MQTT and no HTTP here (service.py and http.py are the
doors); `publish(kind, name, payload)` tells the bus.

Data folder:

    protocols/<id>/main.py, labware/*.json, protocol.json     (protocol.json: file name, time, analysis)
    runs/<id>.json                                            (status, errors, progress)
    runs/<id>.commands.jsonl                                  (the run log: one line per command change)

Every .json file is written whole (a temporary file, fsync, rename): a kill in the middle leaves the last good one.
The run log is appended to, a line per step (fsync'd), so a step costs the same at the ten-thousandth as at the
first; a line cut by a kill is the last one, and it is dropped when the log is read. A run that was active when the
runner died is failed at the next start with that reason.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from benchbus import BusClient, BusError, CallTimeout
from benchbus.settings import BrokerSettings

from .child import Child, ChildError
from .settings import RunnerSettings
import contextlib

log = logging.getLogger("benchbus.runner")

ACTIVE = ("running", "paused", "stop-requested", "finishing")
TERMINAL = ("stopped", "succeeded", "failed")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_. -]{1,128}$")

Publish = Callable[[str, str, dict[str, Any]], None]


class Refused(Exception):
    """A request the runner does not carry out: `code` is the bus error code (HTTP maps it to a status)."""

    def __init__(self, code: str, message: str, detail: Any = None):
        super().__init__(message)
        self.code, self.message, self.detail = code, message, detail


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(temporary, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def append_line(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_command_log(path: Path) -> list[dict[str, Any]]:
    """The commands in the order they began, each as its last line left it; a cut last line is dropped."""
    commands: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("%s line %d is cut (a kill while it was written); dropped", path, number)
            continue
        commands[record["id"]] = record  # a later line of the same command replaces it, in its first place
    return list(commands.values())


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class RunManager:
    def __init__(self, settings: RunnerSettings, broker: BrokerSettings, device: str, bus: BusClient,
                 publish: Publish):
        self.settings, self.broker, self.device, self.bus, self.publish = settings, broker, device, bus, publish
        self.protocols_dir = settings.data_dir / "protocols"
        self.runs_dir = settings.data_dir / "runs"
        self.protocols_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.runs: dict[str, dict[str, Any]] = {}
        self.current_id: str | None = None
        self.child: Child | None = None

    # -- start-up --------------------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Load the kept runs; one that was active when the runner died is failed with that reason."""
        for path in sorted(self.runs_dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                run = json.loads(path.read_text())
            except ValueError:
                log.error("%s is not JSON; skipped", path)
                continue
            run["commands"] = self._load_commands(run)
            if run.get("status") not in TERMINAL:  # an ended run's file was saved at its end, with its last step
                self._progress_from_log(run)
            if run.get("status") in ACTIVE:
                run["status"] = "failed"
                run["completed_at"] = now_iso()
                run["errors"].append({"error_type": "RunnerRestarted", "step": run.get("current_step"),
                                      "detail": "the runner stopped while this run was active (it was killed or "
                                                "the device restarted); the run's process halted the robot"})
                self._save(run)
            run["current"] = False
            self.runs[run["id"]] = run
        if self.runs:
            last = list(self.runs.values())[-1]
            self.publish("state", "run", self.public(last))

    # -- protocols -------------------------------------------------------------------------------------------------

    def upload(self, file_name: str, source: str, labware: list[tuple[str, str]]) -> dict[str, Any]:
        if not file_name.endswith(".py") or not SAFE_NAME.match(file_name):
            raise Refused("invalid_request", f"file_name: a protocol is one .py file with a plain name, not "
                          f"{file_name!r}")
        if len(source.encode()) > self.settings.max_protocol_bytes:
            raise Refused("invalid_request", f"source: longer than {self.settings.max_protocol_bytes} bytes")
        protocol_id = new_id()
        folder = self.protocols_dir / protocol_id
        names = []
        for name, content in labware:
            if not name.endswith(".json") or not SAFE_NAME.match(name) or name in names:
                raise Refused("invalid_request", f"labware: {name!r} is not a plain, unique .json file name")
            try:
                json.loads(content)
            except ValueError as error:
                raise Refused("invalid_request", f"labware {name}: not JSON ({error})") from None
            write_text(folder / "labware" / name, content)
            names.append(name)
        write_text(folder / "main.py", source)
        (folder / "labware").mkdir(exist_ok=True)
        analysis = self.analyse_folder(folder)
        if analysis["result"] != "ok":
            self._remove(folder)
            first = (analysis.get("errors") or [{}])[0]
            where = f"line {first['line']}: " if first.get("line") else ""
            raise Refused("invalid_request", f"{file_name}: {where}{first.get('error_type', 'error')}: "
                          f"{first.get('detail', 'the analysis failed')}", {"analysis": analysis})
        info = {"id": protocol_id, "file_name": file_name, "created_at": now_iso(), "labware_files": names,
                "analysis": analysis}
        write_json(folder / "protocol.json", info)
        return info

    def analyse_folder(self, folder: Path) -> dict[str, Any]:
        """Opentrons' analysis in a child process (a protocol's module code runs there, and may hang)."""
        try:
            done = subprocess.run([sys.executable, "-m", "benchbus_runner.analyse", str(folder)], capture_output=True,
                                  text=True, timeout=self.settings.analysis_timeout_s)
        except subprocess.TimeoutExpired:
            return {"result": "not-ok", "errors": [{"error_type": "AnalysisTimeout", "detail": "the analysis did not "
                    f"finish within {self.settings.analysis_timeout_s:.0f} s (does the protocol loop forever?)"}]}
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            return {"result": "not-ok", "errors": [{"error_type": "AnalysisCrashed", "detail": f"the analysis ended "
                    f"with code {done.returncode}: {done.stderr.strip()[-500:]}"}]}

    @staticmethod
    def _remove(folder: Path) -> None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)

    def protocols(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.protocols_dir.glob("*/protocol.json"), key=lambda p: p.stat().st_mtime):
            try:
                found.append(json.loads(path.read_text()))
            except ValueError:
                log.error("%s is not JSON; skipped", path)
        return found

    def protocol(self, protocol_id: str) -> dict[str, Any]:
        path = self._protocol_folder(protocol_id) / "protocol.json"
        if not path.exists():
            raise Refused("not_found", f"protocol_id: no protocol {protocol_id!r}")
        return json.loads(path.read_text())

    def _protocol_folder(self, protocol_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", protocol_id):
            raise Refused("not_found", f"protocol_id: no protocol {protocol_id!r}")
        return self.protocols_dir / protocol_id

    def delete_protocol(self, protocol_id: str) -> None:
        self.protocol(protocol_id)
        with self.lock:
            current = self.runs.get(self.current_id or "")
            if current and current.get("protocol_id") == protocol_id and current["status"] in ACTIVE:
                raise Refused("conflict", f"protocol {protocol_id} is being run ({current['id']}); stop it first")
            self._remove(self._protocol_folder(protocol_id))

    # -- runs ------------------------------------------------------------------------------------------------------

    def public(self, run: dict[str, Any]) -> dict[str, Any]:
        """The run as the bus and the HTTP API show it (without the run log)."""
        return {k: v for k, v in run.items() if k != "commands"} | {"current": run["id"] == self.current_id}

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None:
            raise Refused("not_found", f"run_id: no run {run_id!r}")
        return run

    def create_run(self, protocol_id: str | None) -> dict[str, Any]:
        protocol = self.protocol(protocol_id) if protocol_id is not None else None
        with self.lock:
            self._refuse_when_busy()
            run: dict[str, Any] = {
                "id": new_id(), "protocol_id": protocol_id, "status": "idle", "created_at": now_iso(),
                "started_at": None, "completed_at": None, "current_step": None, "steps_done": 0,
                   "steps_total": len(protocol["analysis"]["steps"]) if protocol else None, "progress": None,
                   "paused_reason": None, "errors": [], "commands": [], "live": protocol is None}
            self.runs[run["id"]] = run
            self.current_id = run["id"]
            self._save(run)
            if protocol is None:
                self._start_child(run, "live", None)  # the engine takes the robot now: commands come one by one
        self._changed(run)
        return run

    def _refuse_when_busy(self) -> None:
        current = self.runs.get(self.current_id or "")
        if current is not None and current.get("live") and current["status"] == "idle" and self.child:
            # as the robot-server clears a current run nobody played: the new run replaces an idle live session
            self.stop(current["id"], "replaced by a new run", wait=False)  # we hold the lock its exit needs
            current = None
        if current is not None and (current["status"] in ACTIVE or (current.get("live") and self.child)):
            raise Refused("conflict", f"run {current['id']} is {current['status']}: stop it (or let it finish) "
                          "before making another")

    def play(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            run = self._current(run_id)
            if run["status"] == "paused":
                return self.resume(run_id)
            if run["status"] != "idle":
                raise Refused("conflict", f"run {run_id} is {run['status']}; only an idle run can be played")
            if run.get("live"):
                self._ask(lambda child: child.ask("resume"))  # plays the engine: queued protocol commands run
                self._set_status(run, "running")
                return run
            folder = self._protocol_folder(run["protocol_id"])
            if not (folder / "main.py").exists():
                raise Refused("not_found", f"protocol {run['protocol_id']} was deleted")
            run["started_at"] = now_iso()
            self._start_child(run, "protocol", folder)
            self._set_status(run, "running")
        return run

    def _start_child(self, run: dict[str, Any], mode: str, folder: Path | None) -> None:
        run_id = run["id"]
        self.child = Child(mode, folder, device=self.device, broker=self.broker,
                           lease_ttl_s=self.settings.lease_ttl_s,
                           on_report=lambda message: self._on_report(run_id, message),
                           on_exit=lambda child, code: self._on_exit(run_id, child, code))

    def _current(self, run_id: str) -> dict[str, Any]:
        run = self.run(run_id)
        if run_id != self.current_id:
            raise Refused("conflict", f"run {run_id} is not the current run")
        return run

    def _ask(self, question: Callable[[Child], Any]) -> Any:
        if self.child is None:
            raise Refused("conflict", "the run has no process (it has ended)")
        try:
            return question(self.child)
        except ChildError as error:
            raise Refused("conflict", str(error)) from None

    def pause(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            run = self._current(run_id)
            if run["status"] != "running":
                raise Refused("conflict", f"run {run_id} is {run['status']}; only a running run can be paused")
            self._ask(lambda child: child.ask("pause", timeout=10))
            run["paused_reason"] = "paused by request (the moving command finishes first)"
            self._set_status(run, "paused")
        return run

    def resume(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            run = self._current(run_id)
            if run["status"] != "paused":
                raise Refused("conflict", f"run {run_id} is {run['status']}; only a paused run can be resumed")
            self._ask(lambda child: child.ask("resume", timeout=10))
        return run

    def stop(self, run_id: str, reason: str = "stopped by request", wait: bool = True) -> dict[str, Any]:
        with self.lock:
            run = self.run(run_id)
            if run["status"] in TERMINAL:
                raise Refused("conflict", f"run {run_id} has already {run['status']}")
            child = self.child if run_id == self.current_id else None
            if child is None:
                self._finish(run, "stopped", None)
                return run
            self._set_status(run, "stop-requested")
        if child.stop(reason, self.settings.stop_grace_s):
            self._make_safe(child)
        if wait:
            child.handled.wait(5)  # the answer says `stopped`
        return run

    def _make_safe(self, child: Child) -> None:
        """The child did not stop by itself and was killed: halt the robot and give its lease back in its name."""
        log.error("the run's process did not stop within %.1f s: killed; halting the robot",
                  self.settings.stop_grace_s)
        try:
            self.bus.call("smoothie", "halt", {}, timeout=10)
        except (BusError, CallTimeout) as error:
            log.error("halting failed: %s", error)
        if child.lease_id:
            try:
                with BusClient(self.device, self.broker, name=child.client_name) as stand_in:
                    stand_in.call("smoothie", "release_motion", {"lease_id": child.lease_id}, timeout=5)
            except (BusError, CallTimeout) as error:
                log.error("releasing the killed run's lease failed (it lapses in %.0f s): %s",
                          self.settings.lease_ttl_s, error)

    # -- reports from the child ------------------------------------------------------------------------------------

    def _on_report(self, run_id: str, message: dict[str, Any]) -> None:
        with self.lock:
            run = self.runs.get(run_id)
            if run is None:
                return
            kind = message.get("type")
            if kind == "status" and run["status"] not in TERMINAL and run["status"] != "stop-requested":
                if run.get("live") and message["status"] == "idle":
                    return
                run["paused_reason"] = message.get("reason") if message["status"] == "paused" else None
                self._set_status(run, message["status"], message.get("reason"))
            elif kind == "step":
                self._on_step(run, message)
            elif kind == "result":
                error = None
                if message["status"] == "failed":
                    error = {"error_type": message.get("error_type") or "Error",
                             "detail": message.get("detail") or "", "step": message.get("step")}
                self._finish(run, message["status"], error, message.get("reason"))

    def _on_step(self, run: dict[str, Any], message: dict[str, Any]) -> None:
        commands = run["commands"]
        if message["phase"] == "running":
            index, command = len(commands), self._begin_step(run, message)
        else:
            found = self._running_step(commands, message)
            if found is None:
                return
            index, command = found
            command["status"] = message["phase"]
            command["completedAt"] = now_iso()
            if message.get("error"):
                command["error"] = {"errorType": "ProtocolCommandFailed", "detail": message["error"]}
            self._set_steps_done(run, run.get("steps_done", 0) + 1)
        self.publish("event", "command", {"run_id": run["id"], "index": index, "command_type": command["commandType"],
                                          "text": message["text"], "status": command["status"],
                                          "error": message.get("error")})
        append_line(self._command_log(run), command)  # the step's only write: progress is read back from the log
        self.publish("state", "run", self.public(run))

    def _begin_step(self, run: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
        command = {"id": message.get("id") or new_id(), "key": f"step-{len(run['commands'])}",
                   "commandType": message["command_type"], "status": "running",
                   "params": {"text": message["text"]}, "intent": message.get("intent", "protocol"),
                   "createdAt": now_iso(), "startedAt": now_iso()}
        run["commands"].append(command)
        run["current_step"] = message["text"]
        if run.get("live") and run["status"] == "idle" and command["intent"] != "setup":
            self._set_status(run, "running")  # as the robot-server's: a live run plays at its first protocol step
        return command

    @staticmethod
    def _running_step(commands: list[dict[str, Any]], message: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The running command a step's end names (by id, else by text), searched from the newest: it is near."""
        for index in range(len(commands) - 1, -1, -1):
            candidate = commands[index]
            if candidate["status"] == "running" and (candidate["id"] == message["id"] if message.get("id")
                                                     else candidate["params"]["text"] == message["text"]):
                return index, candidate
        return None

    def _on_exit(self, run_id: str, child: Child, code: int) -> None:
        with self.lock:
            if self.child is child:
                self.child = None
            run = self.runs.get(run_id)
            if run is None:
                return
            if run["status"] == "stop-requested" or (run.get("live") and run["status"] not in TERMINAL
                                                      and code in (0, -9)):
                self._finish(run, "stopped", None)
            elif run["status"] not in TERMINAL:
                self._finish(run, "failed", {"error_type": "RunProcessEnded", "step": run.get("current_step"),
                                             "detail": f"the run's process ended unexpectedly (exit code {code})"})

    def _finish(self, run: dict[str, Any], status: str, error: dict[str, Any] | None,
                reason: str | None = None) -> None:
        if run["status"] in TERMINAL:
            return
        if error is not None:
            run["errors"].append(error)
        if status == "succeeded":
            run["progress"] = 1.0
        run["completed_at"] = now_iso()
        run["paused_reason"] = None
        self._set_status(run, status, reason or (error["detail"] if error else None))

    def _set_status(self, run: dict[str, Any], status: str, reason: str | None = None) -> None:
        changed = run["status"] != status
        run["status"] = status
        self._save(run)
        if changed:
            self.publish("event", "run", {"run_id": run["id"], "status": status, "reason": reason})
        self._changed(run)

    def _changed(self, run: dict[str, Any]) -> None:
        self.publish("state", "run", self.public(run))

    def _save(self, run: dict[str, Any]) -> None:
        """The run without its log (that is appended to, a step at a time): a save costs the same at every step."""
        write_json(self.runs_dir / f"{run['id']}.json", {k: v for k, v in run.items() if k != "commands"})

    @staticmethod
    def _progress_from_log(run: dict[str, Any]) -> None:
        """A step writes only its log line; the run's step, count and progress are what the log says."""
        commands = run["commands"]
        if not commands:
            return
        run["current_step"] = commands[-1]["params"]["text"]
        RunManager._set_steps_done(run, sum(1 for c in commands if c["status"] != "running"))

    @staticmethod
    def _set_steps_done(run: dict[str, Any], done: int) -> None:
        run["steps_done"] = done
        if run.get("steps_total"):
            run["progress"] = min(1.0, done / max(run["steps_total"], 1))

    def _load_commands(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        inline = run.pop("commands", None)
        path = self._command_log(run)
        if inline and not path.exists():  # kept by an older runner, the log inside the run's file: moved out
            for command in inline:
                append_line(path, command)
        return read_command_log(path)

    def _command_log(self, run: dict[str, Any]) -> Path:
        return self.runs_dir / f"{run['id']}.commands.jsonl"

    # -- live commands ---------------------------------------------------------------------------------------------

    def _live_child(self, run_id: str) -> Child:
        run = self._current(run_id)
        if not run.get("live") or self.child is None or run["status"] in TERMINAL:
            raise Refused("conflict", f"run {run_id} takes no commands (it is a protocol run, or it has ended)")
        return self.child

    def live_command(self, run_id: str, command: dict[str, Any], wait: bool, timeout_ms: int | None) -> Any:
        child = self._live_child(run_id)
        limit = (timeout_ms / 1000 if timeout_ms else self.settings.command_timeout_s) + 5
        try:
            return child.ask("command", timeout=limit, command=command, wait=wait, timeout_ms=timeout_ms)
        except ChildError as error:
            raise Refused("invalid_request", str(error)) from None

    def live_get_command(self, run_id: str, command_id: str) -> Any:
        run = self.run(run_id)
        if not run.get("live"):
            found = next((c for c in run["commands"] if c["id"] == command_id), None)
            if found is None:
                raise Refused("not_found", f"no command {command_id!r} in run {run_id}")
            return found
        try:
            return self._live_child(run_id).ask("get_command", id=command_id)
        except ChildError as error:
            raise Refused("not_found", str(error)) from None

    def commands(self, run_id: str) -> list[dict[str, Any]]:
        run = self.run(run_id)
        if run.get("live") and run_id == self.current_id and self.child is not None:
            try:
                return list(self.child.ask("commands"))
            except ChildError:
                pass
        return list(run["commands"])

    def add_labware(self, run_id: str, definition: dict[str, Any]) -> Any:
        try:
            return self._live_child(run_id).ask("labware", definition=definition)
        except ChildError as error:
            raise Refused("invalid_request", f"labware definition: {error}") from None

    def delete_run(self, run_id: str) -> None:
        """DELETE /runs/{id}: an active run is stopped first (the robot halted, the lease released), then forgotten."""
        run = self.run(run_id)
        if run["status"] not in TERMINAL or (run_id == self.current_id and self.child is not None):
            with contextlib.suppress(Refused):
                self.stop(run_id, "the run was deleted")
        with self.lock:
            self.runs.pop(run_id, None)
            if self.current_id == run_id:
                self.current_id = None
            (self.runs_dir / f"{run_id}.json").unlink(missing_ok=True)
            self._command_log(run).unlink(missing_ok=True)

    def close(self) -> None:
        """At the service's stop: an active run is stopped (the robot halted, the lease given back)."""
        if self.current_id and self.child is not None:
            with contextlib.suppress(Refused):
                self.stop(self.current_id, "the runner is stopping")
