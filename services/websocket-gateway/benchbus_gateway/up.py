"""`benchbus up` plug-in: the gateway on the http port (8081 by default), its token kept in the data directory."""
from __future__ import annotations

import secrets
import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    token_file = ctx.service_dir("gateway") / "token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(24) + "\n")
        token_file.chmod(0o600)
    env = {"BENCHBUS_GATEWAY_PORT": str(ctx.http_port), "BENCHBUS_GATEWAY_TOKEN": token_file.read_text().strip()}
    return [Unit(name="gateway", argv=[sys.executable, "-m", "benchbus_gateway.service"], env=env, segment="gateway",
                 url=f"http://localhost:{ctx.http_port}/  dashboard; Socket.IO for the DPU and GUI: "
                     f"http://localhost:{ctx.http_port}/dpu-evolver  (write token in {token_file})")]
