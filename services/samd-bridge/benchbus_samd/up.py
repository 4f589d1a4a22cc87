"""`benchbus up`: the SAMD21 line emulator on a free TCP port, and the samd-bridge opening it over socket://."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    port = ctx.free_port()
    control = ctx.free_port()  # the emulator's JSON HTTP interface (state, frames, faults), for tests and tools
    emulator = Unit(name="samd-emulator", argv=[sys.executable, "-m", "benchbus_samd.emulator", "--tcp", str(port),
                                                "--control-port", str(control)],
                    port=port, control=f"http://127.0.0.1:{control}")
    bridge = Unit(name="samd-bridge", argv=[sys.executable, "-m", "benchbus_samd"], segment="samd",
                  env={"BENCHBUS_SAMD_PORT": f"socket://127.0.0.1:{port}"})
    return [emulator, bridge]
