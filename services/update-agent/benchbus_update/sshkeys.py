"""SSH public keys in `authorized_keys`: validated with `cryptography`, ids by fingerprint, atomic writes.

A line is `[options] <type> <base64 blob> [comment]` (sshd(8), AUTHORIZED_KEYS FILE FORMAT); options may hold
quoted strings with spaces. Accepted: RSA of at least 2048 bits, ECDSA (nistp256/384/521), Ed25519. The id is the
SHA-256 fingerprint `SHA256:<base64 without padding>` that `ssh-keygen -l` prints; the OT-2 update server's id,
the MD5 hex of the line, is accepted too.

Lines already in the file that we cannot parse (a hand edit) are kept untouched on every rewrite: nothing is lost.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from .slots import atomic_write

MIN_RSA_BITS = 2048
KNOWN_TYPES = ("ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
               "ssh-dss", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


class InvalidKey(ValueError):
    """An invalid key line; the message is the reason."""


@dataclass(frozen=True)
class ParsedKey:
    line: str  # the normalised authorized_keys line
    options: str | None
    type: str
    blob: bytes
    comment: str | None
    bits: int

    @property
    def fingerprint(self) -> str:
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    @property
    def md5(self) -> str:
        return hashlib.md5(self.line.encode()).hexdigest()

    def describe(self) -> dict:
        return {"id": self.fingerprint, "key_md5": self.md5, "type": self.type, "bits": self.bits,
                "comment": self.comment, "key": self.line}


def _split_options(text: str) -> tuple[str | None, str]:
    """Split a leading options field (up to the first white space outside double quotes) from the rest."""
    first = text.split(None, 1)[0]
    if first in KNOWN_TYPES or first.startswith(("ssh-", "ecdsa-", "sk-")):
        return None, text
    quoted = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quoted:
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            break
        index += 1
    if quoted:
        raise InvalidKey("the options field has an unclosed double quote")
    return text[:index], text[index:].lstrip(" \t")


def parse(text: str) -> ParsedKey:
    """Validate one key line; raises InvalidKey with the reason."""
    if not isinstance(text, str):
        raise InvalidKey("the key must be a string")
    text = text[:-1] if text.endswith("\n") else text  # one trailing newline is how files end; more is two lines
    text = text[:-1] if text.endswith("\r") else text
    if "\n" in text or "\r" in text:
        raise InvalidKey("the key holds a line break; send one key per request")
    text = text.strip(" \t")
    if not text:
        raise InvalidKey("the key is empty")
    if text.startswith("#"):
        raise InvalidKey("the key is a comment line")
    options, rest = _split_options(text)
    fields = rest.split(None, 2)
    if len(fields) < 2:
        raise InvalidKey("the key needs a type and base64 data (for example 'ssh-ed25519 AAAA... me@laptop')")
    key_type, blob_text = fields[0], fields[1]
    comment = fields[2].strip() if len(fields) > 2 and fields[2].strip() else None
    try:
        blob = base64.b64decode(blob_text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("the key data is not valid base64") from None
    if key_type == "ssh-dss":
        raise InvalidKey("DSA (ssh-dss) keys are refused: they are limited to 1024 bits and OpenSSH disabled them")
    if key_type.startswith("sk-"):
        raise InvalidKey(f"{key_type} (security-key) keys are not supported here")
    if key_type not in KNOWN_TYPES:
        raise InvalidKey(f"unknown key type {key_type!r}; accepted: ssh-rsa, ecdsa-sha2-nistp256/384/521, ssh-ed25519")
    try:
        key = serialization.load_ssh_public_key(f"{key_type} {blob_text}".encode())
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"the {key_type} key data does not decode: {exc}") from None
    bits = _check_strength(key)
    canonical = " ".join(part for part in (options, key_type, base64.b64encode(blob).decode(), comment) if part)
    return ParsedKey(canonical, options, key_type, blob, comment, bits)


def _check_strength(key) -> int:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidKey(f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required")
        return key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 256
    if isinstance(key, dsa.DSAPublicKey):
        raise InvalidKey("DSA keys are refused")
    raise InvalidKey(f"{type(key).__name__} keys are not accepted")


def is_link_local(address: str | None) -> bool:
    """169.254/16 or fe80::/10 (an IPv6 zone like `%eth0` allowed); the OT-2 lets keys be managed only there."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local


class NotFound(LookupError):
    pass


class AuthorizedKeys:
    """The authorized_keys file, owned by this service; one lock so concurrent changes never lose each other."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def _write(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path, "".join(line + "\n" for line in lines).encode(), mode=0o600)

    @staticmethod
    def _parsed(line: str) -> ParsedKey | None:
        try:
            return parse(line)
        except InvalidKey:
            return None

    def list(self) -> list[ParsedKey]:
        return [key for key in map(self._parsed, self._lines()) if key is not None]

    def add(self, text: str) -> tuple[ParsedKey, bool]:
        """Add a key; adding one already present (same key data) changes nothing. Returns (key, added)."""
        key = parse(text)
        with self._lock:
            lines = self._lines()
            for line in lines:
                present = self._parsed(line)
                if present is not None and present.blob == key.blob:
                    return present, False
            self._write(lines + [key.line])
        return key, True

    def remove(self, key_id: str) -> ParsedKey:
        with self._lock:
            lines = self._lines()
            kept, removed = [], None
            for line in lines:
                present = self._parsed(line)
                if present is not None and key_id in (present.fingerprint, present.md5, present.fingerprint[7:]):
                    removed = present
                else:
                    kept.append(line)
            if removed is None:
                raise NotFound(f"no authorized key has the id {key_id!r}")
            self._write(kept)
            return removed

    def clear(self) -> int:
        with self._lock:
            lines = self._lines()
            keys = [line for line in lines if self._parsed(line) is not None]
            self._write([line for line in lines if self._parsed(line) is None])
            return len(keys)
