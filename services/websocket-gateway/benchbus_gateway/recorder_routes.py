"""The recorder's history, exports and metrics through the gateway's port (the gateway never opens the database).

    GET /api/history                 from the recorder when it runs (days, survives restarts); else the in-memory ring
    GET /api/recorder/<name>?...     query, export, audit, events, status: streamed from the recorder as it sends
    GET /api/recorder/metrics        the recorder's Prometheus/OpenMetrics endpoint

The recorder publishes where its HTTP endpoint listens in its retained `recorder/state/http`; the gateway follows
every retained state of the device, so it needs no setting of its own. Responses are relayed chunk by chunk (an
export of any size passes through without being held). Reads follow the gateway's read rule (`read_requires_token`).
Wiring: `*recorder_routes.routes(gateway)` before `http.routes(gateway)` in app.py, so /api/history is ours.
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from benchbus import BusError

from .http import error_response, require_read

if TYPE_CHECKING:
    import httpx

    from .app import Gateway

log = logging.getLogger("benchbus.gateway.recorder")
NAME = re.compile(r"^[a-z_]{1,32}$")
PASSED_HEADERS = ("content-type", "content-disposition", "content-length")
RECORDER = "recorder"


def recorder_url(gateway: Gateway) -> str | None:
    state = gateway.state_of(RECORDER, "http")
    lifecycle = gateway.state_of(RECORDER) or {}
    if not isinstance(state, dict) or lifecycle.get("state") == "offline":
        return None
    url = state.get("url")
    return url.rstrip("/") if isinstance(url, str) and url.startswith("http") else None


def routes(gateway: Gateway) -> list[Route]:
    client: httpx.AsyncClient | None = None  # made by the first relay

    async def relay(request: Request, path: str) -> Response:
        nonlocal client
        base = recorder_url(gateway)
        if base is None:
            return error_response(BusError("unavailable", "the recorder is not running on this device "
                                                          "(no retained recorder/state/http)"))
        # Imported here, not at the top: httpx (with idna, http.cookiejar and the pygments its command line pulls
        # in) is ~2 MB resident, which a gateway pays only once it relays to a running recorder (issue 21).
        import httpx
        if client is None:
            client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=300.0))
        upstream = client.build_request("GET", base + path, params=request.query_params,
                                        headers={"accept": request.headers.get("accept", "*/*")})
        try:
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            log.warning("the recorder at %s did not answer: %s", base, exc)
            return error_response(BusError("unavailable", f"the recorder did not answer: {type(exc).__name__}"))
        headers = {k: v for k, v in response.headers.items() if k.lower() in PASSED_HEADERS}
        return StreamingResponse(response.aiter_raw(), status_code=response.status_code, headers=headers,
                                 background=BackgroundTask(response.aclose))

    async def named(request: Request) -> Response:
        try:
            require_read(gateway, request)
        except BusError as error:
            return error_response(error)
        name = request.path_params["name"]
        if not NAME.match(name):
            return error_response(BusError("not_found", f"no recorder route {name!r}"))
        return await relay(request, "/metrics" if name == "metrics" else f"/api/recorder/{name}")

    async def history(request: Request) -> Response:
        try:
            require_read(gateway, request)
        except BusError as error:
            return error_response(error)
        if recorder_url(gateway) is not None:
            return await relay(request, "/api/history")
        limit = request.query_params.get("limit")
        if limit is not None and not limit.isdigit():
            return JSONResponse({"ok": False, "error": {"code": "invalid_request", "detail": None,
                                                        "message": "query 'limit': a whole number >= 0 is required"}},
                                status_code=400)
        return Response(gateway.history.render(int(limit) if limit is not None else len(gateway.history)),
                        media_type="application/json")

    return [Route("/api/history", history, methods=["GET"]),
            Route("/api/recorder/{name}", named, methods=["GET"])]
