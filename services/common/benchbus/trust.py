"""Who may write over HTTP on a device: the holder of the write token, or a client inside a trusted network.

One rule for every HTTP door of benchbus that takes writes (the gateway, the protocol-runner's robot-server API).
The token is `<data_dir>/token` (mode 0600, made at the first start) unless the settings give one. The address is
the peer of the TCP connection: no forwarded header is believed (nothing proxies in front of these doors).
"""
from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from .files import load_or_create_token


class WriteAccess:
    def __init__(self, networks: Sequence[IPv4Network | IPv6Network], token: str | None, data_dir: Path):
        self.networks = list(networks)
        if token is not None:
            self.token, self.token_file = token, None
        else:
            loaded, path = load_or_create_token(data_dir)
            self.token, self.token_file = loaded, path

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
            ip = ip.ipv4_mapped  # an IPv4 client on a dual-stack socket
        return any(ip.version == network.version and ip in network for network in self.networks)

    def may_write(self, address: str | None, presented: str | None) -> bool:
        return self.token_ok(presented) or self.trusted(address)


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    header = authorization or ""
    return header[7:].strip() if header.lower().startswith("bearer ") else None
