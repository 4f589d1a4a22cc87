"""The update server's HTTP routes (OT-2 reference §3.2), on Starlette; `HttpServer` runs uvicorn on a thread.

Errors are the reference's: `{"error": <short>, "message": <long>}` with its status codes. The upload
(`POST /server/update/{token}/file`) is parsed as it arrives: multipart parts go through python-multipart's push
parser straight into the session's file, a chunk at a time; nothing holds the body. A raw `application/zip` (or
octet-stream) body is accepted too (`curl --data-binary @bundle.zip`).

Key management (`/server/ssh_keys`) is allowed only when the address the client reached us on is link-local
(169.254/16, fe80::/10) - `X-Host-IP` (and `X-Forwarded-For`, the client) only when the request comes from a proxy in
`trusted_proxies` (default none: from anyone else the headers are claims and are ignored; the protocol-runner, which
serves /server/* on 31950, is such a proxy when listed) - or with the admin token (`Authorization: Bearer <token>`
or `X-Admin-Token`).

`POST /server/update/begin` takes `?force=true` (or the JSON body `{"force": true}`) to install a bundle older than
the running system; forcing needs the admin token (403 without). Every body is bounded while it streams (limits.py).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import time
from typing import TYPE_CHECKING

import uvicorn
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchbus.http_limits import BodyLimit, Scope

from . import names, sshkeys
from .agent import UpdateAgent
from .session import SessionError, Upload

if TYPE_CHECKING:  # python-multipart declares it for type checkers only
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger("benchbus.update.http")
FILE_FIELDS = (b"ot2-system.zip", b"system-update.zip")
RAW_TYPES = (b"application/zip", b"application/x-zip-compressed", b"application/octet-stream")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file's own bytes


def error(status: int, short: str, message: str) -> JSONResponse:
    return JSONResponse({"error": short, "message": message}, status_code=status)


def session_error(exc: SessionError) -> JSONResponse:
    return error(exc.status, exc.short, exc.message)


class FilePart:
    """Push-parser callbacks: keep the first part named like a bundle, write its data to the upload."""

    def __init__(self, upload: Upload):
        self.upload = upload
        self.found = False
        self._in_file = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._in_file = not self.found and params.get(b"name") in FILE_FIELDS

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.upload.write(data[start:end])  # other fields are read past and dropped, as the reference does

    def _part_end(self) -> None:
        if self._in_file:
            self.found = True
            self._in_file = False


def build_app(agent: UpdateAgent) -> BodyLimit:
    routes = UpdateRoutes(agent)
    settings = agent.settings

    def limit_for(scope: Scope) -> int:
        if scope.get("method") == "POST" and UPLOAD_PATH.fullmatch(scope.get("path", "")):
            return settings.max_upload_bytes + MULTIPART_OVERHEAD
        return settings.max_body_bytes

    return BodyLimit(Starlette(routes=routes.table()), limit_for,
                     lambda _limit, message: {"error": "Too Large", "message": message})


class UpdateRoutes:
    """The routes, one method each, over the agent (its session, keys and name)."""

    def __init__(self, agent: UpdateAgent):
        self.agent = agent
        self.updates = agent.updates
        self.settings = agent.settings

    def table(self) -> list[Route]:
        return [
            Route("/server/update/health", self.health, methods=["GET"]),
            Route("/server/update/begin", self.begin, methods=["POST"]),
            Route("/server/update/cancel", self.cancel, methods=["POST"]),
            Route("/server/update/{token}/status", self.status, methods=["GET"]),
            Route("/server/update/{token}/file", self.file, methods=["POST"]),
            Route("/server/update/{token}/commit", self.commit, methods=["POST"]),
            Route("/server/restart", self.restart, methods=["POST"]),
            Route("/server/ssh_keys", self.list_keys, methods=["GET"]),
            Route("/server/ssh_keys", self.add_key, methods=["POST"]),
            Route("/server/ssh_keys", self.clear_keys, methods=["DELETE"]),
            Route("/server/ssh_keys/{key_id:path}", self.remove_key, methods=["DELETE"]),
            Route("/server/name", self.get_name, methods=["GET"]),
            Route("/server/name", self.set_name, methods=["POST"]),
        ]

    # -- the session ------------------------------------------------------------------------------------------

    async def health(self, _request: Request) -> JSONResponse:
        return JSONResponse(self.agent.health(), headers={"Access-Control-Allow-Origin": "*"})

    async def begin(self, request: Request) -> JSONResponse:
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await _json_body(request)
            if not isinstance(body, dict) or not isinstance(body.get("force", False), bool):
                return error(400, "bad-request", "the body must be JSON like {\"force\": true}")
            force = force or body.get("force", False)
        if force and not self.agent.admin_token_ok(_presented_admin_token(request)):
            return error(403, "force-needs-admin", "forcing an update (a bundle older than the running system) "
                         "needs the admin token (Authorization: Bearer <token> or X-Admin-Token)")
        try:
            return JSONResponse({"token": self.updates.begin(force=force)}, status_code=201)
        except SessionError as exc:
            return session_error(exc)

    async def cancel(self, _request: Request) -> JSONResponse:
        self.updates.cancel()
        return JSONResponse({"message": "Session cancelled"})

    async def status(self, request: Request) -> JSONResponse:
        try:
            return JSONResponse(self.updates.status(request.path_params["token"]).public())
        except SessionError as exc:
            return session_error(exc)

    async def file(self, request: Request) -> JSONResponse:
        token = request.path_params["token"]
        content_type, params = parse_options_header(request.headers.get("content-type", ""))
        multipart = content_type == b"multipart/form-data"
        refused = self._refused_upload(request, content_type, multipart, params)
        if refused is not None:
            return refused
        try:
            upload = self.updates.open_upload(token)
        except SessionError as exc:
            return session_error(exc)
        part = FilePart(upload)
        parser = MultipartParser(params[b"boundary"], part.callbacks()) if multipart else None
        failed = await self._receive(request, token, upload, parser)
        if failed is not None:
            return failed
        if parser is not None and not part.found:
            upload.fail(None)
            return error(400, "no-file-name", "no part named 'ot2-system.zip' or 'system-update.zip' in the upload")
        upload.finish()
        return JSONResponse(self.updates.current().public(), status_code=201)

    def _refused_upload(self, request: Request, content_type: bytes, multipart: bool,
                        params: dict[bytes, bytes]) -> JSONResponse | None:
        """What is wrong with an upload before a byte of it is read: its type, boundary or declared size."""
        if not multipart and content_type not in RAW_TYPES:
            return error(400, "no-file-name", "send the bundle as multipart/form-data in the field "
                         "'ot2-system.zip' (or 'system-update.zip'), or as a raw application/zip body")
        if multipart and not params.get(b"boundary"):
            return error(400, "bad-request", "the multipart body has no boundary")
        declared = request.headers.get("content-length")
        limit = self.settings.max_upload_bytes
        if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
            return error(413, "Too Large", f"the upload is {declared} bytes; the limit is {limit}")
        return None

    @staticmethod
    async def _receive(request: Request, token: str, upload: Upload,
                       parser: MultipartParser | None) -> JSONResponse | None:
        """Stream the body into the upload, a chunk at a time; the error response when it fails, else None."""
        try:
            async for chunk in request.stream():
                if parser is not None:
                    parser.write(chunk)
                else:
                    upload.write(chunk)
            if parser is not None:
                parser.finalize()
        except SessionError as exc:
            upload.fail(exc)
            return session_error(exc)
        except ClientDisconnect:
            upload.fail(None)
            log.warning("the client went away during the upload of session %s; it may send the file again", token)
            return error(400, "upload-interrupted", "the connection closed before the whole file arrived")
        except MultipartParseError as exc:
            upload.fail(None)
            return error(400, "bad-request", f"the multipart body is malformed: {exc}")
        return None

    async def commit(self, request: Request) -> JSONResponse:
        try:
            return JSONResponse(self.updates.commit(request.path_params["token"]).public())
        except SessionError as exc:
            return session_error(exc)

    async def restart(self, _request: Request) -> JSONResponse:
        self.agent.restart()
        return JSONResponse({"message": f"Restarting in {self.settings.restart_delay_s:g}s"})

    # -- SSH keys ---------------------------------------------------------------------------------------------

    def _key_access(self, request: Request) -> JSONResponse | None:
        if self.agent.admin_token_ok(_presented_admin_token(request)):
            return None
        client, local = self._addresses(request)
        if sshkeys.is_link_local(local):
            return None
        log.info("refused SSH key management to %s (it reached %s)", client, local or "unknown")
        return error(403, "bad-interface", f"SSH keys can be managed only over a link-local address "
                     f"(169.254/16, fe80::/10) or with the admin token; this request from {client or 'unknown'} "
                     f"came to {local or 'unknown'}")

    def _addresses(self, request: Request) -> tuple[str, str]:
        """(the client, the address it reached): the TCP peer and our own address; through a proxy in
        `trusted_proxies` (the protocol-runner on 31950, nginx), what that proxy says: X-Forwarded-For, X-Host-IP."""
        peer = request.client.host if request.client else ""
        local = (request.scope.get("server") or ("", 0))[0]
        forwarded = request.headers.get("x-forwarded-for", "")
        reached = request.headers.get("x-host-ip", "")
        if not _within(peer, self.settings.trusted_proxies):
            if forwarded or reached:
                log.info("ignored X-Host-IP %r / X-Forwarded-For %r from %s: not a trusted proxy", reached, forwarded,
                         peer)
            return peer, local
        return forwarded.split(",")[-1].strip() or peer, reached or local

    async def list_keys(self, request: Request) -> JSONResponse:
        refused = self._key_access(request)
        if refused:
            return refused
        return JSONResponse({"public_keys": [key.describe() for key in self.agent.keys.list()]})

    async def add_key(self, request: Request) -> JSONResponse:
        refused = self._key_access(request)
        if refused:
            return refused
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("key"), str):
            return error(400, "no-key", "the body must be JSON with a string 'key'")
        try:
            key, added = self.agent.keys.add(body["key"])
        except sshkeys.InvalidKey as exc:
            return error(400, "bad-key", str(exc))
        message = "Added key" if added else "Key already present"
        return JSONResponse({"message": message, "key_md5": key.md5, "id": key.fingerprint},
                            status_code=201 if added else 200)

    async def clear_keys(self, request: Request) -> JSONResponse:
        refused = self._key_access(request)
        if refused:
            return refused
        count = self.agent.keys.clear()
        return JSONResponse({"message": f"Keys cleared ({count}). Restart robot to take effect",
                             "restart_url": "/server/restart"})

    async def remove_key(self, request: Request) -> JSONResponse:
        refused = self._key_access(request)
        if refused:
            return refused
        try:
            key = self.agent.keys.remove(request.path_params["key_id"])
        except sshkeys.NotFound as exc:
            return error(404, "invalid-key-hash", str(exc))
        return JSONResponse({"message": f"Key {key.fingerprint} deleted. Restart robot to take effect",
                             "restart_url": "/server/restart"})

    # -- the name ---------------------------------------------------------------------------------------------

    async def get_name(self, _request: Request) -> JSONResponse:
        name, hostname = self.agent.names.get()
        return JSONResponse({"name": name, "hostname": hostname})

    async def set_name(self, request: Request) -> JSONResponse:
        body = await _json_body(request)
        if not isinstance(body, dict) or "name" not in body:
            return error(400, "bad-name", "the body must be JSON with a 'name'")
        try:
            name, hostname = self.agent.set_name(body["name"])
        except names.InvalidName as exc:
            return error(400, "bad-name", str(exc))
        return JSONResponse({"name": name, "hostname": hostname})


UPLOAD_PATH = re.compile(r"/server/update/[^/]+/file")


async def _json_body(request: Request):
    """A small JSON body (a key, a name; limits.BodyLimit bounds it); None when it is not JSON."""
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def _presented_admin_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.headers.get("x-admin-token")


def _within(host: str, networks: list) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address.version == network.version and address in network for network in networks)


class HttpServer:
    """uvicorn on a thread of its own (the service's main thread runs the bus loop)."""

    def __init__(self, app: BodyLimit, host: str, port: int):
        # proxy_headers off: uvicorn would believe X-Forwarded-For from loopback; trusted_proxies decides here.
        # asyncio's own loop, not uvloop (which "auto" picks where the gateway installed it): uvloop is 1.5 MB resident,
        # and one upload at a time, bound by hashing and writing the slot, does not go faster on it (issue 21).
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", loop="asyncio",
                                                    access_log=False, lifespan="off", proxy_headers=False))
        self.thread = threading.Thread(target=self.server.run, name="update-http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start (is the port taken?)")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
