"""`benchbus up` plug-in: the protocol-runner, its protocols and runs under the up data directory, its HTTP API
(the robot-server's, 31950 on a robot) on a free port here."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    folder = ctx.service_dir("runner")
    port = ctx.free_port()
    env = {"BENCHBUS_RUNNER_DATA_DIR": str(folder), "BENCHBUS_RUNNER_HTTP_PORT": str(port)}
    return [Unit("runner", [sys.executable, "-m", "benchbus_runner.service"], env=env, segment="runner",
                 url=f"http://localhost:{port}/  robot-server API (protocols, runs); write token in {folder}/token")]
