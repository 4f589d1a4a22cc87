"""Who may do what on the bus, declared once: the broker's ACL on the Pi is generated from this module.

    python -m benchbus_schemas.roles [--check] [ACL_FILE] [USERS_FILE]

Roles of people and tools: `viewer` (read), `operator` (motion, pumps, calibrations, conf), `admin` (raw G-code,
board lines, updates, SSH keys). Every command of the contract has the least role that may call it (a test fails
when one is missing). Each service is a principal of its own: it writes only its own topics and calls only the
commands it needs of others. Every principal reads the public topics ($state, $audit, state/#, event/#) and its
own reply namespace; nobody reads another principal's replies or the command topics of a service not its own.
A request's topic ends with the caller's username, and the ACL lets a user publish only under its own name.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import topics
from .registry import specs

ROLES = ("viewer", "operator", "admin")

# The least role per command; a command not listed is refused by the test that keeps this table complete.
COMMAND_ROLES: dict[str, dict[str, str]] = {
    "calibration": {
        "list_calibrations": "viewer", "list_fits": "viewer", "get_calibration": "viewer", "get_active": "viewer",
        "history": "viewer", "robot_list": "viewer", "robot_get": "viewer",
        "set_raw": "operator", "set_fit": "operator", "set_active": "operator", "delete": "operator",
        "fit": "operator", "restore": "operator", "robot_set": "operator", "robot_delete": "operator",
    },
    "demo": {"echo": "viewer", "fail": "operator", "sleep": "operator", "increment": "operator"},
    "experiment": {"status": "viewer", "list": "viewer", "start": "operator", "pause": "operator",
                   "resume": "operator", "stop": "operator", "edit": "operator"},
    "gateway": {"clients": "viewer"},
    "gpio": {
        "get_lights": "viewer",
        "set_rail_lights": "operator", "set_button_light": "operator", "identify": "operator", "audio": "operator",
        "smoothie_reset": "admin", "smoothie_halt": "admin", "enter_bootloader": "admin", "sim_set_input": "admin",
    },
    "recorder": {"query": "viewer", "export": "viewer", "audit": "viewer", "events": "viewer", "status": "viewer"},
    "runner": {"list": "viewer", "analyse": "viewer", "upload": "operator", "create_run": "operator",
               "play": "operator", "pause": "operator", "resume": "operator", "stop": "operator"},
    "samd": {"transact": "admin"},  # raw board frames: operators go through the scheduler, which bounds values
    "scheduler": {"get_config": "viewer", "command": "operator", "load_conf": "operator", "pause": "operator",
                  "resume": "operator"},
    "smoothie": {
        "position": "viewer", "switches": "viewer", "homed": "viewer", "engaged": "viewer",
        "home": "operator", "move": "operator", "move_relative": "operator", "set_current": "operator",
        "set_max_speed": "operator", "disengage": "operator", "dwell": "operator", "probe": "operator",
        "read_pipette": "operator", "halt": "operator", "pause": "operator", "resume": "operator",
        "configure_pipette": "operator", "acquire_motion": "operator", "release_motion": "operator",
        "gcode": "admin",
    },
    "update": {
        "get_name": "viewer", "status": "viewer",
        "set_name": "operator",
        "begin": "admin", "cancel": "admin", "load_file": "admin", "commit": "admin", "restart": "admin",
        "list_ssh_keys": "admin", "add_ssh_key": "admin", "remove_ssh_key": "admin", "clear_ssh_keys": "admin",
    },
}


@dataclass(frozen=True)
class ServicePrincipal:
    """A service's broker user: its own topics, plus a role and/or single commands it needs of others."""

    segment: str
    role: str | None = None  # the gateway acts for outside users with an operator's rights, never more
    calls: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def username(self) -> str:
        return f"benchbus-{self.segment}"


SERVICES: tuple[ServicePrincipal, ...] = (
    ServicePrincipal("smoothie", calls=(("gpio", "smoothie_reset"), ("gpio", "smoothie_halt"),
                                        ("gpio", "enter_bootloader"))),
    ServicePrincipal("samd"),
    ServicePrincipal("gpio"),
    ServicePrincipal("calibration"),
    ServicePrincipal("scheduler", calls=(("samd", "transact"),)),
    ServicePrincipal("update"),
    ServicePrincipal("recorder"),
    ServicePrincipal("experiment", calls=(("scheduler", "command"), ("scheduler", "get_config"))),
    ServicePrincipal("gateway", role="operator"),
    # runs move the robot (smoothie's motion commands, lease, halt) and read/write calibrations: an operator's rights
    ServicePrincipal("runner", role="operator"),
)

# People and tools, by broker username. `benchbus-client` is the trusted local tools' user (a notebook on the
# robot, `benchbus call`). A lab adds its own users here (or in a copy) and regenerates the ACL.
USERS: dict[str, str] = {
    "benchbus-viewer": "viewer",
    "benchbus-client": "operator",
    "benchbus-admin": "admin",
}

# The lab (docs/lab.md): people on the lab's central broker, by their central username, with the role THIS device
# grants them. Their requests come down the fleet bridge through one local user, `benchbus-fleet`, which may publish
# a request only under these names and within min(their role, FLEET_ROLE), and read only their replies: the device
# trusts the central broker to prove who called (it pins the name there), never to decide what they may do here.
LAB_USERS: dict[str, str] = {}
FLEET_ROLE = "viewer"  # the most any central user may do on this device; a lab raises it on purpose
FLEET_USERNAME = "benchbus-fleet"

PUBLIC_TOPICS = ("benchbus/+/+/$state", "benchbus/+/+/$audit", "benchbus/+/+/state/#", "benchbus/+/+/event/#")


def role_allows(role: str, command_role: str) -> bool:
    return ROLES.index(role) >= ROLES.index(command_role)


def commands_for(role: str) -> list[tuple[str, str]]:
    return sorted((service, command) for service, table in COMMAND_ROLES.items()
                  for command, least in table.items() if role_allows(role, least))


def role_of(username: str) -> str | None:
    """The role of a person's or tool's username, or of a service acting with a role (the gateway)."""
    if username in USERS:
        return USERS[username]
    if username in LAB_USERS:  # a lab user, through the fleet bridge: never above FLEET_ROLE
        role = LAB_USERS[username]
        return role if role_allows(FLEET_ROLE, role) else FLEET_ROLE
    return next((s.role for s in SERVICES if s.username == username), None)


def missing_commands() -> list[str]:
    """Declared commands that have no role here (each must have one)."""
    return [f"{s.service}/{s.name}" for s in specs() if s.kind == "cmd"
            and s.name not in COMMAND_ROLES.get(s.service, {})]


def _call_lines(username: str, commands: list[tuple[str, str]]) -> list[str]:
    return [f"topic write benchbus/+/{service}/cmd/{command}/{username}" for service, command in commands]


def _service_block(service: ServicePrincipal) -> list[str]:
    own = f"benchbus/+/{service.segment}"
    lines = [f"user {service.username}",
             f"topic write {own}/$state", f"topic write {own}/$audit", f"topic write {own}/state/#",
             f"topic write {own}/event/#", f"topic read {own}/cmd/#",
             "topic write benchbus/+/_client/#"]  # replies; the runtime sends one only into the caller's namespace
    lines += [f"topic read {t}" for t in PUBLIC_TOPICS]
    calls = set(service.calls) | set(commands_for(service.role) if service.role else [])
    return lines + _call_lines(service.username, sorted(calls))


def _user_block(username: str, role: str) -> list[str]:
    return [f"user {username}"] + [f"topic read {t}" for t in PUBLIC_TOPICS] + _call_lines(username, commands_for(role))


def _fleet_block(lab_users: dict[str, str], fleet_role: str) -> list[str]:
    """The fleet bridge's local user: reads what goes up, writes requests only as the lab users it carries."""
    lines = [f"user {FLEET_USERNAME}"] + [f"topic read {t}" for t in PUBLIC_TOPICS]
    for username, role in sorted(lab_users.items()):
        lines.append(f"topic read benchbus/+/_client/{username}/#")
        capped = role if role_allows(fleet_role, role) else fleet_role
        lines += _call_lines(username, commands_for(capped))
    return lines


def _check_lab_users(lab_users: dict[str, str], fleet_role: str) -> None:
    """A central name may not be a local one (it would act as a local service or user) nor an unknown role."""
    local = {s.username for s in SERVICES} | set(USERS) | {FLEET_USERNAME, topics.DEV_PRINCIPAL}
    for username, role in [*lab_users.items(), ("FLEET_ROLE", fleet_role)]:
        if role not in ROLES:
            raise ValueError(f"lab user {username}: unknown role {role!r}; expected one of {ROLES}")
    clashes = sorted(set(lab_users) & local)
    if clashes:
        raise ValueError(f"lab users {clashes} clash with this device's own users")
    invalid = sorted(u for u in lab_users if not topics.valid_name(u))
    if invalid:
        raise ValueError(f"lab users {invalid} are not valid principal names (one plain topic level)")


def acl_text(lab_users: dict[str, str] | None = None, fleet_role: str | None = None) -> str:
    blocks = ["# GENERATED from bus-schemas/benchbus_schemas/roles.py by `python -m benchbus_schemas.roles`.",
              "# Do not edit: change roles.py and regenerate (a test fails when this file is stale).",
              "# Every user reads only its own replies:",
              "pattern read benchbus/+/_client/%u/#"]
    for service in SERVICES:
        blocks += ["", f"# service {service.segment}"] + _service_block(service)
    for username, role in USERS.items():
        blocks += ["", f"# {role}"] + _user_block(username, role)
    lab_users = LAB_USERS if lab_users is None else lab_users
    fleet_role = fleet_role or FLEET_ROLE
    _check_lab_users(lab_users, fleet_role)
    blocks += ["", f"# the fleet bridge: lab users' requests (at most {fleet_role}), their replies"]
    blocks += _fleet_block(lab_users, fleet_role)
    return "\n".join(blocks) + "\n"


# The lab's central broker (docs/lab.md): its own services' usernames. The central gateway is a lab user on every
# device (put it in each device's LAB_USERS with the role that device gives it); the recorder only reads.
LAB_ID = "lab"  # the device id of the central services themselves
LAB_GATEWAY_USERNAME = "lab-gateway"
LAB_RECORDER_USERNAME = "lab-recorder"
DEVICE_UP_SUFFIXES = ("+/$state", "+/$audit", "+/state/#", "+/event/#", f"{topics.CLIENTS}/#")


def _central_service_block(username: str, segment: str, role: str | None) -> list[str]:
    own = f"benchbus/{LAB_ID}/{segment}"
    lines = [f"user {username}", f"topic write {own}/$state", f"topic write {own}/$audit",
             f"topic write {own}/state/#", f"topic write {own}/event/#", f"topic read {own}/cmd/#",
             f"topic write benchbus/{LAB_ID}/{topics.CLIENTS}/#"]  # replies to the lab's own callers
    lines += [f"topic read {t}" for t in PUBLIC_TOPICS]
    return lines + (_call_lines(username, commands_for(role)) if role else [])


def _check_central_names(users: dict[str, str], devices: list[str], gateway_role: str) -> None:
    """People may not carry a device's, a central service's or a device-local name; devices may not be people."""
    _check_lab_users({**users, LAB_GATEWAY_USERNAME: gateway_role}, "admin")
    bad = sorted(d for d in devices if not topics.valid_name(d) or d == LAB_ID)
    if bad:
        raise ValueError(f"devices {bad}: a device id is one plain topic level, and not {LAB_ID!r}")
    taken = sorted((set(users) | {LAB_GATEWAY_USERNAME, LAB_RECORDER_USERNAME}) & set(devices))
    if taken:
        raise ValueError(f"{taken}: the same name for a device and a user")
    if LAB_RECORDER_USERNAME in users:
        raise ValueError(f"{LAB_RECORDER_USERNAME} is the central recorder's own user")


def central_acl_text(users: dict[str, str], devices: list[str], gateway_role: str = "operator") -> str:
    """The central Mosquitto's ACL: each device's fleet bridge (username = device id) writes only what goes up from
    that device and reads only its requests; each person writes requests only under their own name, for the commands
    of their lab role on any device (which still judges them by its own ACL); the central services their topics."""
    _check_central_names(users, devices, gateway_role)
    blocks = ["# GENERATED by `benchbus lab access` from the lab file (docs/lab.md); do not edit.",
              "pattern read benchbus/+/_client/%u/#"]
    for device in sorted(devices):
        blocks += ["", f"# device {device}: its fleet edge broker's link", f"user {device}"]
        blocks += [f"topic write benchbus/{device}/{suffix}" for suffix in DEVICE_UP_SUFFIXES]
        blocks.append(f"topic read benchbus/{device}/+/cmd/+/+")
    for username, role in sorted(users.items()):
        blocks += ["", f"# {role}"] + _user_block(username, role)
    blocks += ["", f"# the central gateway: a lab user ({gateway_role}) on every device that lists it"]
    blocks += _central_service_block(LAB_GATEWAY_USERNAME, "gateway", gateway_role)
    blocks += ["", "# the central recorder: reads every device"]
    blocks += _central_service_block(LAB_RECORDER_USERNAME, "recorder", None)
    return "\n".join(blocks) + "\n"


def users_text() -> str:
    """Every broker user, one a line: the first-boot credentials script makes a password for each."""
    return "\n".join([s.username for s in SERVICES] + list(USERS) + [FLEET_USERNAME]) + "\n"


REPO = Path(__file__).resolve().parents[2]
DEFAULT_ACL = REPO / "buildroot-overlay/etc/mosquitto/benchbus.acl"
DEFAULT_USERS = REPO / "buildroot-overlay/usr/lib/benchbus/broker-users"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchbus_schemas.roles", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files are stale")
    parser.add_argument("acl", nargs="?", type=Path, default=DEFAULT_ACL)
    parser.add_argument("users", nargs="?", type=Path, default=DEFAULT_USERS)
    parser.add_argument("--lab-user", action="append", default=[], metavar="NAME=ROLE",
                        help="a central user of the lab and its role on this device (default: LAB_USERS)")
    parser.add_argument("--fleet-role", choices=ROLES, default=None, help=f"default {FLEET_ROLE}")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.lab_user):
        parser.error("--lab-user takes NAME=ROLE")
    lab_users = dict(item.split("=", 1) for item in args.lab_user) if args.lab_user else None
    missing = missing_commands()
    if missing:
        print(f"commands without a role in roles.py: {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        wanted = {args.acl: acl_text(lab_users, args.fleet_role), args.users: users_text()}
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    stale = [path for path, text in wanted.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path])
    return 0


if __name__ == "__main__":
    sys.exit(main())
