"""`benchbus up`: gpio-service on the simulated chip (the simulation lives inside the service: no emulator process)."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    return [Unit(name="gpio", argv=[sys.executable, "-m", "benchbus_gpio.service"], segment="gpio",
                 env={"BENCHBUS_GPIO_BACKEND": "sim"})]
