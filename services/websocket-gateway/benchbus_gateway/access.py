"""Who may write through the gateway: the holder of the write token, or a client inside a trusted network.

The token is made at the first start (`secrets.token_urlsafe`, 256 bits) and kept in `<data_dir>/token` with mode
0600; no token string is shipped anywhere. Reads are open unless `read_requires_token`. The address of a client
is the peer address of its TCP connection: the gateway takes no forwarded header (nothing proxies in front of it).

A refusal here is the gateway's own (HTTP 401, Socket.IO `benchbus_error` with code `unauthorized`); a request the
gateway passes on and the bus refuses comes back as 403 (the token was fine, the action is not allowed).
"""
from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass

from benchbus.files import load_or_create_token

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




class Access:
    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.networks = list(settings.trusted_networks)
        if settings.token is not None:
            self.token, self.token_file = settings.token, None
        else:
            token, path = load_or_create_token(settings.data_dir)
            self.token, self.token_file = token, path

    def token_ok(self, presented: str | None) -> bool:
        if not presented:
            return False
        return secrets.compare_digest(presented.encode(), self.token.encode())

    def trusted(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address((address or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == network.version and ip in network for network in self.networks)

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
