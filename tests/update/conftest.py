"""Fixtures of the update-agent's tests: signing keys made here, bundles made here, the agent on file-backed slots."""
from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives import hashes

from benchbus_update.service import UpdateService
from benchbus_update.settings import UpdateSettings

ROBOT = "OT-2 Standard"
ADMIN_TOKEN = "a-long-admin-token-for-tests"


@pytest.fixture(scope="session")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ed_key():
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(private_key, data: bytes) -> bytes:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return private_key.sign(data)


def sha256_hex(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def zip_bytes(members: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    """A zip with exactly these members (names as given, however wrong)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def bundle_members(rootfs: bytes, key=None, version: dict | None = None) -> dict[str, bytes]:
    hash_text = sha256_hex(rootfs).encode()
    members = {"rootfs.ext4": rootfs, "rootfs.ext4.hash": hash_text}
    if key is not None:
        members["rootfs.ext4.hash.sig"] = sign(key, hash_text)
    if version is not None:
        members["VERSION.json"] = json.dumps(version).encode()
    return members


@pytest.fixture
def rootfs() -> bytes:
    """A small 'root filesystem': not all zeros, so a wrong byte shows."""
    return bytes(range(256)) * 20480 + b"benchbus-rootfs-v2"  # 5 MiB: several progress steps


@pytest.fixture
def bundle_file(tmp_path, rsa_key, rootfs):
    def make(members: dict[str, bytes] | None = None, name: str = "bundle.zip", method=zipfile.ZIP_STORED) -> Path:
        path = tmp_path / name
        path.write_bytes(zip_bytes(members if members is not None else
                                   bundle_members(rootfs, rsa_key, {"robot_type": ROBOT, "buildroot_version": "v2"}),
                                   method))
        return path
    return make


@pytest.fixture
def agent_settings(make_settings, tmp_path, rsa_key):
    key_file = tmp_path / "signing.pub.pem"
    key_file.write_bytes(public_pem(rsa_key))

    def settings(**fields) -> UpdateSettings:
        defaults = dict(slot_dir=tmp_path / "slots", state_dir=tmp_path / "state", public_key_file=key_file,
                        restart_command=None, restart_delay_s=0.05, http_port=0,
                        authorized_keys=tmp_path / "ssh" / "authorized_keys", admin_token=ADMIN_TOKEN,
                        confirm_timeout_s=30.0, serial_file=tmp_path / "serial", version_file=tmp_path / "VERSION.json")
        defaults.update(fields)
        return make_settings(UpdateSettings, **defaults)
    return settings


@dataclass
class Running:
    service: object
    http: httpx.Client
    url: str
    slot_dir: Path
    state_dir: Path

    @property
    def agent(self):
        return self.service.agent


@pytest.fixture
def start_agent(serve, agent_settings):
    clients = []

    def start(**fields) -> Running:
        settings = agent_settings(**fields)
        service = serve(UpdateService, settings)
        url = f"http://127.0.0.1:{service.http.port}"
        client = httpx.Client(base_url=url, timeout=30)
        clients.append(client)
        return Running(service, client, url, Path(settings.slot_dir), Path(settings.state_dir))

    yield start
    for client in clients:
        client.close()


@pytest.fixture
def running(start_agent) -> Running:
    return start_agent()


def wait_stage(http: httpx.Client, token: str, stages=("done", "error"), timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(f"/server/update/{token}/status").json()
        if body.get("stage") in stages or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def upload(http: httpx.Client, token: str, path: Path, field: str = "ot2-system.zip") -> httpx.Response:
    with open(path, "rb") as handle:
        return http.post(f"/server/update/{token}/file", files={field: (path.name, handle, "application/zip")})


@pytest.fixture(scope="session")
def tools():
    """The helpers above, for test modules (importlib mode lets them not import conftest)."""
    from types import SimpleNamespace
    return SimpleNamespace(public_pem=public_pem, sign=sign, sha256_hex=sha256_hex, zip_bytes=zip_bytes,
                           bundle_members=bundle_members, wait_stage=wait_stage, upload=upload, ROBOT=ROBOT,
                           ADMIN_TOKEN=ADMIN_TOKEN)
