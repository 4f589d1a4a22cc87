"""The protocol-runner service (segment `runner`): the bus commands and the robot-server's HTTP API on one
RunManager (runs.py). The web server (uvicorn, one asyncio loop) runs on a thread of its own beside the service's
main loop, as the gateway's does.

Publishes: runner/state/run (retained), runner/event/command, runner/event/run. Calls: smoothie (halt,
read_pipette, home, release_motion) and, from each run's child process, smoothie (acquire_motion, release_motion,
motion commands, pause, resume, halt), calibration (robot_list, robot_set), gpio events (door, button).
"""
from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from benchbus import BusError, RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler
from benchbus_schemas.envelope import Empty
from benchbus_schemas.runner import (Analysis, CreateRunRequest, ProtocolIdRequest, ProtocolInfo, ProtocolList,
                                     RunIdRequest, RunState, UploadRequest)

from .runs import Refused, RunManager
from .settings import RunnerSettings

log = logging.getLogger("benchbus.runner")


def refusals_as_bus_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """A handler whose RunManager refusals (runs.py knows nothing of the bus) reach the caller as bus errors."""
    @functools.wraps(method)
    def wrapped(*args: Any) -> Any:
        try:
            return method(*args)
        except Refused as error:
            raise BusError(error.code, error.message, error.detail) from None
    return wrapped


class Runner(Service[RunnerSettings]):
    segment = "runner"

    def __init__(self, settings: RunnerSettings):
        super().__init__(settings)
        self.manager = RunManager(settings, settings.broker, self.device, self.bus, self._publish)
        self.web: uvicorn.Server | None = None
        self._web_thread: threading.Thread | None = None
        self.port: int | None = None

    def on_start(self) -> None:
        self.manager.recover()
        if self.settings.http:
            self.start_web()

    def _publish(self, kind: str, name: str, payload: dict[str, Any]) -> None:
        if kind == "state":
            self.set_state(name, payload)
        else:
            self.emit(name, payload)

    # -- what the HTTP routes need of the bus ----------------------------------------------------------------------

    def attached_pipettes(self) -> dict[str, Any]:
        """GET /pipettes as the robot-server answers it, from the board's pipette memory (smoothie read_pipette)."""
        try:
            found = self.call("smoothie", "read_pipette", {}, timeout=10)
        except BusError as error:
            raise Refused("unavailable", f"smoothie read_pipette: {error.message}") from None
        answer = {}
        for mount, axes in (("left", ("z", "b")), ("right", ("a", "c"))):
            info = found.get(mount) or {}
            model = info.get("model")
            answer[mount] = {"model": model, "name": pipette_name(model), "id": info.get("id"),
                             "mount_axis": axes[0], "plunger_axis": axes[1], "tip_length": None}
        return answer

    def home(self, mount: str | None) -> None:
        """POST /robot/home: through the live run's engine when one holds the robot, else the bridge's own home;
        either way the answer comes when the robot is homed (no gateway timeout in between)."""
        manager = self.manager
        with manager.lock:
            run = manager.runs.get(manager.current_id or "")
            live = run is not None and run.get("live") and manager.child is not None and run["status"] not in (
                "stopped", "succeeded", "failed")
        if live:
            assert run is not None
            params = {"axes": ["leftZ", "leftPlunger"] if mount == "left" else ["rightZ", "rightPlunger"]} \
                if mount else {}
            done = manager.live_command(run["id"], {"commandType": "home", "params": params, "intent": "setup"},
                                        True, int(self.settings.home_timeout_s * 1000))
            if done.get("status") != "succeeded":
                raise Refused("hardware_error", f"home: {(done.get('error') or {}).get('detail', done.get('status'))}")
            return
        axes = {"left": ["Z", "B"], "right": ["A", "C"]}.get(mount or "")
        try:
            self.call("smoothie", "home", {"axes": axes} if axes else {}, timeout=self.settings.home_timeout_s)
        except BusError as error:
            raise Refused("conflict" if error.code == "conflict" else "hardware_error",
                          f"smoothie home: {error.message}") from None

    # -- commands --------------------------------------------------------------------------------------------------

    @handler("upload")
    @refusals_as_bus_errors
    def upload(self, request: UploadRequest, _ctx: RequestContext) -> ProtocolInfo:
        files = [(f.name, f.content) for f in request.labware]
        return ProtocolInfo.model_validate(self.manager.upload(request.file_name, request.source, files))

    @handler("analyse")
    @refusals_as_bus_errors
    def analyse(self, request: ProtocolIdRequest, _ctx: RequestContext) -> Analysis:
        return Analysis.model_validate(self.manager.protocol(request.protocol_id)["analysis"])

    @handler("create_run")
    @refusals_as_bus_errors
    def create_run(self, request: CreateRunRequest, _ctx: RequestContext) -> RunState:
        return RunState.model_validate(self.manager.public(self.manager.create_run(request.protocol_id)))

    @handler("play")
    @refusals_as_bus_errors
    def play_run(self, request: RunIdRequest, _ctx: RequestContext) -> RunState:
        return RunState.model_validate(self.manager.public(self.manager.play(request.run_id)))

    @handler("pause")
    @refusals_as_bus_errors
    def pause_run(self, request: RunIdRequest, _ctx: RequestContext) -> RunState:
        return RunState.model_validate(self.manager.public(self.manager.pause(request.run_id)))

    @handler("resume")
    @refusals_as_bus_errors
    def resume_run(self, request: RunIdRequest, _ctx: RequestContext) -> RunState:
        return RunState.model_validate(self.manager.public(self.manager.resume(request.run_id)))

    @handler("stop")
    @refusals_as_bus_errors
    def stop_run(self, request: RunIdRequest, _ctx: RequestContext) -> RunState:
        return RunState.model_validate(self.manager.public(self.manager.stop(request.run_id)))

    @handler("list")
    def list_all(self, _request: Empty, _ctx: RequestContext) -> ProtocolList:
        manager = self.manager
        return ProtocolList.model_validate({"protocols": manager.protocols(),
                                            "runs": [manager.public(r) for r in list(manager.runs.values())]})

    # -- web server ------------------------------------------------------------------------------------------------

    def start_web(self, timeout: float = 15.0) -> None:
        from .http import create_app

        app, access = create_app(self)
        config = uvicorn.Config(app, host=self.settings.http_host, port=self.settings.http_port, log_level="warning",
                                lifespan="off", access_log=False, timeout_graceful_shutdown=2)
        self.web = uvicorn.Server(config)
        self._web_thread = threading.Thread(target=self.web.run, name="runner-web", daemon=True)
        self._web_thread.start()
        deadline = time.monotonic() + timeout
        while not self.web.started:
            if not self._web_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP API did not start on {self.settings.http_host}:{self.settings.http_port}")
            time.sleep(0.02)
        self.port = self.web.servers[0].sockets[0].getsockname()[1]
        log.info("robot-server HTTP API on %s:%d; writes: the token%s or a client in %s", self.settings.http_host,
                 self.port, f" of {access.token_file}" if access.token_file else "",
                 ", ".join(str(n) for n in self.settings.trusted_networks) or "no trusted network")

    def stop(self) -> None:
        self.manager.close()
        if self.web is not None:
            self.web.should_exit = True
            if self._web_thread is not None:
                self._web_thread.join(5)
        super().stop()


def pipette_name(model: str | None) -> str | None:
    """p300_single_v2.1 -> p300_single_gen2 (Opentrons' load names: GEN2 from model version 2)."""
    if not model or "_v" not in model:
        return None
    base, _, version = model.rpartition("_v")
    return f"{base}_gen2" if version.startswith("2") else base


def main(argv: list[str] | None = None) -> int:
    return run_service(Runner, argv)


if __name__ == "__main__":
    sys.exit(main())
