"""Opentrons' own protocol API on benchbus (the `opentrons` package, pinned 8.8.2, with a bus backend).

    import benchbus_ot2
    protocol = benchbus_ot2.get_protocol_api("2.13", broker="robot.local:1883")   # like opentrons.execute's
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])

The context drives the robot through the smoothie-bridge and gpio-service while the dashboard and other clients
keep working; it holds the motion lease until `benchbus_ot2.disconnect()` (or the end of the process). Opentrons
is imported only on first use, after this process got its private OT_API_CONFIG_DIR (calibration.py).
"""
from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from .calibration import private_config_dir

__all__ = ["get_protocol_api", "resume", "disconnect", "Robot", "RobotSession", "build_bus_hardware",
           "thread_managed_hardware", "MotionError", "RobotAlarm", "DoorOpen", "LeaseLost", "RobotUnavailable",
           "parse_broker", "default_device"]

_SESSION: Any = None


def default_device() -> str:
    """The device id a benchbus robot uses by default: $BENCHBUS_DEVICE, else this host's name."""
    import os
    import socket

    return os.environ.get("BENCHBUS_DEVICE") or socket.gethostname()


def get_protocol_api(version: str, *, broker: str | None = None, device: str | None = None,
                     extra_labware: dict[str, Any] | None = None, labware_dirs: list[str | Path] | None = None,
                     bundled_data: dict[str, bytes] | None = None) -> Any:
    """A live Opentrons ProtocolContext on the robot through the bus (one per process, as Opentrons' is)."""
    global _SESSION
    private_config_dir()
    from .session import RobotSession

    from .robot import Robot

    if _SESSION is None:
        _SESSION = RobotSession(Robot(device or default_device(), broker)).open()
        atexit.register(disconnect)
    labware = dict(extra_labware or {})
    if labware_dirs:
        from opentrons.util import entrypoint_util

        found = entrypoint_util.labware_from_paths([str(d) for d in labware_dirs])
        labware.update({uri: item.definition for uri, item in found.items()})
    return _SESSION.context(version, extra_labware=labware, bundled_data=bundled_data)


def resume() -> None:
    """Continue a notebook's context after a pause or an open door (as the robot's button does)."""
    if _SESSION is not None:
        _SESSION.resume()


def disconnect() -> None:
    """Give the motion lease back and close the connection of `get_protocol_api`."""
    global _SESSION
    if _SESSION is not None:
        session, _SESSION = _SESSION, None
        session.close()


_LAZY = {"RobotSession": "session", "build_bus_hardware": "session", "thread_managed_hardware": "session",
         "OT2_DECK_CONFIGURATION": "session", "Robot": "robot", "parse_broker": "robot", "MotionError": "errors",
         "RobotAlarm": "errors", "DoorOpen": "errors", "LeaseLost": "errors", "RobotUnavailable": "errors"}


def __getattr__(name: str) -> Any:
    """Everything that imports opentrons or the bus client is loaded on first use: `benchbus-simulate` needs
    neither the bus nor a second of imports, and opentrons must not be imported before the private config
    folder is chosen."""
    if name not in _LAZY:
        raise AttributeError(name)
    private_config_dir()
    import importlib

    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
