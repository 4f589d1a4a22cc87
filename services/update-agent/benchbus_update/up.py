"""`benchbus up` plug-in: the update-agent on file-backed slots in the up data folder, HTTP on a free port.

The folder holds the slots (slot-a.img, slot-b.img), the boot environment and boot record (a restart is
simulated), a development signing key pair (sign bundles with `benchbus-update-bundle make ROOTFS
<dir>/signing-key.pem OUT`), the name and authorized_keys.
"""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext

from .tool import generate_key_pair


def units(ctx: UpContext) -> list[Unit]:
    folder = ctx.service_dir("update")
    if not (folder / "signing-key.pub.pem").exists():
        generate_key_pair(folder)
    port = ctx.free_port()
    env = {
        "BENCHBUS_UPDATE_SLOT_DIR": str(folder / "slots"),
        "BENCHBUS_UPDATE_STATE_DIR": str(folder / "state"),
        "BENCHBUS_UPDATE_PUBLIC_KEY_FILE": str(folder / "signing-key.pub.pem"),
        "BENCHBUS_UPDATE_AUTHORIZED_KEYS": str(folder / "authorized_keys"),
        "BENCHBUS_UPDATE_HTTP_HOST": "127.0.0.1",
        "BENCHBUS_UPDATE_HTTP_PORT": str(port),
        "BENCHBUS_UPDATE_RESTART_COMMAND": "null",
        "BENCHBUS_UPDATE_SERIAL_FILE": str(folder / "serial"),
        "BENCHBUS_UPDATE_VERSION_FILE": str(folder / "VERSION.json"),
    }
    return [Unit("update", [sys.executable, "-m", "benchbus_update.service"], env=env, segment="update",
                 url=f"http://127.0.0.1:{port}/server/update/health")]
