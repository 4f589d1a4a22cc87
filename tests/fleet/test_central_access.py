"""The lab's central broker guarded by the generated ACL and password file (benchbus.labaccess), and a device linked
to it over TLS with its own client certificate: two real Mosquittos on this machine (central, and a device's own
broker with its generated ACL), the real fleet edge broker between them (benchbus.fleet), and a rig on the real
runtime (rig.py). Certificates are made by `openssl` in the test (certs.py).

Cases: the device's data arrives over TLS; a lab operator's command reaches the rig and is answered; a viewer at
central cannot publish a command (PUBACK 135 from the central broker); a device's user writes only under its own
device, by password or by certificate; a certificate from another CA, or none, is refused at the handshake."""
from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from benchbus import BusClient, BusError
from benchbus.fleet import CentralBroker, FleetSettings, LocalBroker, bridge_conf
from benchbus.lab import central_conf
from benchbus.labaccess import LabDevice, LabFile, LabUser, write_access
from benchbus.settings import BrokerSettings
from benchbus.testing import wait_until
from benchbus.testing.broker import free_port, mosquitto_binary, wait_for_port
from benchbus_schemas import roles
from certs import TestCA

RIG = Path(__file__).with_name("rig.py")
PASSWORDS = {"alice": "alice-pw-1", "bob": "bob-pw-12", "rig2": "rig2-pw-12"}
AS_ROOT = "user root\n"  # started as root, Mosquitto would switch to `mosquitto`, who cannot read the temp dir


class Hosts:
    def __init__(self, root: Path):
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ca, self.rogue = TestCA(root, "lab"), TestCA(root, "rogue")
        self.central_port, self.tls_port, self.device_port = free_port(), free_port(), free_port()

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.root / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def start_central(self) -> None:
        lab = LabFile(users={"alice": LabUser(role="operator", password=PASSWORDS["alice"]),
                             "bob": LabUser(role="viewer", password=PASSWORDS["bob"])},
                      devices={"rig1": LabDevice(), "rig2": LabDevice(password=PASSWORDS["rig2"])})
        access = write_access(lab, self.root / "access")
        cert, key = self.ca.issue("central", ("IP:127.0.0.1", "DNS:localhost"))
        (self.root / "central-data").mkdir()
        conf = self.root / "central.conf"
        conf.write_text(central_conf(self.central_port, "127.0.0.1", self.root / "central-data", access,
                                     {"port": self.tls_port, "cafile": self.ca.cert, "certfile": cert,
                                      "keyfile": key}) + "log_type all\n")
        process = self.spawn("central", [mosquitto_binary() or "mosquitto", "-c", str(conf)])
        wait_for_port("127.0.0.1", self.tls_port, process=process)

    def start_device(self) -> None:
        home = self.root / "rig1"
        home.mkdir()
        local = {"benchbus-scheduler": uuid.uuid4().hex, roles.FLEET_USERNAME: uuid.uuid4().hex}
        passwd = home / "passwd"
        passwd.write_text("".join(f"{user}:{password}\n" for user, password in local.items()))
        subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
        acl = home / "benchbus.acl"
        acl.write_text(roles.acl_text({"alice": "operator", "bob": "viewer"}, fleet_role="operator"))
        (home / "mosquitto.conf").write_text(
            f"{AS_ROOT}allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
            f"listener {self.device_port} 127.0.0.1\nlog_dest stderr\nlog_type all\n")
        broker = self.spawn("rig1-broker", [mosquitto_binary() or "mosquitto", "-c", str(home / "mosquitto.conf")])
        wait_for_port("127.0.0.1", self.device_port, process=broker)
        cert, key = self.ca.issue("rig1")
        settings = FleetSettings(
            device="rig1", edge_port=free_port(), data_dir=home / "edge-data", restart_timeout_s=(1, 2),
            central=CentralBroker(host="127.0.0.1", port=self.tls_port, cafile=self.ca.cert, certfile=cert,
                                  keyfile=key, keepalive_s=5),
            local=LocalBroker(port=self.device_port, password=local[roles.FLEET_USERNAME]))
        settings.data_dir.mkdir()
        (home / "edge.conf").write_text(AS_ROOT + bridge_conf(settings))
        self.spawn("rig1-edge", [mosquitto_binary() or "mosquitto", "-c", str(home / "edge.conf")])
        wait_until(lambda: "benchbus-fleet-rig1 1 benchbus/rig1/_client/#" in self.log("rig1-broker"), 15,
                   "the edge's session on rig1's broker")
        self.spawn("rig1-rig", [sys.executable, str(RIG), "--device", "rig1", "--port", str(self.device_port),
                                "--password", local["benchbus-scheduler"], "--cycle-file", str(home / "cycle")])

    def user(self, name: str, device: str = "rig1") -> BusClient:
        return BusClient(device, BrokerSettings(host="127.0.0.1", port=self.central_port, username=name,
                                                password=PASSWORDS[name]), name=f"t{uuid.uuid4().hex[:6]}")

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    hosts = Hosts(tmp_path_factory.mktemp("central"))
    try:
        hosts.start_central()
        hosts.start_device()
        yield hosts
    except BaseException:
        for log in sorted(hosts.root.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")
        raise
    finally:
        hosts.close()


class Publisher:
    """A raw MQTT 5 client: what the broker answers to each publish (the PUBACK's reason code)."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None,
                 tls: tuple[Path, Path, Path] | None = None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            ca, cert, key = tls
            self.client.tls_set(str(ca), str(cert), str(key))
        self.acks: dict[int, int] = {}
        self.connected = threading.Event()
        self.failed: list[str] = []
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self.acks.__setitem__(mid, reason.value)
        self.client.on_disconnect = lambda _c, _u, _f, reason, _p: self.failed.append(f"disconnected: {reason}")
        self.port = port

    def _on_connect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            self.failed.append(f"CONNACK {reason_code}")
        else:
            self.connected.set()

    def connect(self) -> bool:
        """True once connected; False when the broker refused (TLS handshake, CONNACK or closed connection)."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=10)
            self.client.loop_start()
        except (ssl.SSLError, OSError) as exc:
            self.failed.append(f"{type(exc).__name__}: {exc}")
            return False
        wait_until(lambda: self.connected.is_set() or self.failed, 10, "connected or refused")
        return self.connected.is_set()

    def publish(self, topic: str, payload: dict) -> int:
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        wait_until(lambda: info.mid in self.acks, 10, f"the PUBACK of {topic}")
        return self.acks[info.mid]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


NOT_AUTHORIZED = 135
ACCEPTED = {0, 16}  # success, or "no matching subscribers" (also a success)


def test_the_device_links_over_tls_with_its_certificate(hosts):
    seen: list[str] = []
    with hosts.user("bob") as bob:
        bob.subscribe("benchbus/rig1/#", lambda topic, _data, _message: seen.append(topic))
        wait_until(lambda: "benchbus/rig1/scheduler/event/broadcast" in seen, 30, "rig1's broadcasts at central")
        wait_until(lambda: "benchbus/rig1/fleet/state/link" in seen, 10, "rig1's link state at central")
    log = hosts.log("central")
    assert f"on port {hosts.tls_port}." in log and "as benchbus-rig1 (p5, c0, k5, u'rig1')" in log  # over TLS


def test_a_lab_operator_command_reaches_the_device_and_a_viewer_cannot_publish_one(hosts):
    with hosts.user("alice") as alice:
        wait_until(lambda: _answers(alice), 30, "rig1's scheduler answering through the TLS link")
        assert alice.call("scheduler", "pause", {}, timeout=10) == {"paused": True}
        assert alice.call("scheduler", "resume", {}, timeout=10) == {"paused": False}
    with hosts.user("bob") as bob:
        assert bob.call("scheduler", "get_config", {}, timeout=10)["paused"] is False  # within a viewer's role
        with pytest.raises(BusError) as refused:  # the central broker's PUBACK 135: it never leaves central
            bob.call("scheduler", "pause", {}, timeout=10)
        assert refused.value.code == "unauthorized"
    assert "pause by bob" not in hosts.log("rig1-rig")
    assert "pause by alice" in hosts.log("rig1-rig")


def _answers(client: BusClient) -> bool:
    try:
        client.call("scheduler", "get_config", {}, timeout=2)
    except BusError:
        return False
    return True


def test_a_device_user_writes_only_under_its_own_device(hosts):
    by_password = Publisher(hosts.central_port, "rig2", PASSWORDS["rig2"])
    assert by_password.connect(), by_password.failed
    cert, key = hosts.ca.issue("rig2")
    by_certificate = Publisher(hosts.tls_port, tls=(hosts.ca.cert, cert, key))  # its CN is its username
    assert by_certificate.connect(), by_certificate.failed
    try:
        for device in (by_password, by_certificate):
            assert device.publish("benchbus/rig2/scheduler/event/broadcast", {"cycle": 1}) in ACCEPTED
            assert device.publish("benchbus/rig2/fleet/state/link", {}) in ACCEPTED
            assert device.publish("benchbus/rig1/scheduler/event/broadcast", {"cycle": 1}) == NOT_AUTHORIZED
            assert device.publish("benchbus/rig1/scheduler/$state", {"state": "ready"}) == NOT_AUTHORIZED
            # a device may not send commands, not even to itself: requests come from the lab's users
            assert device.publish("benchbus/rig2/scheduler/cmd/pause/alice", {}) == NOT_AUTHORIZED
            assert device.publish("benchbus/rig1/scheduler/cmd/pause/rig2", {}) == NOT_AUTHORIZED
    finally:
        by_password.close()
        by_certificate.close()


def test_a_wrong_certificate_or_none_is_refused(hosts):
    cert, key = hosts.rogue.issue("rig1")  # the right name, signed by a CA the central broker does not trust
    rogue = Publisher(hosts.tls_port, tls=(hosts.ca.cert, cert, key))
    assert not rogue.connect(), "a certificate of another CA was accepted"
    no_certificate = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    no_certificate.tls_set(str(hosts.ca.cert))
    anonymous = Publisher(hosts.tls_port)
    anonymous.client = no_certificate
    anonymous.client.on_connect = anonymous._on_connect
    anonymous.client.on_disconnect = lambda _c, _u, _f, reason, _p: anonymous.failed.append(f"disconnected: {reason}")
    assert not anonymous.connect(), "a TLS client without a certificate was accepted"
    for publisher in (rogue, anonymous):
        publisher.close()
    wrong_password = Publisher(hosts.central_port, "rig2", "not-its-password")
    assert not wrong_password.connect()
    wrong_password.close()
    print(f"refused: {rogue.failed[:1]}, {anonymous.failed[:1]}, {wrong_password.failed[:1]}")
