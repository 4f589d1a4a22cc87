"""Who may use the lab's central broker: its ACL and password file, generated from the lab file (docs/lab.md).

    benchbus lab access --lab lab.yaml --output-dir DIR      (also `python -m benchbus.labaccess`)

The lab file names the people (their central role) and the devices:

    users:   {alice: {role: operator, password: ...}, bob: {role: viewer, password: ...}}
    devices: {rig1: {password: ...}, rig2: {}}        # {}: the device proves itself by its TLS client certificate
    gateway_role: operator                            # the central gateway's role (each device may give it less)

Writes DIR/central.acl (roles.central_acl_text) and DIR/central.passwd (mode 0600, hashed by Mosquitto's own
`mosquitto_passwd -U`). The central recorder's and gateway's passwords never sit in the lab file: `benchbus lab up`
makes fresh random ones at each start; `benchbus lab access` takes them from BENCHBUS_LAB_RECORDER_PASSWORD and
BENCHBUS_LAB_GATEWAY_PASSWORD (docker-compose.lab.yml gives the same variables to the broker and to the services).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from benchbus_schemas import roles

from . import yamlfile
from .settings import CONFIG_DIR, load_settings

SEGMENT = "lab"
# where `benchbus lab access` reads the central services' passwords (the services get the same variables)
SERVICE_PASSWORD_VARIABLES = {roles.LAB_RECORDER_USERNAME: "BENCHBUS_LAB_RECORDER_PASSWORD",
                              roles.LAB_GATEWAY_USERNAME: "BENCHBUS_LAB_GATEWAY_PASSWORD"}
MIN_PASSWORD = 8


class LabUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(..., pattern="^(viewer|operator|admin)$")
    password: str = Field(..., min_length=MIN_PASSWORD)


class LabDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str | None = Field(None, min_length=MIN_PASSWORD, description="unset: the device logs in with its "
                                 "TLS client certificate only (its CN is its username, on the TLS listener)")


class LabFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: dict[str, LabUser] = Field(default_factory=dict)
    devices: dict[str, LabDevice] = Field(default_factory=dict)
    gateway_role: str = Field("operator", pattern="^(viewer|operator|admin)$")


def load(path: Path | None) -> LabFile:
    return load_settings(LabFile, SEGMENT, path or CONFIG_DIR / "lab.yaml", {})


def _plain_field(value: str, what: str) -> str:
    """A password file line is `name:password`: no separator or line break may hide a second entry."""
    if any(ch in value for ch in ":\r\n\0"):
        raise ValueError(f"{what}: no ':' or line breaks allowed")
    return value


def write_access(lab: LabFile, output_dir: Path, service_passwords: dict[str, str] | None = None) -> tuple[Path, Path]:
    """(acl, password file) for the central Mosquitto; raises ValueError naming what is wrong."""
    acl = roles.central_acl_text({name: u.role for name, u in lab.users.items()}, list(lab.devices), lab.gateway_role)
    entries = {name: u.password for name, u in lab.users.items()}
    entries.update({name: d.password for name, d in lab.devices.items() if d.password is not None})
    entries.update(service_passwords or {})
    lines = [f"{_plain_field(name, 'name')}:{_plain_field(password, f'password of {name}')}"
             for name, password in sorted(entries.items())]
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    output_dir.mkdir(parents=True, exist_ok=True)
    acl_path, passwd_path = output_dir / "central.acl", output_dir / "central.passwd"
    tmp = passwd_path.with_name(passwd_path.name + ".new")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text("\n".join(lines) + "\n")
    result = subprocess.run([tool, "-U", str(tmp)], capture_output=True, text=True)  # hash in place
    if result.returncode != 0:
        tmp.unlink()
        raise ValueError(f"mosquitto_passwd -U failed: {result.stderr.strip() or result.stdout.strip()}")
    tmp.replace(passwd_path)
    acl_path.write_text(acl)
    return acl_path, passwd_path


def service_passwords_from(environ: dict[str, str]) -> dict[str, str]:
    """The central services' passwords the environment gives; raises ValueError naming a variable that is too short."""
    passwords = {user: environ[variable] for user, variable in SERVICE_PASSWORD_VARIABLES.items()
                 if environ.get(variable)}
    short = [SERVICE_PASSWORD_VARIABLES[user] for user, password in passwords.items() if len(password) < MIN_PASSWORD]
    if short:
        raise ValueError(f"{', '.join(short)}: at least {MIN_PASSWORD} characters")
    return passwords


def access_command(lab_path: Path | None, output_dir: Path) -> int:
    try:
        lab = load(lab_path)
        services = service_passwords_from(dict(os.environ))
        acl, passwd = write_access(lab, output_dir, services)
    except yamlfile.FileError as exc:
        print(f"lab file: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"benchbus lab access: {exc}", file=sys.stderr)
        return 2
    missing = [variable for user, variable in SERVICE_PASSWORD_VARIABLES.items() if user not in services]
    print(f"wrote {acl} and {passwd}" + (f" (without {', '.join(missing)} set, the central services it names cannot "
                                          "log in)" if missing else ""), flush=True)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lab", type=Path, default=None, help=f"the lab file (default {CONFIG_DIR}/lab.yaml)")
    p.add_argument("--output-dir", type=Path, required=True, help="central.acl and central.passwd are written here")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchbus.labaccess", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return access_command(args.lab, args.output_dir)


if __name__ == "__main__":
    sys.exit(main())
