"""`benchbus up`: the Smoothieboard emulator on a free TCP port, and the smoothie-bridge opening it over socket://."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    port = ctx.free_port()
    control = ctx.free_port()  # the emulator's JSON HTTP interface (position, G-code log, faults), for tests
    emulator = Unit(name="smoothie-emulator", port=port, control=f"http://127.0.0.1:{control}",
                    argv=[sys.executable, "-m", "benchbus_smoothie.emulator", "--tcp", str(port),
                          "--control-port", str(control)])
    bridge = Unit(name="smoothie-bridge", segment="smoothie", argv=[sys.executable, "-m", "benchbus_smoothie"],
                  env={"BENCHBUS_SMOOTHIE_PORT": f"socket://127.0.0.1:{port}",
                       # gpio-service's simulated halt line is not wired to the emulator: stop it in-band as well
                       "BENCHBUS_SMOOTHIE_HALT_VIA": "both"})
    return [emulator, bridge]
