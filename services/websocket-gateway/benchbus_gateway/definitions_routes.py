"""The shared-data definitions over HTTP, for tools that are not Python (a protocol designer, the dashboard).

    GET /shared-data                          what there is: {"labware": [...], "pipettes": [...], "deck": [...]}
    GET /shared-data/labware/<loadName>       a labware definition (?version=N, else the newest)
    GET /shared-data/pipettes/<name>          a pipette definition
    GET /shared-data/deck/<name>              a deck definition
    GET /shared-data/schemas/<name>           a JSON Schema (labware-2, pipette, deck)

The files are read through the protocol API's loader (`benchbus_protocol.definitions`, a client library, not a
service), so the gateway serves exactly what protocols load, validated. Read-only, no bus involved. Wiring: add
`*definitions_routes.routes()` to the route list in app.py. Without benchbus-protocol installed every route
answers 503 saying so.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PREFIX = "/shared-data"


def _loader():
    try:
        from benchbus_protocol import definitions
    except ImportError:
        return None
    return definitions


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"ok": False, "error": {"code": code, "message": message, "detail": None}}, status_code=status)


def _serve(load) -> Response:
    definitions = _loader()
    if definitions is None:
        return _error(503, "unavailable", "the definitions loader (package benchbus-protocol) is not installed")
    try:
        found = load(definitions)
    except definitions.DefinitionError as exc:
        missing = isinstance(exc, definitions.DefinitionNotFound)
        return _error(404 if missing else 500, "not_found" if missing else "internal", str(exc))
    if hasattr(found, "model_dump"):
        found = found.model_dump(mode="json", by_alias=True, exclude_none=True)
    return JSONResponse(found, headers={"Cache-Control": "max-age=60"})


def routes() -> list[Route]:
    async def index(_request: Request) -> Response:
        return _serve(lambda d: {"labware": d.labware_names(), "pipettes": d.pipette_names(),
                                 "deck": d.deck_names(), "schemas": ["labware-2", "pipette", "deck"]})

    async def labware(request: Request) -> Response:
        version = request.query_params.get("version")
        if version is not None and not version.isdigit():
            return _error(400, "invalid_request", f"field 'version': {version!r} is not a positive integer")
        name = request.path_params["name"]
        return _serve(lambda d: d.load_labware(name, int(version) if version else None))

    async def pipette(request: Request) -> Response:
        return _serve(lambda d: d.load_pipette(request.path_params["name"]))

    async def deck(request: Request) -> Response:
        return _serve(lambda d: d.load_deck(request.path_params["name"]))

    async def schema(request: Request) -> Response:
        return _serve(lambda d: d.load_schema(request.path_params["name"]))

    name = "{name:str}"
    return [
        Route(PREFIX, index, methods=["GET"]),
        Route(f"{PREFIX}/labware/{name}", labware, methods=["GET"]),
        Route(f"{PREFIX}/pipettes/{name}", pipette, methods=["GET"]),
        Route(f"{PREFIX}/deck/{name}", deck, methods=["GET"]),
        Route(f"{PREFIX}/schemas/{name}", schema, methods=["GET"]),
    ]
