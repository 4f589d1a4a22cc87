"""The fleet edge broker's configuration and the device ACL's fleet user, generated from settings and roles.py."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from benchbus.fleet import CentralBroker, FleetSettings, LocalBroker, bridge_conf
from benchbus_schemas import roles


def conf(**central) -> str:
    return bridge_conf(FleetSettings(device="rig-7", central=CentralBroker(host="central.lab", **central),
                                     local=LocalBroker(password="local-secret")))


def lines(text: str, connection: str) -> list[str]:
    block = text.split(f"connection {connection}\n", 1)[1].split("\nconnection ", 1)[0]
    return block.splitlines()


def test_public_topics_go_up_and_requests_come_down_for_this_device_only():
    central = lines(conf(password="pw"), "benchbus-central")
    assert 'topic benchbus/rig-7/+/$state out 1 edge/ ""' in central
    assert 'topic benchbus/rig-7/+/event/# out 1 edge/ ""' in central
    assert 'topic benchbus/rig-7/_client/# out 1 edge/ ""' in central
    assert [line for line in central if " in 1" in line] == ['topic benchbus/rig-7/+/cmd/+/+ in 1 edge/ ""']
    assert "cleansession false" in central and "bridge_protocol_version mqttv50" in central
    assert "remote_username rig-7" in central and "remote_password pw" in central


def test_the_device_broker_is_reached_as_the_acl_checked_fleet_user():
    local = lines(conf(password="pw"), "benchbus-local")
    assert "remote_username benchbus-fleet" in local and "remote_password local-secret" in local
    assert [line for line in local if " out 1" in line] == ['topic benchbus/rig-7/+/cmd/+/+ out 1 edge/ ""']


def test_the_edge_keeps_device_messages_under_its_prefix_so_its_own_link_notice_stays_home():
    """The edge's local copy of its link notification (benchbus/<dev>/fleet/state/link) matches no bridged topic:
    only the central broker's own "1" and the bridge's will "0" say the link state there."""
    text = conf(password="pw")
    topic_lines = [line for line in text.splitlines() if line.startswith("topic ")]
    assert topic_lines and all(line.endswith(' 1 edge/ ""') for line in topic_lines)
    assert "notification_topic benchbus/rig-7/fleet/state/link" in text


def test_tls_with_a_device_certificate():
    central = lines(conf(cafile=Path("/etc/ca.pem"), certfile=Path("/etc/c.pem"), keyfile=Path("/etc/k.pem")),
                    "benchbus-central")
    assert {"bridge_cafile /etc/ca.pem", "bridge_certfile /etc/c.pem", "bridge_keyfile /etc/k.pem",
            "bridge_insecure false"} <= set(central)
    assert not [line for line in central if line.startswith("remote_password")]


def test_the_queue_is_bounded():
    text = conf(password="pw")
    assert "max_queued_messages 100000" in text and "max_queued_bytes 268435456" in text
    with pytest.raises(ValidationError, match="max_queued_messages"):
        FleetSettings(device="d", central=CentralBroker(host="h", password="p"), max_queued_messages=0)


@pytest.mark.parametrize(("fields", "named"), [
    ({"certfile": Path("/c")}, "keyfile"),
    ({}, "password or a client certificate"),
    ({"host": "evil\nlistener 1884", "password": "p"}, "host"),
])
def test_bad_central_settings_are_named(fields, named):
    with pytest.raises(ValidationError, match=named):
        CentralBroker(**{"host": "h", **fields})


def test_a_line_break_cannot_add_settings():
    with pytest.raises(ValueError, match="central.password"):
        conf(password="pw\nallow_anonymous true")


def test_the_cli_prints_it(tmp_path):
    settings = tmp_path / "fleet.yaml"
    settings.write_text("device: rig-9\ncentral: {host: c.lab, password: pw}\nlocal: {password: lp}\n")
    out = subprocess.run([sys.executable, "-m", "benchbus.cli", "lab", "bridge-conf", "--settings", str(settings)],
                         capture_output=True, text=True, check=True).stdout
    assert 'topic benchbus/rig-9/+/cmd/+/+ in 1 edge/ ""' in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: rig-9\ncentral: {host: c.lab}\n")
    result = subprocess.run([sys.executable, "-m", "benchbus.cli", "lab", "bridge-conf", "--settings", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "central" in result.stderr


def fleet_block(acl: str) -> list[str]:
    return acl.split(f"user {roles.FLEET_USERNAME}\n", 1)[1].splitlines()


def test_the_fleet_user_writes_requests_only_as_lab_users_within_their_capped_role():
    block = fleet_block(roles.acl_text({"alice": "admin", "bob": "viewer"}, fleet_role="operator"))
    writes = [line for line in block if line.startswith("topic write")]
    assert all(line.endswith(("/alice", "/bob")) for line in writes)
    assert "topic write benchbus/+/smoothie/cmd/home/alice" in writes  # operator: allowed
    assert "topic write benchbus/+/smoothie/cmd/gcode/alice" not in writes  # admin, capped at operator
    assert "topic write benchbus/+/smoothie/cmd/home/bob" not in writes
    assert "topic write benchbus/+/smoothie/cmd/position/bob" in writes
    assert "topic read benchbus/+/_client/alice/#" in block


def test_by_default_nothing_comes_down():
    block = fleet_block(roles.acl_text())
    assert not [line for line in block if line.startswith("topic write")]
    assert roles.FLEET_USERNAME in roles.users_text().split()


@pytest.mark.parametrize("users", [{"benchbus-scheduler": "viewer"}, {"benchbus-admin": "viewer"}, {"dev": "viewer"},
                                   {"alice": "root"}, {"a/b": "viewer"}])
def test_a_lab_user_cannot_be_a_local_one_or_unknown(users):
    with pytest.raises(ValueError):
        roles.acl_text(users)


def test_a_lab_users_role_at_the_runtime_is_capped_too(monkeypatch):
    """Handlers that ask again (caller_has_role) see the same capped role the ACL gave."""
    monkeypatch.setattr(roles, "LAB_USERS", {"alice": "admin", "bob": "viewer"})
    monkeypatch.setattr(roles, "FLEET_ROLE", "operator")
    assert roles.role_of("alice") == "operator" and roles.role_of("bob") == "viewer"
    assert roles.role_of("mallory") is None


def test_the_acl_generator_names_a_malformed_lab_user(capsys):
    with pytest.raises(SystemExit):
        roles.main(["--check", "--lab-user", "alice"])
    assert "NAME=ROLE" in capsys.readouterr().err
