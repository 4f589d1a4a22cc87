"""Settings of the update-agent (`/etc/benchbus/update.yaml`, `BENCHBUS_UPDATE_<FIELD>`).

The defaults are the Pi's: slots on the SD card's partitions 2 and 3, U-Boot's environment through fw_setenv,
the kernel's boot id, `systemctl reboot`. A development device sets `slot_dir` instead: slot images, the boot
environment and the boot record are files in it, and a restart is simulated (see emulator.DevBootLoader).
"""
from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import Field, model_validator

from benchbus import ServiceSettings

GIB = 1024**3


class UpdateSettings(ServiceSettings):
    http_host: str = Field("127.0.0.1", description="the reference listens on localhost behind nginx (:31950 /server)")
    http_port: int = Field(34000, ge=0, le=65535)
    state_dir: Path = Field(Path("/var/lib/benchbus/update"), description="downloads, the name, trial records")

    # slots and booting
    slot_dir: Path | None = Field(None, description="development: file-backed slots, boot env and boot record here")
    slot_a: Path = Path("/dev/mmcblk0p2")
    slot_b: Path = Path("/dev/mmcblk0p3")
    fw_printenv: list[str] = ["fw_printenv"]
    fw_setenv: list[str] = ["fw_setenv"]
    boot_id_file: Path = Path("/proc/sys/kernel/random/boot_id")
    restart_command: list[str] | None = Field(["systemctl", "reboot"],
                                              description="None: simulate the reboot (development)")
    restart_delay_s: float = Field(1.0, ge=0)
    max_trial_boots: int = Field(1, ge=1, le=10, description="trial boots the boot script allows before it gives up")
    confirm_timeout_s: float = Field(300.0, gt=0,
                                     description="how long every service has to be ready after a trial boot")
    expected_services: list[str] = Field(default_factory=list,
                                         description="services that must be ready besides those seen before the update")

    # bundles
    public_key_file: Path | None = Field(None, description="PEM public key or X.509 certificate (RSA or Ed25519)")
    signature_required: bool = True
    robot_type: str = "OT-2 Standard"
    max_upload_bytes: int = Field(2 * GIB, gt=0, description="the bundle upload's limit (streamed to disk)")
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024, description="every other request body's "
                                "limit; a longer one is refused (413) as it streams, before it is buffered")
    max_image_bytes: int = Field(4 * GIB, gt=0)
    abandon_after_s: float = Field(600.0, gt=0, description="an idle session a new begin may take over")

    # SSH keys and the name
    authorized_keys: Path = Path("/root/.ssh/authorized_keys")
    admin_token: str | None = Field(None, min_length=16,
                                    description="allows key management from anywhere (and on the bus)")
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list, description="proxies (CIDRs) whose forwarded headers (X-Host-IP: the address the client "
        "reached) are believed; default none: nothing proxies in front of the update-agent, so a header is a claim")
    default_name: str | None = Field(None, description="the name before one is set (default: the device id)")
    name_command: list[str] | None = Field(None, description="run after a name change; {name} and {hostname} filled in")
    serial_file: Path = Path("/var/serial")
    version_file: Path = Path("/etc/VERSION.json")

    @model_validator(mode="after")
    def _signing_key_present(self):
        if self.signature_required and self.public_key_file is None:
            raise ValueError("signature_required is true but public_key_file is not set")
        return self
