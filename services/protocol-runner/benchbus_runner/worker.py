"""One run, in a child process of the runner: Opentrons' protocol API (benchbus_ot2) on the bus backend.

    python -m benchbus_runner.worker protocol PROTOCOL_DIR     # run PROTOCOL_DIR/main.py (+ labware/*.json)
    python -m benchbus_runner.worker live                      # Opentrons' protocol engine, commands one by one

The broker settings come as JSON in $BENCHBUS_RUNNER_CHILD_BROKER (a password never shows in `ps`), the device in
$BENCHBUS_RUNNER_CHILD_DEVICE. The runner talks to this process in JSON lines: requests on stdin
(`{"req": n, "op": "pause"|"resume"|"stop"|"command"|"get_command"|"commands"|"labware", ...}`), replies and
reports on stdout (`{"type": "reply"|"status"|"step"|"result"|"lease", ...}`). The end of stdin (the runner died,
even by kill -9) is a stop: the robot is halted, the lease released, the process ends.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

log = logging.getLogger("benchbus.runner.worker")

_out_lock = threading.Lock()
_real_stdout = sys.stdout


def report(kind: str, **fields: Any) -> None:
    """One line to the runner (on the real stdout: a protocol's print() goes to stderr, see main)."""
    with _out_lock:
        try:
            _real_stdout.write(json.dumps({"type": kind, **fields}, default=str) + "\n")
            _real_stdout.flush()
        except (OSError, ValueError):  # the runner is gone (kill -9): what matters now is making the robot safe
            pass


class Worker:
    def __init__(self, mode: str, folder: Path | None):
        from benchbus.settings import BrokerSettings
        from benchbus_ot2.robot import Robot

        self.mode, self.folder = mode, folder
        self.broker = broker = BrokerSettings.model_validate_json(os.environ["BENCHBUS_RUNNER_CHILD_BROKER"])
        ttl = float(os.environ.get("BENCHBUS_RUNNER_CHILD_LEASE_TTL", "10"))
        self.robot = Robot(os.environ["BENCHBUS_RUNNER_CHILD_DEVICE"], broker, lease_ttl_s=ttl,
                           name=f"runner-{os.getpid()}", on_pause=self._paused, on_resume=self._resumed)
        self.session: Any = None
        self.step: str | None = None
        self.stopping = threading.Event()
        self.engine_loop: asyncio.AbstractEventLoop | None = None
        self.orchestrator: Any = None
        self.engine_ready = threading.Event()

    # -- reports ---------------------------------------------------------------------------------------------------

    def _paused(self, text: str) -> None:
        if not self.stopping.is_set():
            report("status", status="paused", reason=text)

    def _resumed(self) -> None:
        if not self.stopping.is_set():
            report("status", status="running", reason=None)

    def _runlog(self, message: Any) -> None:
        """Opentrons' run log: one 'before' and one 'after' per command (nested for transfer and the like)."""
        text = str((message.get("payload") or {}).get("text") or message.get("name"))
        if message.get("$") == "before":
            self.step = text
            report("step", phase="running", command_type=str(message.get("name")), text=text)
        else:
            error = message.get("error")
            report("step", phase="failed" if error else "succeeded", command_type=str(message.get("name")),
                   text=text, error=str(error) if error else None)

    # -- control from the runner -----------------------------------------------------------------------------------

    def listen(self) -> None:
        for line in sys.stdin:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            threading.Thread(target=self._answer, args=(request,), daemon=True).start()
        self.stop("the runner went away (its connection to this run ended)")

    def _answer(self, request: dict[str, Any]) -> None:
        try:
            result = self.handle(request)
            report("reply", req=request.get("req"), ok=True, result=result)
        except Exception as error:
            report("reply", req=request.get("req"), ok=False, error=f"{type(error).__name__}: {error}")

    def handle(self, request: dict[str, Any]) -> Any:
        op = request.get("op")
        if op == "stop":
            threading.Thread(target=self.stop, args=(request.get("reason") or "stopped",), daemon=True).start()
            return None
        if op == "pause":
            return self.robot.read("smoothie", "pause")
        if op == "resume":
            self.robot.request_resume()
            if self.engine_ready.is_set():
                self._in_engine(self._engine_play)
            return None
        if self.mode == "live":
            return self._live(op, request)
        raise ValueError(f"unknown request {op!r}")

    def stop(self, reason: str) -> None:
        """Halt what moves, give the lease back, end this process: within a second, whatever the run was doing."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        try:
            self.robot.read("smoothie", "halt", timeout=5)
        except Exception as error:  # still give the lease back and end
            log.error("halting at stop failed: %s", error)
        self._release_lease()
        report("result", status="stopped", reason=reason)
        from benchbus_ot2.calibration import private_config_dir

        shutil.rmtree(private_config_dir(), ignore_errors=True)  # os._exit runs no atexit hook
        os._exit(0)

    def _release_lease(self) -> None:
        lease, self.robot.lease_id = self.robot.lease_id, None
        self.robot._closing.set()
        if lease:
            try:
                self.robot.bus.call("smoothie", "release_motion", {"lease_id": lease}, timeout=3)
            except Exception as error:
                log.error("releasing the lease failed: %s", error)

    # -- protocol runs ---------------------------------------------------------------------------------------------

    def run_protocol(self) -> int:
        from benchbus_ot2.session import RobotSession

        assert self.folder is not None
        self.home_after_halt()
        self.session = RobotSession(self.robot).open()
        report("lease", lease_id=self.robot.lease_id)
        report("status", status="running", reason=None)
        try:
            self.session.run_file(self.folder / "main.py", emit_runlog=self._runlog,
                                  custom_labware_paths=[str(self.folder / "labware")])
        except BaseException as error:
            if self.stopping.is_set():
                threading.Event().wait()  # stop() ends the process
            report("result", status="failed", error_type=type(error).__name__, detail=describe(error),
                   step=self.step)
            self._close_quietly()
            return 1
        self._close_quietly()
        report("result", status="succeeded")
        return 0

    def home_after_halt(self) -> None:
        """A stopped or killed run left the robot halted (in alarm: every move refused until homed). A run starts
        from a homed robot, as the robot-server's do; before the lease is taken, so only a free robot is homed."""
        from benchbus import BusClient

        with BusClient(self.robot.device, self.broker, name=f"runner-home-{os.getpid()}") as bus:
            _topic, alarm = bus.wait_for(bus.topic("smoothie", "state", "alarm"), lambda _t, _d: True, 5.0)
            if (alarm or {}).get("active"):
                if self.mode != "live":
                    report("status", status="running", reason="homing after the last halt")
                bus.call("smoothie", "home", {}, timeout=120)

    def _close_quietly(self) -> None:
        try:
            self.session.close()
        except Exception as error:
            log.error("closing the session: %s", error)

    # -- live commands (ot_api, PyLabRobot) -----------------------------------------------------------------------

    def run_live(self) -> int:
        from benchbus_ot2.session import RobotSession

        self.home_after_halt()
        self.session = RobotSession(self.robot).open()
        report("lease", lease_id=self.robot.lease_id)
        ready = threading.Event()
        threading.Thread(target=self._engine_thread, args=(ready,), name="engine", daemon=True).start()
        ready.wait()
        report("status", status="idle", reason=None)
        threading.Event().wait()  # until stop() ends the process
        return 0

    def _engine_thread(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self.engine_loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._build_engine())
        ready.set()
        loop.run_forever()

    async def _build_engine(self) -> None:
        from benchbus_ot2.session import OT2_DECK_CONFIGURATION, benchbus_labware, engine_config
        from opentrons.protocol_engine import error_recovery_policy
        from opentrons.protocol_engine.create_protocol_engine import create_protocol_engine
        from opentrons.protocol_runner import RunOrchestrator
        from opentrons_shared_data.labware.labware_definition import labware_definition_type_adapter

        hardware = self.session.hardware.wrapped()
        engine = await create_protocol_engine(hardware_api=hardware, config=engine_config(),
                                              error_recovery_policy=error_recovery_policy.never_recover,
                                              load_fixed_trash=True, deck_configuration=OT2_DECK_CONFIGURATION)
        for definition in benchbus_labware().values():
            engine.add_labware_definition(labware_definition_type_adapter.validate_python(definition))
        engine.add_plugin(command_reporter())
        self.orchestrator = RunOrchestrator.build_orchestrator(hardware_api=hardware, protocol_engine=engine)
        self.orchestrator.prepare()
        self.engine_ready.set()

    def _engine_play(self) -> None:
        from benchbus_ot2.session import OT2_DECK_CONFIGURATION

        if not self.orchestrator.run_has_started() or self.orchestrator.get_run_status().value == "paused":
            self.orchestrator.play(OT2_DECK_CONFIGURATION)

    def _in_engine(self, fn: Any, *args: Any) -> Any:
        async def call() -> Any:
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result
        assert self.engine_loop is not None
        return asyncio.run_coroutine_threadsafe(call(), self.engine_loop).result()

    def _live(self, op: str | None, request: dict[str, Any]) -> Any:
        if not self.engine_ready.wait(60):  # the first request may come while the engine is still being built
            raise RuntimeError("the protocol engine did not start within 60 s")
        if op == "command":
            return self._live_command(request["command"], bool(request.get("wait")), request.get("timeout_ms"))
        if op == "get_command":
            return self._in_engine(lambda: dump(self.orchestrator.get_command(request["id"])))
        if op == "commands":
            return self._in_engine(lambda: [dump(c) for c in self.orchestrator.get_all_commands()])
        if op == "labware":
            from opentrons_shared_data.labware.labware_definition import labware_definition_type_adapter

            definition = labware_definition_type_adapter.validate_python(request["definition"])
            return {"definitionUri": str(self._in_engine(self.orchestrator.add_labware_definition, definition))}
        raise ValueError(f"unknown request {op!r}")

    def _live_command(self, raw: dict[str, Any], wait: bool, timeout_ms: int | None) -> Any:
        from opentrons.protocol_engine import CommandIntent
        from opentrons.protocol_engine.commands import CommandCreateAdapter

        create = CommandCreateAdapter.validate_python(raw)
        if create.intent != CommandIntent.SETUP:
            self._in_engine(self._engine_play)  # protocol commands run once the run plays (robot-server's rule)

        async def add() -> Any:
            command = await self.orchestrator.add_command_and_wait_for_interval(
                command=create, wait_until_complete=wait, timeout=timeout_ms)
            return dump(self.orchestrator.get_command(command.id))
        return self._in_engine(add)


def command_reporter() -> Any:
    """An engine plugin that reports each live command as it starts and ends (the runner's run log, as a protocol
    run's): the engine's own actions, so a command queued without waiting is reported when it really runs."""
    from opentrons.protocol_engine.actions import FailCommandAction, RunCommandAction, SucceedCommandAction
    from opentrons.protocol_engine.plugins import AbstractPlugin

    class CommandReporter(AbstractPlugin):
        def handle_action(self, action: Any) -> None:
            if isinstance(action, RunCommandAction):
                command = self.state.commands.get(action.command_id)
                phase, error = "running", None
            elif isinstance(action, SucceedCommandAction):
                command, phase, error = action.command, "succeeded", None
            elif isinstance(action, FailCommandAction):
                command, phase = action.running_command, "failed"
                error = str(getattr(action.error, "detail", None) or action.error)
            else:
                return
            report("step", phase=phase, id=command.id, command_type=command.commandType, text=command_text(command),
                   intent=str(getattr(command.intent, "value", command.intent) or "protocol"), error=error)

    return CommandReporter()


def command_text(command: Any) -> str:
    """`aspirate 100 uL, well A1, flow rate 50`: the command type and the parameters a person reads."""
    params = command.params.model_dump(exclude_none=True) if command.params is not None else {}
    parts = [f"{params['volume']:g} uL" if isinstance(params.get("volume"), int | float) else None,
             f"well {params['wellName']}" if params.get("wellName") else None,
             f"{params['loadName']}" if params.get("loadName") else None,
             f"pipette {params['pipetteName']}" if params.get("pipetteName") else None,
             f"{params['mount']} mount" if params.get("mount") else None,
             f"flow rate {params['flowRate']:g}" if isinstance(params.get("flowRate"), int | float) else None]
    details = ", ".join(str(p) for p in parts if p)
    return f"{command.commandType} {details}".strip()


def dump(command: Any) -> dict[str, Any]:
    return command.model_dump(mode="json", exclude_none=True)


def describe(error: BaseException) -> str:
    """The message a person needs: Opentrons' own (with the protocol's line) when it has one."""
    to_stderr = getattr(error, "to_stderr_string", None)
    if callable(to_stderr):
        return str(to_stderr())
    text = str(error) or type(error).__name__
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.endswith("main.py")]
    if frames and "line" not in text:
        text += f" [line {frames[-1].lineno}]"
    return text


def main(argv: list[str] | None = None) -> int:
    from benchbus_ot2.calibration import private_config_dir

    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    sys.stdout = sys.stderr  # a protocol's print() must not break the JSON lines
    private_config_dir()
    worker = Worker(args[0], Path(args[1]) if len(args) > 1 else None)
    # systemd stops (or restarts) the runner's whole control group with SIGTERM: stop like a stop request
    signal.signal(signal.SIGTERM, lambda _n, _f: threading.Thread(
        target=worker.stop, args=("the runner's service was stopped",), daemon=True).start())
    threading.Thread(target=worker.listen, name="control", daemon=True).start()
    try:
        return worker.run_live() if args[0] == "live" else worker.run_protocol()
    except Exception as error:  # the session did not open (the lease is taken, the bridge is down)
        report("result", status="failed", error_type=type(error).__name__, detail=describe(error), step=None)
        return 1


if __name__ == "__main__":
    sys.exit(main())
