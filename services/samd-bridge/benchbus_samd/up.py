"""`benchbus up`: the SAMD21 line emulator on a free TCP port, and the samd-bridge opening it over socket://."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    port = ctx.free_port()
    emulator = Unit(name="samd-emulator", argv=[sys.executable, "-m", "benchbus_samd.emulator", "--tcp", str(port)],
                    port=port)
    bridge = Unit(name="samd-bridge", argv=[sys.executable, "-m", "benchbus_samd"], segment="samd",
                  env={"BENCHBUS_SAMD_PORT": f"socket://127.0.0.1:{port}"})
    return [emulator, bridge]
