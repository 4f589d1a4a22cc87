"""Who may write through the gateway: the holder of the write token, or a client inside a trusted network.

The rule itself is benchbus.trust's (shared with the protocol-runner): the token of `<data_dir>/token` (mode 0600,
made at the first start; no token string is shipped anywhere) or the TCP peer address in `trusted_networks` (no
forwarded header is believed: nothing proxies in front of the gateway). Reads are open unless `read_requires_token`.

A refusal here is the gateway's own (HTTP 401, Socket.IO `benchbus_error` with code `unauthorized`); a request the
gateway passes on and the bus refuses comes back as 403 (the token was fine, the action is not allowed).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from benchbus.trust import WriteAccess

from .settings import GatewaySettings

log = logging.getLogger("benchbus.gateway.access")

TOKEN_FILE = "token"


class Refused(Exception):
    """The gateway refuses a request itself: `status` 401 (no or wrong token)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Caller:
    """One outside client as the gateway sees it; `on_behalf_of` is what the bus is told (attribution only)."""

    channel: str  # http, ws, socketio
    address: str
    token_ok: bool
    trusted: bool
    session: str | None = None
    presented: bool = False  # a token was given (right or wrong)

    @property
    def may_write(self) -> bool:
        return self.token_ok or self.trusted

    @property
    def on_behalf_of(self) -> str:
        who = f"{self.session}@{self.address}" if self.session else self.address
        how = "token" if self.token_ok else "trusted network" if self.trusted else "anonymous"
        return f"{self.channel}:{who} ({how})"


class Access(WriteAccess):
    """benchbus.trust's rule, with the gateway's callers and refusals."""

    def __init__(self, settings: GatewaySettings):
        super().__init__(settings.trusted_networks, settings.token, settings.data_dir)
        self.settings = settings

    def caller(self, channel: str, address: str | None, presented: str | None, session: str | None = None) -> Caller:
        return Caller(channel, address or "unknown", self.token_ok(presented), self.trusted(address), session,
                      bool(presented))

    def require_write(self, caller: Caller) -> None:
        if not caller.may_write:
            raise Refused(self.write_refusal(caller))

    def require_read(self, caller: Caller) -> None:
        if self.settings.read_requires_token and not caller.may_write:
            raise Refused(f"reads need the token on this gateway; {caller.address} is not in a trusted network")

    @staticmethod
    def write_refusal(caller: Caller) -> str:
        where = f"{caller.address} is not in a trusted network"
        if caller.presented:
            return f"wrong token; {where}"
        if caller.channel == "socketio":
            return f"writes need the token (?token=... in the connection URL); {where}"
        if caller.channel == "ws":
            return f"calls are writes: send the token first (op auth, an Authorization header or ?token=); {where}"
        return f"writes need 'Authorization: Bearer <token>'; {where}"
