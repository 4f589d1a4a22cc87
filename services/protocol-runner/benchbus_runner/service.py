"""The protocol-runner service (segment `runner`): the bus commands and the robot-server's HTTP API on one
RunManager (runs.py). The web server (uvicorn, one asyncio loop) runs on a thread of its own beside the service's
main loop, as the gateway's does.

Publishes: runner/state/run (retained), runner/event/command, runner/event/run. Calls: smoothie (halt,
read_pipette, home, release_motion) and, from each run's child process, smoothie (acquire_motion, release_motion,
motion commands, pause, resume, halt), calibration (robot_list, robot_set), gpio events (door, button).
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import uvicorn

from benchbus import BusError, RequestContext, Service
from benchbus.runner import run_service
from benchbus_schemas.runner import (Analysis, ProtocolInfo, ProtocolList, RunState)

from .runs import Refused, RunManager
from .settings import RunnerSettings

SEGMENT = "runner"
log = logging.getLogger("benchbus.runner")


class Runner(Service):
    def __init__(self, settings: RunnerSettings):
        super().__init__(SEGMENT, settings)
        self.settings: RunnerSettings = settings
        self.manager = RunManager(settings, settings.broker, self.device, self.bus, self._publish)
        self.web: uvicorn.Server | None = None
        self._web_thread: threading.Thread | None = None
        self.port: int | None = None

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


def refused(error: Refused) -> BusError:
    return BusError(error.code, error.message, error.detail)


def build(settings: RunnerSettings) -> tuple[Runner, Any]:
    runner = Runner(settings)
    manager = runner.manager

    def bus_errors(fn: Any) -> Any:
        def wrapped(request: Any, ctx: RequestContext) -> Any:
            try:
                return fn(request, ctx)
            except Refused as error:
                raise refused(error) from None
        return wrapped

    @runner.handles("upload")
    @bus_errors
    def upload(request, _ctx: RequestContext) -> ProtocolInfo:
        info = manager.upload(request.file_name, request.source, [(f.name, f.content) for f in request.labware])
        return ProtocolInfo.model_validate(info)

    @runner.handles("analyse")
    @bus_errors
    def analyse(request, _ctx: RequestContext) -> Analysis:
        return Analysis.model_validate(manager.protocol(request.protocol_id)["analysis"])

    @runner.handles("create_run")
    @bus_errors
    def create_run(request, _ctx: RequestContext) -> RunState:
        return RunState.model_validate(manager.public(manager.create_run(request.protocol_id)))

    def verb(name: str) -> None:
        @runner.handles(name)
        @bus_errors
        def handler(request, _ctx: RequestContext) -> RunState:
            run = getattr(manager, name)(request.run_id)
            return RunState.model_validate(manager.public(run))

    for name in ("play", "pause", "resume", "stop"):
        verb(name)

    @runner.handles("list")
    def list_all(_request, _ctx: RequestContext) -> ProtocolList:
        return ProtocolList.model_validate({"protocols": manager.protocols(),
                                            "runs": [manager.public(r) for r in list(manager.runs.values())]})

    def setup() -> None:
        manager.recover()
        if settings.http:
            runner.start_web()

    return runner, setup


def main(argv: list[str] | None = None) -> int:
    return run_service(SEGMENT, RunnerSettings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
