"""The shared-data definitions over HTTP, for tools that are not Python (a protocol designer, the dashboard).

    GET /shared-data                          what there is: {"labware": [...], "pipettes": [...], "deck": [...]}
    GET /shared-data/labware/<loadName>       a labware definition (?version=N, else the newest)
    GET /shared-data/pipettes/<name>          an OT-2 pipette's name specification
    GET /shared-data/deck/<name>              a deck definition
    GET /shared-data/schemas/<name>           a JSON Schema (labware-2, labware-3, deck-5)

The definitions are Opentrons' own (opentrons-shared-data, the version protocols run with) plus benchbus's labware
(shared-data/labware), read through the small shared-data package `benchbus_shared_data`, not a service
package. Read-only, no bus involved. Wiring: `*definitions_routes.routes()` in app.py's route list.
"""
from __future__ import annotations

import benchbus_shared_data as definitions
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PREFIX = "/shared-data"


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"ok": False, "error": {"code": code, "message": message, "detail": None}}, status_code=status)


def _serve(load) -> Response:
    try:
        found = load(definitions)
    except definitions.DefinitionError as exc:
        missing = isinstance(exc, definitions.DefinitionNotFound)
        return _error(404 if missing else 500, "not_found" if missing else "internal", str(exc))
    return JSONResponse(found, headers={"Cache-Control": "max-age=60"})


def routes() -> list[Route]:
    async def index(_request: Request) -> Response:
        return _serve(lambda d: {"labware": d.labware_names(), "pipettes": d.pipette_names(),
                                 "deck": d.deck_names(), "schemas": d.schema_names()})

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
