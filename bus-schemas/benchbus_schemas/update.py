"""The `update` service (update-agent): signed system updates with rollback, SSH keys and the robot's name.

HTTP mirrors the OT-2 update server (`/server/update/...`, `/server/ssh_keys`, `/server/name`); the bus carries the
same steps: `cmd/begin`, `cmd/cancel`, `cmd/commit`, `cmd/restart`, the retained `state/session` and `state/slots`,
and `event/progress`. The robot's name is retained at `state/name` so every service and the gateway's Socket.IO
`getdevicename` see it; `cmd/set_name` changes it.
"""
from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import Field, StrictBool, field_validator

from .envelope import Empty, Payload
from .registry import command, event, state

SERVICE = "update"

NAME_MAX_OCTETS = 63  # DNS-SD service instance names: at most 63 octets of UTF-8


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a DNS-SD instance name (and so the robot's name), or None when it can."""
    if not name or not name.strip():
        return "the name is empty"
    octets = len(name.encode("utf-8"))
    if octets > NAME_MAX_OCTETS:
        return f"the name is {octets} octets of UTF-8; DNS-SD allows at most {NAME_MAX_OCTETS}"
    if name != name.strip():
        return "the name starts or ends with white space"
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return f"the name holds the control or unassigned character U+{ord(char):04X}"
    if name != unicodedata.normalize("NFC", name):
        return "the name is not in Unicode normal form C"
    return None


class DeviceName(Payload):
    """The robot's name (what the app and mDNS show) and the host name derived from it (`<hostname>.local`)."""

    name: str
    hostname: str


class SetNameRequest(Payload):
    name: str = Field(..., description="at most 63 octets of UTF-8, no control characters, no edge white space")

    @field_validator("name")
    @classmethod
    def _dns_sd_name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value


# -- update session -----------------------------------------------------------------------------------------------

Stage = Literal["awaiting-file", "validating", "writing", "done", "ready-for-restart", "error"]


class SessionState(Payload):
    """The one update session; `token` is None (and `stage` None) when no session is open."""

    token: str | None = None
    stage: Stage | None = None
    progress: float = Field(0.0, ge=0.0, le=1.0)
    message: str = "No update session"
    error: str | None = Field(None, description="the short error code of the OT-2 update server, at stage `error`")
    version: dict[str, Any] | None = Field(None, description="VERSION.json of the bundle, once read")


class Progress(Payload):
    token: str
    stage: Stage
    progress: float = Field(..., ge=0.0, le=1.0)
    message: str
    error: str | None = None


class BeginRequest(Payload):
    force: StrictBool = Field(False, description="install even a bundle older than the running system (or one "
                              "without a version): an admin's decision, explicit on every session")


class TokenResult(Payload):
    token: str


class TokenRequest(Payload):
    token: str = Field(..., min_length=1, max_length=64)


class MessageResult(Payload):
    message: str


class LoadFileRequest(Payload):
    token: str = Field(..., min_length=1, max_length=64)
    path: str = Field(..., min_length=1, max_length=4096, description="a bundle already on the device (USB stick)")


# -- slots ------------------------------------------------------------------------------------------------------

Slot = Literal["a", "b"]


class SlotsState(Payload):
    """Which system slot runs, which is on trial, which is known good, which boots next."""

    running: Slot
    next_boot: Slot
    good: Slot | None = Field(None, description="the slot confirmed to boot into a ready system")
    trial: Slot | None = Field(None, description="the slot on trial: booting it next, or running unconfirmed")
    invalid: list[Slot] = Field(default_factory=list, description="slots whose content must never be booted")
    boot_count: int = Field(0, ge=0, description="trial boots tried so far (the boot script counts them)")
    confirm_deadline: str | None = Field(None, description="ISO 8601 UTC time the running trial must be confirmed by")


class TrialOutcome(Payload):
    outcome: Literal["confirmed", "rolled_back"]
    slot: Slot
    reason: str


# -- SSH keys ---------------------------------------------------------------------------------------------------


class SshKey(Payload):
    id: str = Field(..., description="SHA256:<base64> fingerprint, as `ssh-keygen -l` prints it")
    key_md5: str = Field(..., description="MD5 hex of the authorized_keys line (the OT-2 update server's id)")
    type: str
    bits: int
    comment: str | None = None
    key: str


class SshKeyList(Payload):
    public_keys: list[SshKey]


class AdminRequest(Payload):
    admin_token: str | None = Field(None, max_length=256, description="required on the bus (no link-local address)")


class AddSshKeyRequest(AdminRequest):
    key: str = Field(..., min_length=1, max_length=16384, description="one authorized_keys line")


class SshKeyIdRequest(AdminRequest):
    id: str = Field(..., min_length=1, max_length=128, description="SHA256 fingerprint or the MD5 id")


class AddSshKeyResult(Payload):
    message: str
    key: SshKey


command(SERVICE, "get_name", Empty, DeviceName, "The robot's name and the host name derived from it.")
command(SERVICE, "set_name", SetNameRequest, DeviceName,
        "Change the robot's name (DNS-SD rules); the result is the name set.")
state(SERVICE, "name", DeviceName, "The robot's name, retained (the gateway's Socket.IO getdevicename reads it).")

command(SERVICE, "begin", BeginRequest, TokenResult, "Open the one update session; `conflict` when one is open. "
        "A bundle older than the running system is refused (stage error, `Downgrade`) unless `force`.")
command(SERVICE, "cancel", Empty, MessageResult, "Drop the update session and its files.")
command(SERVICE, "status", TokenRequest, SessionState, "The session's state; `not_found` for an unknown token.")
command(SERVICE, "load_file", LoadFileRequest, SessionState,
        "Use a bundle already on the device as the session's file (uploads go over HTTP).", timeout_s=300)
command(SERVICE, "commit", TokenRequest, SessionState, "Flip the boot slot to the written one and arm a trial boot.",
        timeout_s=120)
command(SERVICE, "restart", Empty, MessageResult, "Reboot the device (after any commit in progress).")
state(SERVICE, "session", SessionState, "The update session: stage, progress, message.")
event(SERVICE, "progress", Progress, "A step of the update session (stage changes and progress).")
state(SERVICE, "slots", SlotsState, "The A/B system slots: running, trial, good.")
event(SERVICE, "trial", TrialOutcome, "A trial boot was confirmed or rolled back.")

command(SERVICE, "list_ssh_keys", AdminRequest, SshKeyList, "The authorized SSH keys.")
command(SERVICE, "add_ssh_key", AddSshKeyRequest, AddSshKeyResult,
        "Add an SSH public key (RSA >= 2048, ECDSA, Ed25519).")
command(SERVICE, "remove_ssh_key", SshKeyIdRequest, MessageResult, "Remove one key by fingerprint or MD5 id.")
command(SERVICE, "clear_ssh_keys", AdminRequest, MessageResult, "Remove every authorized SSH key.")
