"""`benchbus up`: the SAMD21 line emulator on a free TCP port, and the samd-bridge opening it over socket://."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from benchbus.up import Unit, UpContext


def example_calibrations() -> Path | None:
    """The calibration-store's shipped example, which `benchbus up` seeds the store with: the emulated cultures
    read through the same fits (None when that package is not installed: the emulator's readings stay static)."""
    spec = importlib.util.find_spec("benchbus_calibration")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "example-calibrations.json"
    return path if path.is_file() else None


def units(ctx: UpContext) -> list[Unit]:
    port = ctx.free_port()
    control = ctx.free_port()  # the emulator's JSON HTTP interface (state, frames, faults), for tests and tools
    argv = [sys.executable, "-m", "benchbus_samd.emulator", "--tcp", str(port), "--control-port", str(control)]
    calibrations = example_calibrations()
    if calibrations is not None:
        argv += ["--calibrations", str(calibrations)]  # cultures that grow, in real time
    emulator = Unit(name="samd-emulator", argv=argv, port=port, control=f"http://127.0.0.1:{control}")
    bridge = Unit(name="samd-bridge", argv=[sys.executable, "-m", "benchbus_samd"], segment="samd",
                  env={"BENCHBUS_SAMD_PORT": f"socket://127.0.0.1:{port}"})
    return [emulator, bridge]
