"""The robot-server's request conventions, shared by every route of the runner's port: the `Opentrons-Version`
header a request carries (422 without it except on /health, 400 below 2) and the version headers every answer
carries."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

API_VERSION = 4
MIN_VERSION = 2


class HttpError(Exception):
    def __init__(self, status: int, title: str, detail: str, meta: Any = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.meta = status, title, detail, meta


def version_of(request: Request) -> int:
    raw = request.headers.get("opentrons-version")
    if raw is None:
        if request.url.path == "/health":
            return API_VERSION
        raise HttpError(422, "Missing Opentrons-Version", "the Opentrons-Version header is required (an integer "
                        ">= 2, or *)")
    if raw.strip() == "*":
        return API_VERSION
    try:
        asked = int(raw)
    except ValueError:
        raise HttpError(400, "Bad Opentrons-Version", f"Opentrons-Version must be an integer or *, got {raw!r}") \
            from None
    if asked < MIN_VERSION:
        raise HttpError(400, "Unsupported Opentrons-Version", f"version {asked} is not supported; the minimum is "
                        f"{MIN_VERSION}")
    return min(asked, API_VERSION)


def version_headers(version: int) -> dict[str, str]:
    return {"Opentrons-Version": str(version), "Opentrons-Min-Version": str(MIN_VERSION)}
