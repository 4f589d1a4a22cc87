"""`benchbus up` plug-in: the gateway on the http port (8081 by default); it makes its write token in its data folder
at the first start (mode 0600), and the table `up` prints says where."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext

from .access import TOKEN_FILE


def units(ctx: UpContext) -> list[Unit]:
    folder = ctx.service_dir("gateway")
    env = {"BENCHBUS_GATEWAY_PORT": str(ctx.http_port), "BENCHBUS_GATEWAY_DATA_DIR": str(folder)}
    return [Unit(name="gateway", argv=[sys.executable, "-m", "benchbus_gateway.service"], env=env, segment="gateway",
                 url=f"http://localhost:{ctx.http_port}/  dashboard; Socket.IO for the DPU and GUI: "
                     f"http://localhost:{ctx.http_port}/dpu-evolver  (write token in {folder / TOKEN_FILE})")]
