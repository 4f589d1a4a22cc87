"""Plain HTTP: health, the `$state` (and retained state) of every service, recent broadcasts, and command calls.

    GET  /health                       the gateway's own health (the OT-2's routes are the protocol-runner's, 31950)
    GET  /api/state                    {service: $state} for every service of the device
    GET  /api/state/{service}          {"$state": ..., "state": {name: value}} of one service
    GET  /api/history?limit=N          the most recent scheduler broadcasts, oldest first
    POST /api/call/{service}/{command} body = the request; needs `Authorization: Bearer <token>` (or a client
                                       address in `trusted_networks`)
A lab's central gateway takes `?device=<id>` on /api/state and /api/call for any device on its broker (lab.py).
Reads are open unless `read_requires_token`; error replies carry the bus error body and a matching HTTP status:
401 when the gateway refuses (no token, wrong token, not a trusted address), 403 when the gateway passed the request
on and the bus refused it (the token was fine; the action is not allowed). Bodies are bounded by limits.py (413).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchbus import BusError, trust
from benchbus_schemas import topics

from . import lab
from .access import Caller, Refused

if TYPE_CHECKING:
    from .app import Gateway

# an `unauthorized` from the bus is 403: the gateway's own refusals (401) never reach the bus
STATUS_OF = {"invalid_request": 400, "unauthorized": 403, "not_found": 404, "conflict": 409, "busy": 409,
             "hardware_error": 502, "unavailable": 503, "timeout": 504, "internal": 500}


def bearer(request: Request) -> str | None:
    return trust.bearer(request.headers.get("authorization"))


def error_response(error: BusError) -> JSONResponse:
    return JSONResponse({"ok": False, "error": {"code": error.code, "message": error.message, "detail": error.detail}},
                        status_code=STATUS_OF.get(error.code, 500))


def refused_response(refusal: Refused) -> JSONResponse:
    return JSONResponse({"ok": False, "error": {"code": "unauthorized", "message": refusal.message, "detail": None}},
                        status_code=refusal.status, headers={"WWW-Authenticate": 'Bearer realm="benchbus"'})


def caller_of(gateway: Gateway, request: Request) -> Caller:
    return gateway.access.caller("http", request.client.host if request.client else None, bearer(request))


def require_write(gateway: Gateway, request: Request) -> Caller:
    caller = caller_of(gateway, request)
    gateway.access.require_write(caller)
    return caller


def require_read(gateway: Gateway, request: Request) -> None:
    gateway.access.require_read(caller_of(gateway, request))


def routes(gateway: Gateway) -> list[Route]:
    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True, "service": "gateway", "device": gateway.device,
                             "bus_connected": gateway.bridge.connected(), "clients": gateway.client_counts()})

    async def all_states(request: Request) -> Response:
        try:
            require_read(gateway, request)
            device = lab.target_device(gateway, request.query_params.get("device")) or gateway.device
        except Refused as refusal:
            return refused_response(refusal)
        except BusError as error:
            return error_response(error)
        states = {}
        for topic_name, (_text, data) in gateway.retained.items():
            parsed = topics.parse(topic_name)
            if parsed and parsed[0] == device and parsed[2] == "$state":
                states[parsed[1]] = data
        return JSONResponse(dict(sorted(states.items())))

    async def one_service(request: Request) -> Response:
        try:
            require_read(gateway, request)
        except Refused as refusal:
            return refused_response(refusal)
        service = request.path_params["service"]
        lifecycle = gateway.state_of(service)
        values = {}
        for topic_name, (_text, data) in gateway.retained.items():
            parsed = topics.parse(topic_name)
            if parsed and parsed[1] == service and parsed[2] == "state":
                values[parsed[3]] = data
        if lifecycle is None and not values:
            return error_response(BusError("not_found", f"no service '{service}' has published on this device"))
        return JSONResponse({"$state": lifecycle, "state": values})

    async def history(request: Request) -> Response:
        try:
            require_read(gateway, request)
            limit = _int_param(request, "limit", len(gateway.history))
        except Refused as refusal:
            return refused_response(refusal)
        except BusError as error:
            return error_response(error)
        return Response(gateway.history.render(limit), media_type="application/json")

    async def call(request: Request) -> Response:
        try:
            caller = require_write(gateway, request)
            body = await request.body()  # at most max_payload_bytes: limits.BodyLimit refused a longer one
            try:
                payload: Any = json.loads(body) if body.strip() else {}
            except ValueError as exc:
                raise BusError("invalid_request", f"body is not valid JSON: {exc}") from None
            device = lab.target_device(gateway, request.query_params.get("device"))
            result = await gateway.bridge.call(request.path_params["service"], request.path_params["command"], payload,
                                               gateway.settings.call_timeout_s, caller.on_behalf_of, device)
        except Refused as refusal:
            return refused_response(refusal)
        except BusError as error:
            return error_response(error)
        return JSONResponse({"ok": True, "result": result})

    return [
        Route("/health", health, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/state", all_states, methods=["GET"]),
        Route("/api/state/{service}", one_service, methods=["GET"]),
        Route("/api/history", history, methods=["GET"]),
        Route("/api/call/{service}/{command}", call, methods=["POST"]),
    ]


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BusError("invalid_request", f"query '{name}': a whole number >= 0 is required")
    return int(raw)
