"""Serving the live dashboard: its static files at `/`, and uPlot's files straight from the npm install.

The dashboard lives beside this package in `services/websocket-gateway/dashboard/` (plain HTML, CSS and JS in
`public/`, uPlot installed by `npm ci` into `node_modules/`). Nothing is built or copied: `/vendor/uplot/` is a
static route onto `node_modules/uplot/dist`. An image that ships the dashboard elsewhere sets `static_dir` (and
puts uPlot's dist files in `<static_dir>/vendor/uplot/`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from .settings import GatewaySettings

log = logging.getLogger("benchbus.gateway.dashboard")

BUNDLED = Path(__file__).resolve().parents[1] / "dashboard"
UPLOT_DIST = Path("node_modules") / "uplot" / "dist"


def static_dir(settings: GatewaySettings) -> Path | None:
    """The directory served at `/`: the configured one, else the dashboard of this checkout when it is there."""
    if settings.static_dir is not None:
        return Path(settings.static_dir)
    if not settings.dashboard:
        return None
    return BUNDLED / "public"


def routes(settings: GatewaySettings) -> list[BaseRoute]:
    """Mounts to append after every API route (the `/` mount catches everything else)."""
    folder = static_dir(settings)
    if folder is None:
        return []
    if not folder.is_dir():
        log.warning("no dashboard: %s is not a directory", folder)
        return []
    mounts: list[BaseRoute] = []
    uplot = BUNDLED / UPLOT_DIST
    if settings.dashboard and uplot.is_dir():
        mounts.append(Mount("/vendor/uplot", StaticFiles(directory=str(uplot)), name="uplot"))
    elif settings.dashboard and not (folder / "vendor" / "uplot").is_dir():
        log.warning("the dashboard's charts need uPlot: run `npm ci` in %s", BUNDLED)
    mounts.append(Mount("/", StaticFiles(directory=str(folder), html=True), name="static"))
    return mounts
