"""The role x topic matrix on the Pi's real broker configuration: every principal (each service, viewer, operator,
admin) against every declared command, its own and others' public topics, and every other principal's replies."""
from __future__ import annotations

import subprocess

import pytest

from benchbus_schemas import roles, specs

from .conftest import NOT_AUTHORIZED, OVERLAY, REPO

DEVICE = "robot1"
# no lab users: they have no command
PRINCIPALS = [s.username for s in roles.SERVICES] + list(roles.USERS) + [roles.FLEET_USERNAME]
COMMANDS = [(s.service, s.name) for s in specs() if s.kind == "cmd"]


def allowed_commands(username: str) -> set[tuple[str, str]]:
    service = next((s for s in roles.SERVICES if s.username == username), None)
    role = roles.USERS.get(username) or (service.role if service else None)
    granted = set(roles.commands_for(role)) if role else set()
    return granted | set(service.calls if service else ())


def test_the_committed_acl_and_user_list_are_generated_from_roles():
    check = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "benchbus_schemas.roles", "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, f"run `python -m benchbus_schemas.roles`: {check.stderr}"


def test_every_declared_command_has_a_role():
    assert roles.missing_commands() == []


def test_anonymous_and_wrong_password_are_refused(pi_broker):
    from .conftest import Session
    anonymous = Session(pi_broker.port, None, None)
    wrong = Session(pi_broker.port, "benchbus-samd", "not-the-password")
    assert anonymous.refused is not False and wrong.refused is not False
    anonymous.close()
    wrong.close()


def test_passwords_are_unique_per_user_and_per_robot(pi_broker, tmp_path):
    passwords = [password for _user, password in pi_broker.credentials.values()]
    assert len(set(passwords)) == len(passwords) == len(PRINCIPALS)
    subprocess.run([str(OVERLAY / "usr/lib/benchbus/make-broker-credentials"), str(tmp_path / "p"),
                    str(tmp_path / "c"), str(OVERLAY / "usr/lib/benchbus/broker-users")], check=True, timeout=120)
    assert pi_broker.credentials["benchbus-samd"][1] not in (tmp_path / "c/samd.env").read_text()


@pytest.mark.parametrize("username", PRINCIPALS)
def test_commands_each_principal_may_and_may_not_publish(login, username):
    session = login(username)
    allowed = allowed_commands(username)
    wrong = []
    for service, command in COMMANDS:
        code = session.publish_acked(f"benchbus/{DEVICE}/{service}/cmd/{command}/{username}")
        if (code == 0) != ((service, command) in allowed):
            wrong.append(f"{service}/{command}: {'accepted' if code == 0 else 'refused'}")
    assert wrong == [], f"{username}: {wrong}"


@pytest.mark.parametrize("username", PRINCIPALS)
def test_nobody_may_publish_under_another_principals_name(login, username):
    session = login(username)
    for other in ("benchbus-admin", "benchbus-client", "benchbus-smoothie", "dev", "admin"):
        if other != username:
            assert session.publish_acked(f"benchbus/{DEVICE}/smoothie/cmd/gcode/{other}") == NOT_AUTHORIZED
            assert session.publish_acked(f"benchbus/{DEVICE}/gpio/cmd/get_lights/{other}") == NOT_AUTHORIZED
    assert session.publish_acked(f"benchbus/{DEVICE}/smoothie/cmd/home") == NOT_AUTHORIZED  # no principal level


@pytest.mark.parametrize("username", PRINCIPALS)
def test_public_topics_only_their_owner_writes_and_everyone_reads(login, username):
    session = login(username)
    own = username.removeprefix("benchbus-") if username in [s.username for s in roles.SERVICES] else None
    for segment in ("gpio", "smoothie", "samd", "scheduler"):
        for suffix in ("$state", "$audit", "state/door", "event/alarm"):
            expected = 0 if segment == own else NOT_AUTHORIZED
            assert session.publish_acked(f"benchbus/{DEVICE}/{segment}/{suffix}") == expected, (segment, suffix)
    for public in roles.PUBLIC_TOPICS:
        assert session.subscribe_acked(public.replace("+", DEVICE, 1)) in (0, 1, 2), public


@pytest.mark.parametrize("username", PRINCIPALS)
def test_replies_are_private_to_their_principal(login, username):
    """Mosquitto grants a SUBSCRIBE and filters each message on delivery, so privacy is tested by delivery: a
    reply into another principal's namespace never reaches us, while a later marker on a public topic does."""
    snoop = login(username)
    victim = "benchbus-admin" if username != "benchbus-admin" else "benchbus-client"
    snoop.subscribe_acked(f"benchbus/{DEVICE}/_client/{victim}/#")
    snoop.subscribe_acked(f"benchbus/{DEVICE}/samd/event/marker")
    snoop.subscribe_acked(f"benchbus/{DEVICE}/+/cmd/#")
    samd = login("benchbus-samd")
    assert samd.publish_acked(f"benchbus/{DEVICE}/_client/{victim}/s1/reply", b'{"ok": true}') == 0
    caller = login("benchbus-client")
    target = "calibration/cmd/list_calibrations" if username != "benchbus-calibration" else "scheduler/cmd/get_config"
    caller.publish_acked(f"benchbus/{DEVICE}/{target}/benchbus-client")  # another service's command
    assert samd.publish_acked(f"benchbus/{DEVICE}/samd/event/marker") == 0
    assert snoop.wait_for(lambda m: m.topic.endswith("/marker"))
    leaked = [m.topic for m in snoop.received if "/_client/" in m.topic or "/cmd/" in m.topic]
    assert leaked == [], f"{username} read {leaked}"


@pytest.mark.parametrize("username", PRINCIPALS)
def test_only_services_write_replies(login, username):
    """Nobody but a service (which answers requests) may publish into a reply namespace: no forged replies."""
    session = login(username)
    services = [s.username for s in roles.SERVICES]
    for other in ("benchbus-client", "benchbus-admin", "benchbus-gateway"):
        expected = 0 if username in services else NOT_AUTHORIZED
        assert session.publish_acked(f"benchbus/{DEVICE}/_client/{other}/s1/reply") == expected, other


@pytest.mark.parametrize("username", PRINCIPALS)
def test_own_replies_arrive(login, username):
    session = login(username)
    session.subscribe_acked(f"benchbus/{DEVICE}/_client/{username}/#")
    assert login("benchbus-gpio").publish_acked(f"benchbus/{DEVICE}/_client/{username}/s/reply", b'{"ok": true}') == 0
    assert session.wait_for(lambda m: m.topic == f"benchbus/{DEVICE}/_client/{username}/s/reply")
