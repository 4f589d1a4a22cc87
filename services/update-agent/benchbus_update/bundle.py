"""The system-update bundle: a zip of `rootfs.ext4`, `rootfs.ext4.hash`, `rootfs.ext4.hash.sig`, `VERSION.json`.

Pure: no bus, no HTTP, no slots. The checks, in the order they run (cheap ones first, so a bad bundle is refused
before a gigabyte is read):

1. the zip's member list: only the four names above, none twice, no path that escapes (`../`, absolute, `\\`);
2. sizes: every declared size under its limit (the root filesystem under `max_image_bytes`);
3. `VERSION.json` (optional): JSON, and its `robot_type`, when present, is ours; its system version
   (`buildroot_version`) is compared with the running system's by the session (`downgrade_refusal`): an older
   bundle, or one without a version while the running system has one, is refused unless an admin forces it;
4. the signature of the hash file (RSA PKCS#1 v1.5 with SHA-256, or Ed25519), when one is required or present;
5. the SHA-256 of `rootfs.ext4`, streamed out of the zip, against the hash file; while streaming, the real size
   must never pass the declared one (a zip bomb lies about it).

A refusal is a `BundleError` with the OT-2 update server's short code (`File Missing`, `Hash Mismatch`,
`Signature Mismatch`, `Invalid Robot Type`, ...) and a message that says exactly what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from collections.abc import Callable

from packaging.version import InvalidVersion, Version
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

ROOTFS = "rootfs.ext4"
HASH = "rootfs.ext4.hash"
SIGNATURE = "rootfs.ext4.hash.sig"
VERSION = "VERSION.json"
MEMBERS = (ROOTFS, HASH, SIGNATURE, VERSION)
SYSTEM_VERSION = "buildroot_version"  # the key of VERSION.json the OT-2 reports as its systemVersion
SMALL_MEMBER_LIMIT = 64 * 1024  # the hash, the signature and VERSION.json are tiny; more is an attack
CHUNK = 1024 * 1024

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
Progress = Callable[[int, int], None]  # (bytes done, bytes total)


class BundleError(Exception):
    """A refused bundle: `code` is the short error of the OT-2 update server, `message` the precise reason."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Cancelled(Exception):
    """The session was cancelled while the bundle was being read."""


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int = 4 * 1024**3
    max_members: int = len(MEMBERS)


@dataclass
class CheckedBundle:
    """What the cheap checks found; `rootfs_size` is the declared (and, once hashed, real) size."""

    path: Path
    rootfs_size: int
    expected_sha256: str
    signed: bool
    version: dict | None = None
    members: list[str] = field(default_factory=list)


def load_public_key(data: bytes) -> PublicKey:
    """A PEM public key or X.509 certificate (the OT-2 ships a certificate), RSA or Ed25519."""
    key: object
    if b"BEGIN CERTIFICATE" in data:
        # imported here: cryptography's x509 is 0.9 MB resident, which an agent with a plain public key (the robot
        # image's) never needs (issue 21)
        from cryptography import x509
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise ValueError(f"the signing key is a {type(key).__name__}; only RSA and Ed25519 keys verify bundles")
    return key


def unsafe_member_reason(name: str) -> str | None:
    """Why a zip member name could land outside the target directory, or None when it cannot."""
    if "\\" in name:
        return "holds a backslash"
    if "\x00" in name:
        return "holds a NUL byte"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "climbs out with '..'"
    if posixpath.normpath(name) != name.rstrip("/") or name.endswith("/"):
        return "is not a plain file name"
    return None


def check_members(infos: list[zipfile.ZipInfo], signature_required: bool, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    """The member list and declared sizes (step 1 and 2); returns the members by name."""
    if len(infos) > limits.max_members + 8:
        raise BundleError("Unexpected File", f"the zip holds {len(infos)} members; a bundle has at most {len(MEMBERS)}")
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        reason = unsafe_member_reason(info.filename)
        if reason:
            raise BundleError("Unsafe Path", f"member {info.filename!r} {reason}")
        if info.filename not in MEMBERS:
            raise BundleError("Unexpected File", f"member {info.filename!r} is not part of a bundle "
                                                 f"(allowed: {', '.join(MEMBERS)})")
        if info.filename in by_name:
            raise BundleError("Unexpected File", f"member {info.filename!r} appears twice")
        by_name[info.filename] = info
    required = [ROOTFS, HASH] + ([SIGNATURE] if signature_required else [])
    missing = [name for name in required if name not in by_name]
    if missing:
        why = " (signatures are required)" if missing == [SIGNATURE] else ""
        raise BundleError("File Missing", f"the bundle lacks {', '.join(missing)}{why}")
    for name, info in by_name.items():
        limit = limits.max_image_bytes if name == ROOTFS else SMALL_MEMBER_LIMIT
        if info.file_size > limit:
            raise BundleError("Too Large", f"{name} declares {info.file_size} bytes; the limit is {limit}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BundleError("Bad Zip", f"{name} uses compression method {info.compress_type}; "
                                         "only stored and deflated members are read")
    return by_name


def read_small(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A small member, read no further than its declared size (plus one byte to catch a lie)."""
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise BundleError("Zip Bomb", f"{info.filename} declares {info.file_size} bytes but holds {len(data)}")
    return data


def parse_hash(data: bytes) -> str:
    text = data.decode("ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise BundleError("Hash Mismatch", f"{HASH} must hold one SHA-256 in lowercase hex; it holds {text[:80]!r}")
    return text


def parse_version(data: bytes, robot_type: str) -> dict:
    try:
        version = json.loads(data)
    except ValueError as exc:
        raise BundleError("Bad Version File", f"{VERSION} is not valid JSON: {exc}") from None
    if not isinstance(version, dict):
        raise BundleError("Bad Version File", f"{VERSION} must be a JSON object")
    found = version.get("robot_type")
    if found is not None and found != robot_type:
        raise BundleError("Invalid Robot Type", f"the bundle is for {found!r}; this device is {robot_type!r}")
    return version


def system_version(version: dict | None) -> Version | None:
    """The system version of a VERSION.json (PEP 440 ordering; a leading `v` is allowed), or None."""
    raw = (version or {}).get(SYSTEM_VERSION)
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        return Version(raw.strip())
    except InvalidVersion:
        return None


def downgrade_refusal(bundle_version: dict | None, running_version: dict) -> str | None:
    """Why a bundle may not replace the running system without `force`, or None when it may."""
    running = system_version(running_version)
    if running is None:
        return None  # nothing to compare with (a development device without /etc/VERSION.json)
    offered = system_version(bundle_version)
    if offered is None:
        return (f"the bundle's {VERSION} has no usable {SYSTEM_VERSION}, so it cannot be shown to be no older "
                f"than the running system {running}; an admin may force it (force: true)")
    if offered < running:
        return (f"the bundle holds system {offered}, older than the running system {running}; an admin may force "
                "the downgrade (force: true)")
    return None


def verify_signature(key: PublicKey, signed: bytes, signature: bytes) -> None:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, signed)
    except InvalidSignature:
        kind = "RSA PKCS#1 v1.5 SHA-256" if isinstance(key, rsa.RSAPublicKey) else "Ed25519"
        raise BundleError("Signature Mismatch", f"{SIGNATURE} is not a valid {kind} signature of {HASH} "
                                                "by the configured signing key") from None


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BundleError("Bad Zip", f"the upload is not a readable zip file: {exc}") from None


def check(path: Path, key: PublicKey | None, signature_required: bool, robot_type: str,
          limits: Limits = Limits()) -> CheckedBundle:
    """Steps 1-4: everything but the hash of the root filesystem."""
    if signature_required and key is None:
        raise BundleError("Signature Mismatch", "signatures are required but no signing key is configured")
    with open_zip(path) as archive:
        try:
            members = check_members(archive.infolist(), signature_required, limits)
            expected = parse_hash(read_small(archive, members[HASH]))
            version = parse_version(read_small(archive, members[VERSION]), robot_type) if VERSION in members else None
            signed = False
            if SIGNATURE in members and key is not None:
                verify_signature(key, read_small(archive, members[HASH]), read_small(archive, members[SIGNATURE]))
                signed = True
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # CRC errors, truncated members
            raise BundleError("Bad Zip", f"the zip is damaged: {exc}") from None
    return CheckedBundle(path, members[ROOTFS].file_size, expected, signed, version, sorted(members))


def stream_rootfs(path: Path, sink: Callable[[bytes], None] | None = None, progress: Progress | None = None,
                  cancelled: Callable[[], bool] = lambda: False) -> str:
    """Read `rootfs.ext4` out of the zip in chunks (to `sink`, if given); return its SHA-256 in lowercase hex.

    We inflate the member ourselves rather than through zipfile (which silently stops at the declared size), so
    the real size is measured: a member that inflates past its declared size is a zip bomb and stops at once,
    one that ends short is damaged, and the CRC-32 must match.
    """
    with open_zip(path) as archive:
        info = archive.getinfo(ROOTFS)
    with open(path, "rb") as raw:
        data_offset = _data_offset(raw, info)
        raw.seek(data_offset)
        inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        counter = _Counter(info.file_size, sink, progress)
        remaining = info.compress_size
        while remaining > 0:
            if cancelled():
                raise Cancelled()
            compressed = raw.read(min(CHUNK, remaining))
            if not compressed:
                raise BundleError("Bad Zip", f"the zip ends inside {ROOTFS} ({remaining} bytes missing)")
            remaining -= len(compressed)
            if inflater is None:
                counter.take(compressed)
                continue
            try:
                counter.take(inflater.decompress(compressed, CHUNK))
                while inflater.unconsumed_tail:  # inflate at most CHUNK at a time: a bomb never fills memory
                    counter.take(inflater.decompress(inflater.unconsumed_tail, CHUNK))
            except zlib.error as exc:
                raise BundleError("Bad Zip", f"{ROOTFS} does not inflate: {exc}") from None
        if inflater is not None:
            counter.take(inflater.flush())
    if counter.done != info.file_size:
        raise BundleError("Zip Bomb", f"{ROOTFS} declares {info.file_size} bytes but holds {counter.done}")
    if counter.crc != info.CRC:
        raise BundleError("Bad Zip", f"{ROOTFS} fails its CRC-32 check (the zip is damaged)")
    return counter.digest.hexdigest()


def _data_offset(raw: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Where a member's data starts: after its local header, whose name and extra field lengths may differ."""
    if info.flag_bits & 0x1:
        raise BundleError("Bad Zip", f"{info.filename} is encrypted")
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise BundleError("Bad Zip", f"the local header of {info.filename} is missing")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


class _Counter:
    """Counts, hashes and passes on the inflated bytes; refuses the first byte past the declared size."""

    def __init__(self, declared: int, sink: Callable[[bytes], None] | None, progress: Progress | None):
        self.declared = declared
        self.sink = sink
        self.progress = progress
        self.done = 0
        self.crc = 0
        self.digest = hashlib.sha256()

    def take(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.done += len(chunk)
        if self.done > self.declared:
            raise BundleError("Zip Bomb", f"{ROOTFS} inflates past its declared {self.declared} bytes")
        self.digest.update(chunk)
        self.crc = zlib.crc32(chunk, self.crc)
        if self.sink is not None:
            self.sink(chunk)
        if self.progress is not None:
            self.progress(self.done, self.declared)


def verify_hash(checked: CheckedBundle, progress: Progress | None = None,
                cancelled: Callable[[], bool] = lambda: False) -> None:
    """Step 5."""
    actual = stream_rootfs(checked.path, progress=progress, cancelled=cancelled)
    if actual != checked.expected_sha256:
        raise BundleError("Hash Mismatch", f"{ROOTFS} has SHA-256 {actual}; {HASH} says {checked.expected_sha256}")


# -- making bundles (tests, development, and the `benchbus-update-bundle` tool) -----------------------------------


def sign(private_key, data: bytes) -> bytes:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return private_key.sign(data)


def write_bundle(target: Path | BinaryIO, rootfs: Path, private_key=None, version: dict | None = None,
                 compress: bool = False) -> str:
    """Write a bundle from a root filesystem image file; returns the image's SHA-256 hex."""
    digest = hashlib.sha256()
    with open(rootfs, "rb") as image:
        for chunk in iter(lambda: image.read(CHUNK), b""):
            digest.update(chunk)
    hash_text = digest.hexdigest().encode()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(target, "w", compression=method) as archive:
        archive.write(rootfs, ROOTFS)
        archive.writestr(HASH, hash_text)
        if private_key is not None:
            archive.writestr(SIGNATURE, sign(private_key, hash_text))
        if version is not None:
            archive.writestr(VERSION, json.dumps(version))
    return hash_text.decode()
