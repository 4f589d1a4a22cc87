"""The OT-2 robot server's hardware routes, served through the bus, so scripts written for the robot keep working.

Conventions of the robot server (reference opentrons-ot2.md section 4): a request carries `Opentrons-Version: <int>=2
or *>`; without it the answer is 422, below 2 it is 400; responses carry `Opentrons-Version` and
`Opentrons-Min-Version`; errors are `{"message": ..., "errorCode": ...}`; while the hardware is not up, 503; a motion
refused because someone else moves the robot is 403.

Writes (the POST routes: lights, identify, home, disengage) need `Authorization: Bearer <token>` or a client
address in `trusted_networks`; without either, or with a wrong token, the answer is 401 (an OT-2 script run on
the Pi itself, from loopback, needs nothing). A request the bus refuses though the token was fine is 403.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchbus import BusError

from .access import Refused
from .http import caller_of

if TYPE_CHECKING:
    from .app import Gateway

API_VERSION = 4
MIN_VERSION = 2
AXES = ("x", "y", "z", "a", "b", "c")
MOUNT_AXES = {"left": ["Z", "B"], "right": ["A", "C"]}  # the mount's Z axis, then its plunger
STATUS_OF = {"invalid_request": 400, "unauthorized": 403, "not_found": 404, "conflict": 403, "busy": 403,
             "hardware_error": 500, "unavailable": 503, "timeout": 504, "internal": 500}
ERROR_CODE_OF = {"invalid_request": "4000", "unauthorized": "4001", "not_found": "4004", "conflict": "4003",
                 "busy": "4003", "hardware_error": "3000", "unavailable": "5003", "timeout": "5004", "internal": "4000"}


class RouteError(Exception):
    def __init__(self, status: int, message: str, code: str = "4000"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _version(request: Request) -> int:
    raw = request.headers.get("opentrons-version")
    if raw is None:
        raise RouteError(422, "Opentrons-Version header is required (an integer >= 2, or *)", "4000")
    if raw.strip() == "*":
        return API_VERSION
    try:
        asked = int(raw)
    except ValueError:
        raise RouteError(400, f"Opentrons-Version must be an integer or *, got {raw!r}") from None
    if asked < MIN_VERSION:
        raise RouteError(400, f"API version {asked} is not supported; the minimum is {MIN_VERSION}")
    return min(asked, API_VERSION)


def _reply(body: Any, version: int, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status,
                        headers={"Opentrons-Version": str(version), "Opentrons-Min-Version": str(MIN_VERSION)})


def _error(status: int, message: str, code: str, version: int = API_VERSION) -> JSONResponse:
    return _reply({"message": message, "errorCode": code}, version, status)


Handler = Callable[["Gateway", Request], Awaitable[Any]]


def _route(gateway: Gateway, handler: Handler, write: bool = False):
    async def endpoint(request: Request) -> Response:
        version = API_VERSION
        try:
            caller = caller_of(gateway, request)
            if write:
                gateway.access.require_write(caller)
            else:
                gateway.access.require_read(caller)
            request.state.on_behalf_of = caller.on_behalf_of
            version = _version(request)
            return _reply(await handler(gateway, request), version)
        except Refused as refusal:
            return _error(refusal.status, refusal.message, "4001", version)
        except RouteError as error:
            return _error(error.status, error.message, error.code, version)
        except BusError as error:
            return _error(STATUS_OF.get(error.code, 500), error.message, ERROR_CODE_OF.get(error.code, "4000"), version)
    return endpoint


async def _json_body(request: Request) -> dict:
    body = await request.body()
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        raise RouteError(422, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RouteError(422, "body must be a JSON object")
    return data


def _require_ready(gateway: Gateway, *services: str) -> None:
    for service in services:
        state = (gateway.state_of(service) or {}).get("state")
        if state not in ("ready", "degraded"):
            raise RouteError(503, "Hardware Not Yet Initialized", "5003")


async def _call(gateway: Gateway, request: Request, service: str, command: str, payload: Any = None) -> Any:
    _require_ready(gateway, service)  # answer 503 at once, as the robot server does before its hardware is up
    return await gateway.bridge.call(service, command, payload or {}, gateway.settings.call_timeout_s,
                                     getattr(request.state, "on_behalf_of", None))


# -- the routes -------------------------------------------------------------------------------------------------------

async def ot2_health(gateway: Gateway, request: Request) -> Response:
    try:
        version = _version(request)
        _require_ready(gateway, "smoothie", "gpio")
    except RouteError as error:
        return _error(error.status, error.message, error.code)
    name = (gateway.state_of("update", "name") or {}).get("name") or gateway.device
    firmware = (gateway.state_of("smoothie", "firmware") or {}).get("version", "unknown")
    revision = (gateway.state_of("gpio", "board") or {}).get("revision", "UNKNOWN")
    smoothie_version = (gateway.state_of("smoothie") or {}).get("version", "unknown")
    return _reply({
        "name": name,
        "robot_model": "OT-2 Standard",
        "api_version": smoothie_version,
        "fw_version": firmware,
        "board_revision": revision,
        "logs": ["/logs/serial.log", "/logs/api.log", "/logs/server.log", "/logs/update_server.log"],
        "system_version": (gateway.state_of("gateway") or {}).get("version", "unknown"),
        "maximum_protocol_api_version": [2, 20],
        "minimum_protocol_api_version": [2, 0],
        "robot_serial": None,
        "links": {"apiLog": "/logs/api.log", "serialLog": "/logs/serial.log", "serverLog": "/logs/server.log",
                  "apiSpec": "/openapi.json", "systemTime": "/system/time"},
    }, version)


async def get_lights(gateway: Gateway, request: Request) -> Any:
    lights = await _call(gateway, request, "gpio", "get_lights")
    return {"on": lights["on"]}


async def set_lights(gateway: Gateway, request: Request) -> Any:
    body = await _json_body(request)
    if not isinstance(body.get("on"), bool):
        raise RouteError(422, "field 'on': a boolean is required")
    await _call(gateway, request, "gpio", "set_rail_lights", {"on": body["on"]})
    return {"on": body["on"]}


async def identify(gateway: Gateway, request: Request) -> Any:
    raw = request.query_params.get("seconds")
    if raw is None:
        raise RouteError(422, "query parameter 'seconds' is required")
    try:
        seconds = float(raw)
    except ValueError:
        raise RouteError(422, f"query parameter 'seconds' must be a number, got {raw!r}") from None
    await _call(gateway, request, "gpio", "identify", {"seconds": seconds, "period_s": 0.5})
    return {"message": "identifying"}


async def home(gateway: Gateway, request: Request) -> Any:
    body = await _json_body(request)
    target = body.get("target")
    if target == "robot":
        await _call(gateway, request, "smoothie", "home", {})
        return {"message": "Homing robot."}
    if target == "pipette":
        mount = body.get("mount")
        if mount not in MOUNT_AXES:
            raise RouteError(400, "field 'mount': 'left' or 'right' is required for a pipette target")
        await _call(gateway, request, "smoothie", "home", {"axes": MOUNT_AXES[mount]})
        return {"message": f"Pipette on {mount} homed successfully"}
    raise RouteError(400, f"field 'target': 'robot' or 'pipette', got {target!r}")


async def door_status(gateway: Gateway, _request: Request) -> Any:
    _require_ready(gateway, "gpio")
    door = gateway.state_of("gpio", "door")
    if door is None:
        raise RouteError(503, "the door state is not known yet", "5003")
    return {"data": {"status": "open" if door.get("door") == "open" else "closed",
                     "doorRequiredClosedForProtocol": False}}


async def engaged(gateway: Gateway, request: Request) -> Any:
    flags = await _call(gateway, request, "smoothie", "engaged")
    return {axis: {"enabled": bool(flags[axis.upper()])} for axis in AXES}


async def disengage(gateway: Gateway, request: Request) -> Any:
    body = await _json_body(request)
    axes = body.get("axes")
    if not isinstance(axes, list) or not axes or any(not isinstance(a, str) or a.lower() not in AXES for a in axes):
        raise RouteError(422, "field 'axes': a list of x, y, z, a, b, c is required")
    await _call(gateway, request, "smoothie", "disengage", {"axes": [a.upper() for a in axes]})
    return {"message": f"Disengaged axes: {', '.join(a.lower() for a in axes)}"}


def routes(gateway: Gateway) -> list[Route]:
    return [
        Route("/robot/lights", _route(gateway, get_lights), methods=["GET"]),
        Route("/robot/lights", _route(gateway, set_lights, write=True), methods=["POST"]),
        Route("/identify", _route(gateway, identify, write=True), methods=["POST"]),
        Route("/robot/home", _route(gateway, home, write=True), methods=["POST"]),
        Route("/robot/door/status", _route(gateway, door_status), methods=["GET"]),
        Route("/motors/engaged", _route(gateway, engaged), methods=["GET"]),
        Route("/motors/disengage", _route(gateway, disengage, write=True), methods=["POST"]),
    ]
