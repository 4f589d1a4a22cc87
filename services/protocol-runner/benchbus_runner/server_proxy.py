"""The update-agent's `/server/*` routes on the robot-server's port, as the OT-2's proxy puts both behind 31950.

Plain ASGI in front of the runner's own routes: a request under /server goes to the update-agent's HTTP address
(`update_url`) and its answer comes back, bodies streamed both ways a chunk at a time (a 2 GiB system bundle is never
held here). Bodies are bounded at this door as the update-agent bounds them (`server_max_body_bytes`, the bundle
upload `server_max_upload_bytes`): a body past its limit is answered 413 here as it streams, and the update-agent's
request is aborted, never handed a truncated body as if it were whole. (Left to the update-agent alone, its early
413 would race the proxy's writing: its close can reset the connection before the answer is read.)

Trust: writes need the runner's token or a trusted address, as every write on this port. What the update-agent
decides from addresses (SSH keys only over a link-local interface) it reads from `X-Host-IP`, the address the client
reached here, which this proxy sets itself; a client's own X-Host-IP or X-Forwarded-* is dropped, never passed on,
so the update-agent can believe the header from this proxy alone (its `trusted_proxies` lists the runner's address).
The runner's token is not passed on; the update-agent's admin token travels in `X-Admin-Token`, or in
`Authorization` from a trusted address.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from benchbus.http_limits import ASGIApp, BodyLimit, Receive, Scope, Send
from benchbus.trust import WriteAccess, bearer

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("benchbus.runner.server_proxy")

PREFIX = "/server"
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
              b"transfer-encoding", b"upgrade", b"host"}
CLAIMS = {b"x-host-ip", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"forwarded", b"x-real-ip"}


UPLOAD_PATH = re.compile(r"/server/update/[^/]+/file")


class ClientGone(Exception):
    """The client's body ended early (it went away, or its body passed the limit): the forwarded request is void."""


class ServerProxy:
    def __init__(self, app: ASGIApp, update_url: str, access: WriteAccess, *, read_requires_token: bool,
                 max_body_bytes: int, max_upload_bytes: int):
        self.app = app
        self.update_url = update_url.rstrip("/")
        self.access = access
        self.read_requires_token = read_requires_token
        self.bounded = BodyLimit(self.forward, lambda scope: max_upload_bytes if scope["method"] == "POST" and
                                 UPLOAD_PATH.fullmatch(scope.get("path", "")) else max_body_bytes,
                                 lambda _limit, message: {"error": "Too Large", "message": message})
        self._client: httpx.AsyncClient | None = None  # made by the first forwarded request, see client()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        client, presented = caller(scope)
        write = scope["method"] not in ("GET", "HEAD", "OPTIONS")
        if (write or self.read_requires_token) and not self.access.may_write(client, presented):
            why = "wrong token" if presented else "writes need 'Authorization: Bearer <token>' (the runner's)"
            await reply(send, 401, {"error": "unauthorized", "message": f"{why}; {client} is not in a trusted "
                                                                       "network"})
            return
        await self.bounded(scope, receive, send)

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        client, presented = caller(scope)
        reached = (scope.get("server") or ("", 0))[0]
        forwarded = [(name, value) for name, value in scope.get("headers", [])
                     if name not in HOP_BY_HOP and name not in CLAIMS
                     and not (name == b"authorization" and self.access.token_ok(presented))]
        forwarded += [(b"x-host-ip", reached.encode()), (b"x-forwarded-for", client.encode())]
        url = self.update_url + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        has_body = any(name in (b"content-length", b"transfer-encoding") for name, _ in scope.get("headers", []))
        import httpx  # here, not at the top: see client()
        upstream = self.client()
        request = upstream.build_request(scope["method"], url, headers=forwarded,
                                         content=body_of(receive) if has_body else None)
        try:
            response = await upstream.send(request, stream=True)
        except ClientGone:
            return  # nothing to answer: the client is gone, or BodyLimit has answered 413
        except httpx.HTTPError as error:
            log.warning("the update-agent at %s did not answer %s %s: %s", self.update_url, scope["method"],
                        scope["path"], error)
            await reply(send, 502, {"error": "update-agent-unreachable", "message": f"the update-agent at "
                                    f"{self.update_url} did not answer: {error}"})
            return
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(name, value) for name, value in response.headers.raw
                                    if name.lower() not in HOP_BY_HOP]})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    def client(self) -> httpx.AsyncClient:
        """The client to the update-agent, made when first needed: httpx's import and the client's TLS context (the CA
        bundle loaded) are ~5 MB resident, which a runner whose /server routes nobody calls never pays (issue 21)."""
        if self._client is None:
            import httpx
            # no timeout on reading: a bundle's upload and the agent's checks of it take as long as they take
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None, write=None))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def caller(scope: Scope) -> tuple[str, str | None]:
    """The client's address (the TCP peer) and the bearer token it presented."""
    authorization = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
    return (scope.get("client") or ("", 0))[0], bearer(authorization)


async def body_of(receive: Receive) -> AsyncIterator[bytes]:
    """The client's body as it arrives; the update-agent reads (and bounds) it at its own pace."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body"):
            return


async def reply(send: Send, status: int, body: dict[str, Any]) -> None:
    """An answer of the proxy's own, in the update-agent's error shape."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
