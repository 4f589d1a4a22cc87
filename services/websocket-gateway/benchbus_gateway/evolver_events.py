"""The one table of eVOLVER Socket.IO events: what each client event calls on the bus and what it emits back.

Both Socket.IO generations (our Engine.IO 3 server and python-socketio for Engine.IO 4) reach `EventTable.handle`.
Where the original server misbehaves we do what a user expects and keep the old clients working:
- a reply to a question (`get...`) goes only to the client that asked; a change of state (`commandbroadcast`,
  `activecalibrations` after `setactivecal`, `broadcastname` after `setdevicename`) goes to every client;
- a failed or refused request emits ERROR_EVENT to its sender (old clients ignore events they do not know);
- the GUI's `stopread` and `data` (which the original never implemented) are accepted and change nothing;
- an event that changes anything (WRITES) needs a client that may write (the token in its connection URL, or an
  address in a trusted network); a refused one reaches its sender as ERROR_EVENT with code `unauthorized`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Awaitable, Callable

from benchbus import BusError

log = logging.getLogger("benchbus.gateway.events")

ERROR_EVENT = "benchbus_error"

# (service, command, payload, on_behalf_of) -> result; raises BusError
Call = Callable[[str, str, Any, "str | None", "str | None"], Awaitable[Any]]


@dataclass
class Emit:
    event: str
    payload: Any
    everyone: bool = False  # False: only the client that sent the event


@dataclass
class Origin:
    """Who sent the event (for the device name's ip, logs and the bus's attribution) and whether it may write."""

    sid: str
    host: str = ""
    generation: str = "eio3"
    may_write: bool = False
    on_behalf_of: str | None = None
    refusal: str = "writes need the token or a trusted address"
    device: str | None = None  # the device asked for at connect (`?device=`, a lab's central gateway: lab.py)


@dataclass
class EventTable:
    call: Call
    remembered: dict[str, str] = field(default_factory=dict)  # the GUI's ip/mac of setdevicename (not a bus fact)

    async def handle(self, event: str, args: list, origin: Origin) -> list[Emit]:
        """Run one client event; raises BusError for a refused or failed one (the caller tells the sender)."""
        handler = HANDLERS.get(event)
        if handler is None:
            raise BusError("not_found", f"unknown event '{event}'", {"known": sorted(HANDLERS)})
        if event in WRITES and not origin.may_write:
            raise BusError("unauthorized", f"'{event}' changes the instrument: {origin.refusal}")
        payload = args[0] if args else None
        return await handler(self, payload, origin)

    async def _ask(self, origin: Origin, service: str, command: str, payload: Any) -> Any:
        return await self.call(service, command, payload, origin.on_behalf_of, origin.device)

    # -- the scheduler ----------------------------------------------------------------------------------------------

    async def command(self, payload: Any, origin: Origin) -> list[Emit]:
        request = _object(payload, "command")
        await self._ask(origin, "scheduler", "command", request)
        # the original echoes the unchanged request to everyone ("I received it")
        return [Emit("commandbroadcast", payload, everyone=True)]

    async def getconfig(self, _payload: Any, origin: Origin) -> list[Emit]:
        result = await self._ask(origin, "scheduler", "get_config", {})
        return [Emit("config", result["config"])]

    # -- the calibration store -------------------------------------------------------------------------------------

    async def getcalibrationnames(self, _payload: Any, origin: Origin) -> list[Emit]:
        result = await self._ask(origin, "calibration", "list_calibrations", {})
        return [Emit("calibrationnames", result["calibrations"])]

    async def getfitnames(self, _payload: Any, origin: Origin) -> list[Emit]:
        result = await self._ask(origin, "calibration", "list_fits", {})
        return [Emit("fitnames", result["fits"])]

    async def getcalibration(self, payload: Any, origin: Origin) -> list[Emit]:
        request = _object(payload, "getcalibration")
        result = await self._ask(origin, "calibration", "get_calibration", {"name": request.get("name")})
        return [Emit("calibration", result["calibration"])]

    async def setrawcalibration(self, payload: Any, origin: Origin) -> list[Emit]:
        await self._ask(origin, "calibration", "set_raw", _object(payload, "setrawcalibration"))
        return [Emit("calibrationrawcallback", "success")]

    async def setfitcalibration(self, payload: Any, origin: Origin) -> list[Emit]:
        await self._ask(origin, "calibration", "set_fit", _object(payload, "setfitcalibration"))
        return []  # the original sends nothing on success; a failure now reaches the sender as ERROR_EVENT

    async def setactivecal(self, payload: Any, origin: Origin) -> list[Emit]:
        result = await self._ask(origin, "calibration", "set_active", _object(payload, "setactivecal"))
        return [Emit("activecalibrations", result["activecalibrations"], everyone=True)]

    async def getactivecal(self, _payload: Any, origin: Origin) -> list[Emit]:
        result = await self._ask(origin, "calibration", "get_active", {})
        return [Emit("activecalibrations", result["activecalibrations"])]

    # -- the device name (update-agent) ----------------------------------------------------------------------------

    async def getdevicename(self, _payload: Any, origin: Origin) -> list[Emit]:
        result = await self._ask(origin, "update", "get_name", {})
        return [Emit("broadcastname", self._name_payload(result["name"], origin))]

    async def setdevicename(self, payload: Any, origin: Origin) -> list[Emit]:
        request = _object(payload, "setdevicename")
        name = request.get("deviceName")
        if not isinstance(name, str):
            raise BusError("invalid_request", "field 'deviceName': a string is required")
        result = await self._ask(origin, "update", "set_name", {"name": name})
        for key in ("ip", "mac"):
            if isinstance(request.get(key), str):
                self.remembered[key] = request[key]
        return [Emit("broadcastname", self._name_payload(result["name"], origin), everyone=True)]

    def _name_payload(self, name: str, origin: Origin) -> dict:
        """The GUI's evolver-config.json shape; ip/mac are what the GUI last set (the host it reached by default)."""
        return {"ip": self.remembered.get("ip", origin.host), "mac": self.remembered.get("mac", ""), "deviceName": name}

    # -- the GUI's events the original never implemented -----------------------------------------------------------

    async def accepted(self, _payload: Any, origin: Origin) -> list[Emit]:
        log.debug("accepted an event with no effect from %s", origin.sid)
        return []


def _object(payload: Any, event: str) -> dict:
    if not isinstance(payload, dict):
        raise BusError("invalid_request", f"'{event}' needs a JSON object, got {type(payload).__name__}")
    return payload


HANDLERS: dict[str, Callable[[EventTable, Any, Origin], Awaitable[list[Emit]]]] = {
    "command": EventTable.command,
    "getconfig": EventTable.getconfig,
    "getcalibrationnames": EventTable.getcalibrationnames,
    "getfitnames": EventTable.getfitnames,
    "getcalibration": EventTable.getcalibration,
    "setrawcalibration": EventTable.setrawcalibration,
    "setfitcalibration": EventTable.setfitcalibration,
    "setactivecal": EventTable.setactivecal,
    "getactivecal": EventTable.getactivecal,
    "getdevicename": EventTable.getdevicename,
    "setdevicename": EventTable.setdevicename,
    "stopread": EventTable.accepted,
    "data": EventTable.accepted,
}

WRITES = frozenset({"command", "setrawcalibration", "setfitcalibration", "setactivecal", "setdevicename"})

# Server-sent: `broadcast` (the scheduler's event/broadcast, unchanged) to every client of the namespace.
BROADCAST_EVENT = "broadcast"
BROADCAST_TOPIC = ("scheduler", "event", "broadcast")


def error_payload(event: str, error: BusError) -> dict:
    return {"event": event, "code": error.code, "message": error.message, "detail": error.detail}
