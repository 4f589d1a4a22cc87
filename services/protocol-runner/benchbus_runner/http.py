"""The robot-server's HTTP API for protocols and runs, on the OT-2's port 31950, served by the runner itself.

Conventions of the robot server: a request carries `Opentrons-Version: <int >= 2 or *>` (422 without it, 400 below
2; GET /health needs none); responses carry `Opentrons-Version` and `Opentrons-Min-Version`; resources come as
`{"data": ...}`, lists with `meta`; errors as `{"errors": [{"id", "title", "detail", "errorCode"}]}`.

Besides protocols and runs: the robot-server's hardware routes (robot_routes.py: lights, identify, home, door,
motors, pipettes) and the update-agent's /server/* (server_proxy.py, passed on to `update_url`), so the App finds
everything on one port. Every body is bounded as it streams (413): `max_body_bytes`, and /server/*'s as the
update-agent bounds them.

Writes (POST, DELETE) need `Authorization: Bearer <token>` or a client address in `trusted_networks` (the same
rule as the gateway's, benchbus.trust: the token of `<data_dir>/token`, mode 0600, made at the first start);
otherwise 401.
Blocking work (a child process, the bus) runs in Starlette's thread pool, never on the event loop.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchbus.http_limits import ASGIApp, BodyLimit
from benchbus.trust import WriteAccess, bearer

from . import robot_routes

from .runs import Refused, now_iso
from .server_proxy import ServerProxy
from .versions import API_VERSION, HttpError, version_headers, version_of

if TYPE_CHECKING:
    from .service import Runner

STATUS_OF = {"invalid_request": 422, "not_found": 404, "conflict": 409, "busy": 409, "unauthorized": 401,
             "hardware_error": 500, "unavailable": 503, "timeout": 504, "internal": 500}


# -- who may write (the gateway's rule: the token, or a trusted address) ------------------------------------------

class Access(WriteAccess):
    """benchbus.trust's rule (the gateway's too); reads are open unless `read_requires_token`."""

    def __init__(self, runner: Runner):
        settings = runner.settings
        super().__init__(settings.trusted_networks, settings.token, settings.data_dir)
        self.read_requires_token = settings.read_requires_token

    def check(self, request: Request) -> None:
        write = request.method not in ("GET", "HEAD", "OPTIONS")
        if not write and not self.read_requires_token:
            return
        address = request.client.host if request.client else None
        presented = bearer(request.headers.get("authorization"))
        if self.may_write(address, presented):
            return
        why = "wrong token" if presented else "writes need 'Authorization: Bearer <token>'"
        raise HttpError(401, "Unauthorized", f"{why}; {address} is not in a trusted network")


# -- the application ----------------------------------------------------------------------------------------------

def error_response(status: int, title: str, detail: str, meta: Any = None, version: int = API_VERSION) -> Response:
    body = {"errors": [{"id": title.replace(" ", ""), "title": title, "detail": detail, "errorCode": "4000",
                        **({"meta": meta} if meta is not None else {})}]}
    return JSONResponse(body, status_code=status, headers=version_headers(version))


def create_app(runner: Runner) -> tuple[ASGIApp, Access]:
    access = Access(runner)
    manager = runner.manager
    settings = runner.settings

    def endpoint(handler: Any, status: int = 200) -> Any:
        async def wrapped(request: Request) -> Response:
            version = API_VERSION
            try:
                version = version_of(request)
                access.check(request)
                body = await read_json(request) if request.headers.get("content-type", "").startswith(
                    "application/json") else None
                result = await handler(request, body)
            except HttpError as error:
                return error_response(error.status, error.title, error.detail, error.meta, version)
            except Refused as error:
                return error_response(STATUS_OF.get(error.code, 400), error.code, error.message, error.detail,
                                      version)
            if isinstance(result, Response):
                result.headers.update(version_headers(version))
                return result
            return JSONResponse(result, status_code=status, headers=version_headers(version))
        return wrapped

    async def read_json(request: Request) -> Any:
        raw = await request.body()  # at most max_body_bytes: BodyLimit refused a longer one (413)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as error:
            raise HttpError(400, "Invalid JSON", f"the body is not JSON: {error}") from None

    def data_of(body: Any) -> dict[str, Any]:
        if body is None:
            return {}
        if not isinstance(body, dict) or not isinstance(body.get("data", {}), dict):
            raise HttpError(422, "Invalid Request", "the body must be {\"data\": {...}}")
        return body.get("data") or {}

    # -- robot ---------------------------------------------------------------------------------------------------

    async def health(_request: Request, _body: Any) -> Any:
        from opentrons import __version__ as opentrons_version
        from opentrons.protocols.api_support.definitions import MAX_SUPPORTED_VERSION, MIN_SUPPORTED_VERSION

        return {"name": runner.device, "robot_model": "OT-2 Standard", "api_version": opentrons_version,
                "fw_version": "benchbus smoothie-bridge", "board_revision": "benchbus",
                "logs": [], "system_version": runner.version, "robot_serial": runner.device,
                "minimum_protocol_api_version": list(MIN_SUPPORTED_VERSION),
                "maximum_protocol_api_version": list(MAX_SUPPORTED_VERSION),
                "links": {"apiLog": "", "serialLog": "", "serverLog": "", "apiSpec": "", "systemTime": ""},
                "hostname": socket.gethostname()}

    # -- protocols -----------------------------------------------------------------------------------------------

    async def upload(request: Request, _body: Any) -> Any:
        try:
            form = await request.form(max_files=64, max_fields=64)
        except Exception as error:
            raise HttpError(422, "Invalid Request", f"a multipart form with 'files' was expected: {error}") from None
        files = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        python = [f for f in files if (f.filename or "").endswith(".py")]
        if len(python) != 1:
            raise HttpError(422, "Invalid Request", f"files: exactly one .py protocol, got {len(python)}")
        labware = []
        for item in files:
            if not (item.filename or "").endswith(".json"):
                continue
            labware.append((Path(item.filename or "").name, (await item.read()).decode("utf-8", errors="replace")))
        source = (await python[0].read()).decode("utf-8", errors="replace")
        info = await run_in_threadpool(manager.upload, Path(python[0].filename or "").name, source, labware)
        return JSONResponse({"data": protocol_resource(info)}, status_code=201)

    async def protocols(_request: Request, _body: Any) -> Any:
        found = [protocol_resource(p) for p in await run_in_threadpool(manager.protocols)]
        return {"data": found, "meta": {"cursor": 0, "totalLength": len(found)}}

    async def protocol(request: Request, _body: Any) -> Any:
        return {"data": protocol_resource(manager.protocol(request.path_params["protocol_id"]))}

    async def analyses(request: Request, _body: Any) -> Any:
        info = manager.protocol(request.path_params["protocol_id"])
        return {"data": [analysis_resource(info)], "meta": {"cursor": 0, "totalLength": 1}}

    async def delete_protocol(request: Request, _body: Any) -> Any:
        await run_in_threadpool(manager.delete_protocol, request.path_params["protocol_id"])
        return {}

    # -- runs ----------------------------------------------------------------------------------------------------

    async def create_run(_request: Request, body: Any) -> Any:
        protocol_id = data_of(body).get("protocolId")
        if protocol_id is not None and not isinstance(protocol_id, str):
            raise HttpError(422, "Invalid Request", "data.protocolId: a protocol id (text)")
        run = await run_in_threadpool(manager.create_run, protocol_id)
        return JSONResponse({"data": run_resource(run, run["id"] == manager.current_id)}, status_code=201)

    async def runs(_request: Request, _body: Any) -> Any:
        found = [run_resource(r, r["id"] == manager.current_id) for r in list(manager.runs.values())]
        links = {"current": {"href": f"/runs/{manager.current_id}"}} if manager.current_id else {}
        return {"data": found, "links": links, "meta": {"cursor": 0, "totalLength": len(found)}}

    async def run(request: Request, _body: Any) -> Any:
        run_id = request.path_params["run_id"]
        return {"data": run_resource(manager.run(run_id), run_id == manager.current_id)}

    async def delete_run(request: Request, _body: Any) -> Any:
        await run_in_threadpool(manager.delete_run, request.path_params["run_id"])
        return {}

    async def action(request: Request, body: Any) -> Any:
        run_id = request.path_params["run_id"]
        kind = data_of(body).get("actionType")
        verbs = {"play": manager.play, "pause": manager.pause, "stop": manager.stop}
        if kind not in verbs:
            raise HttpError(422, "Invalid Request", f"data.actionType: one of {', '.join(verbs)}, not {kind!r}")
        await run_in_threadpool(verbs[kind], run_id)
        return JSONResponse({"data": {"id": f"{kind}-{now_iso()}", "createdAt": now_iso(), "actionType": kind}},
                            status_code=201)

    async def commands(request: Request, _body: Any) -> Any:
        found = await run_in_threadpool(manager.commands, request.path_params["run_id"])
        return {"data": found, "meta": {"cursor": 0, "totalLength": len(found)}, "links": {}}

    async def command(request: Request, _body: Any) -> Any:
        found = await run_in_threadpool(manager.live_get_command, request.path_params["run_id"],
                                        request.path_params["command_id"])
        return {"data": found}

    async def add_command(request: Request, body: Any) -> Any:
        wait = request.query_params.get("waitUntilComplete", "false").lower() == "true"
        timeout = request.query_params.get("timeout")
        if timeout is not None and not (timeout.isdigit() and 0 < int(timeout) <= 600_000):
            raise HttpError(422, "Invalid Request", "timeout: milliseconds, 1 to 600000")
        create = data_of(body)
        if not create:
            raise HttpError(422, "Invalid Request", "data: a command ({\"commandType\", \"params\", \"intent\"})")
        found = await run_in_threadpool(manager.live_command, request.path_params["run_id"], create, wait,
                                        int(timeout) if timeout else None)
        return JSONResponse({"data": found}, status_code=201)

    async def labware_definition(request: Request, body: Any) -> Any:
        definition = data_of(body)
        found = await run_in_threadpool(manager.add_labware, request.path_params["run_id"], definition)
        return JSONResponse({"data": found}, status_code=201)

    routes = [
        Route("/health", endpoint(health), methods=["GET"]),
        Route("/protocols", endpoint(upload), methods=["POST"]),
        Route("/protocols", endpoint(protocols), methods=["GET"]),
        Route("/protocols/{protocol_id}", endpoint(protocol), methods=["GET"]),
        Route("/protocols/{protocol_id}", endpoint(delete_protocol), methods=["DELETE"]),
        Route("/protocols/{protocol_id}/analyses", endpoint(analyses), methods=["GET"]),
        Route("/runs", endpoint(create_run), methods=["POST"]),
        Route("/runs", endpoint(runs), methods=["GET"]),
        Route("/runs/{run_id}", endpoint(run), methods=["GET"]),
        Route("/runs/{run_id}", endpoint(delete_run), methods=["DELETE"]),
        Route("/runs/{run_id}/actions", endpoint(action), methods=["POST"]),
        Route("/runs/{run_id}/commands", endpoint(commands), methods=["GET"]),
        Route("/runs/{run_id}/commands", endpoint(add_command), methods=["POST"]),
        Route("/runs/{run_id}/commands/{command_id}", endpoint(command), methods=["GET"]),
        Route("/runs/{run_id}/labware_definitions", endpoint(labware_definition), methods=["POST"]),
        *robot_routes.routes(runner, access),
    ]
    app: ASGIApp = BodyLimit(Starlette(routes=routes), lambda _scope: settings.max_body_bytes, too_large)
    if settings.update_url:
        app = ServerProxy(app, settings.update_url, access, read_requires_token=settings.read_requires_token,
                          max_body_bytes=settings.server_max_body_bytes,
                          max_upload_bytes=settings.server_max_upload_bytes)
    return app, access


def too_large(_limit: int, message: str) -> dict[str, Any]:
    return {"errors": [{"id": "TooLarge", "title": "Too Large", "detail": message, "errorCode": "4000"}]}


def protocol_resource(info: dict[str, Any]) -> dict[str, Any]:
    analysis = info["analysis"]
    return {"id": info["id"], "createdAt": info["created_at"], "protocolType": "python", "robotType": "OT-2 Standard",
            "files": [{"name": info["file_name"], "role": "main"}]
            + [{"name": name, "role": "labware"} for name in info.get("labware_files", [])],
            "metadata": {}, "key": None,
            "analysisSummaries": [{"id": f"{info['id']}-analysis", "status": "completed"}],
            "apiLevel": analysis.get("api_level")}


def analysis_resource(info: dict[str, Any]) -> dict[str, Any]:
    analysis = info["analysis"]
    return {"id": f"{info['id']}-analysis", "status": "completed", "result": analysis["result"],
            "steps": analysis.get("steps", []), "labware": analysis.get("labware", []),
            "pipettes": analysis.get("pipettes", []), "errors": analysis.get("errors", [])}


def run_resource(run: dict[str, Any], current: bool) -> dict[str, Any]:
    return {"id": run["id"], "createdAt": run["created_at"], "status": run["status"], "current": current,
            "protocolId": run.get("protocol_id"), "startedAt": run.get("started_at"),
            "completedAt": run.get("completed_at"), "actions": [], "errors": [
                {"id": f"error-{i}", "errorType": e["error_type"], "detail": e["detail"], "createdAt": run.get(
                    "completed_at"), "errorCode": "4000", "step": e.get("step")} for i, e in enumerate(run["errors"])],
            "pipettes": [], "labware": [], "modules": [], "labwareOffsets": [], "liquids": [],
            "hasEverEnteredErrorRecovery": False, "currentStep": run.get("current_step"),
            "progress": run.get("progress"), "pausedReason": run.get("paused_reason")}
