"""The robot-server's hardware routes (lights, identify, home, door, motors, pipettes) on port 31950, through the
bus: gpio-service and smoothie-bridge do the work, the runner only translates. They were the gateway's; the runner
serves them now, so the App and OT-2 scripts find every robot route on one port.

These are the robot-server's older routes and answer errors in their shape, `{"message", "errorCode"}`. A motion
the bridge refuses because another client holds the robot is 403. Home waits for the bridge's own result (up to
`home_timeout_s`): no gateway timeout in between, the answer comes when the robot is homed.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchbus import BusError, CallTimeout

from .runs import Refused
from .versions import API_VERSION, HttpError, version_headers, version_of

if TYPE_CHECKING:
    from .http import Access
    from .service import Runner

AXES = ("x", "y", "z", "a", "b", "c")
STATUS_OF = {"invalid_request": 400, "unauthorized": 403, "not_found": 404, "conflict": 403, "busy": 403,
             "hardware_error": 500, "unavailable": 503, "timeout": 504, "internal": 500}
ERROR_CODE_OF = {"invalid_request": "4000", "unauthorized": "4001", "not_found": "4004", "conflict": "4003",
                 "busy": "4003", "hardware_error": "3000", "unavailable": "5003", "timeout": "5004", "internal": "4000"}

Handler = Callable[[Request, dict[str, Any]], Awaitable[Any]]


class RouteError(Exception):
    def __init__(self, status: int, message: str, code: str = "4000"):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def routes(runner: Runner, access: Access) -> list[Route]:
    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            version = API_VERSION
            try:
                version = version_of(request)
                access.check(request)
                body = await json_body(request) if request.method == "POST" else {}
                result = await handler(request, body)
            except HttpError as error:
                return legacy_error(error.status, error.detail, "4001" if error.status == 401 else "4000", version)
            except RouteError as error:
                return legacy_error(error.status, error.message, error.code, version)
            except Refused as error:
                return legacy_error(STATUS_OF.get(error.code, 500), error.message,
                                    ERROR_CODE_OF.get(error.code, "4000"), version)
            except BusError as error:
                return legacy_error(STATUS_OF.get(error.code, 500), error.message,
                                    ERROR_CODE_OF.get(error.code, "4000"), version)
            except CallTimeout as error:
                return legacy_error(503, f"the hardware did not answer: {error}", "5003", version)
            return JSONResponse(result, headers=version_headers(version))
        return wrapped

    def call(service: str, command: str, payload: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        return run_in_threadpool(runner.call, service, command, payload or {}, timeout)

    async def get_lights(_request: Request, _body: dict[str, Any]) -> Any:
        return {"on": (await call("gpio", "get_lights"))["on"]}

    async def set_lights(_request: Request, body: dict[str, Any]) -> Any:
        if not isinstance(body.get("on"), bool):
            raise RouteError(422, "field 'on': a boolean is required")
        await call("gpio", "set_rail_lights", {"on": body["on"]})
        return {"on": body["on"]}

    async def identify(request: Request, _body: dict[str, Any]) -> Any:
        raw = request.query_params.get("seconds")
        try:
            seconds = float(raw) if raw is not None else None
        except ValueError:
            seconds = None
        if seconds is None:
            raise RouteError(422, f"query parameter 'seconds': a number is required, got {raw!r}")
        await call("gpio", "identify", {"seconds": seconds, "period_s": 0.5})
        return {"message": "identifying"}

    async def home(_request: Request, body: dict[str, Any]) -> Any:
        target, mount = body.get("target"), body.get("mount")
        if target not in ("robot", "pipette"):
            raise RouteError(400, f"field 'target': 'robot' or 'pipette', got {target!r}")
        if target == "pipette" and mount not in ("left", "right"):
            raise RouteError(400, "field 'mount': 'left' or 'right' is required for a pipette target")
        await run_in_threadpool(runner.home, mount if target == "pipette" else None)
        return {"message": "Homing robot." if target == "robot" else f"Pipette on {mount} homed successfully"}

    async def door_status(_request: Request, _body: dict[str, Any]) -> Any:
        bus = runner.bus
        try:
            _topic, door = await run_in_threadpool(bus.wait_for, bus.topic("gpio", "state", "door"),
                                                   lambda _t, _d: True, 2.0)
        except CallTimeout:
            raise RouteError(503, "the door state is not known yet (is gpio-service running?)", "5003") from None
        return {"data": {"status": "open" if door.get("door") == "open" else "closed",
                         "doorRequiredClosedForProtocol": False}}

    async def engaged(_request: Request, _body: dict[str, Any]) -> Any:
        flags = await call("smoothie", "engaged")
        return {axis: {"enabled": bool(flags[axis.upper()])} for axis in AXES}

    async def disengage(_request: Request, body: dict[str, Any]) -> Any:
        axes = body.get("axes")
        if not isinstance(axes, list) or not axes or any(not isinstance(a, str) or a.lower() not in AXES
                                                         for a in axes):
            raise RouteError(422, "field 'axes': a list of x, y, z, a, b, c is required")
        await call("smoothie", "disengage", {"axes": [a.upper() for a in axes]})
        return {"message": f"Disengaged axes: {', '.join(a.lower() for a in axes)}"}

    async def pipettes(_request: Request, _body: dict[str, Any]) -> Any:
        return await run_in_threadpool(runner.attached_pipettes)

    return [
        Route("/robot/lights", endpoint(get_lights), methods=["GET"]),
        Route("/robot/lights", endpoint(set_lights), methods=["POST"]),
        Route("/identify", endpoint(identify), methods=["POST"]),
        Route("/robot/home", endpoint(home), methods=["POST"]),
        Route("/robot/door/status", endpoint(door_status), methods=["GET"]),
        Route("/motors/engaged", endpoint(engaged), methods=["GET"]),
        Route("/motors/disengage", endpoint(disengage), methods=["POST"]),
        Route("/pipettes", endpoint(pipettes), methods=["GET"]),
    ]


async def json_body(request: Request) -> dict[str, Any]:
    body = await request.body()  # the runner's BodyLimit bounds it
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError as error:
        raise RouteError(422, f"body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise RouteError(422, "body must be a JSON object")
    return data


def legacy_error(status: int, message: str, code: str, version: int) -> JSONResponse:
    return JSONResponse({"message": message, "errorCode": code}, status_code=status, headers=version_headers(version))
