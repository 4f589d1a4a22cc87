"""The Pi's broker security, for real: Mosquitto started with the password file our first-boot script makes and
with our ACL; each service user may use its own topics and nothing it should not."""
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from benchbus.testing.broker import free_port, mosquitto_binary, wait_for_port

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "buildroot-overlay"
DEVICE = "robot1"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    work = tmp_path_factory.mktemp("secured-broker")
    passwd, creds = work / "benchbus.passwd", work / "credentials"
    subprocess.run([str(OVERLAY / "usr/lib/benchbus/make-broker-credentials"), str(passwd), str(creds)], check=True,
                   timeout=60)
    port = free_port()
    conf = (OVERLAY / "etc/mosquitto/conf.d/benchbus.conf").read_text()
    conf = (conf.replace("listener 1883", f"listener {port} 127.0.0.1")
                .replace("/etc/mosquitto/benchbus.passwd", str(passwd))
                .replace("/etc/mosquitto/benchbus.acl", str(OVERLAY / "etc/mosquitto/benchbus.acl"))
                .replace("persistence true", "persistence false"))
    conf += "\n# started as root by the tests: stay root to read the pytest temp dir (ignored when not root)\nuser root\n"
    (work / "mosquitto.conf").write_text(conf)
    broker = subprocess.Popen([mosquitto_binary(), "-c", str(work / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, process=broker)
    credentials = {}
    for env_file in creds.glob("*.env"):
        values = dict(line.split("=", 1) for line in env_file.read_text().split())
        credentials[env_file.stem] = (values["BENCHBUS_BROKER_USERNAME"], values["BENCHBUS_BROKER_PASSWORD"])
    yield port, credentials, creds
    broker.terminate()
    broker.wait(10)


class Session:
    def __init__(self, port: int, user: str | None, password: str | None):
        self.received: list[str] = []
        self.arrived = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.refused = None
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, _c, _u, _f, reason_code, _p):
        self.refused = reason_code.is_failure
        self.connected.set()

    def _on_message(self, _c, _u, message):
        with self.arrived:
            self.received.append(message.topic)
            self.arrived.notify_all()

    def publish_acked(self, topic: str) -> int:
        """Publish at QoS 1; 0 when the broker accepted it (PUBACK 0, or 16 "no matching subscribers"), else
        the PUBACK reason code (135: not authorized)."""
        codes = []
        done = threading.Event()
        self.client.on_publish = lambda _c, _u, _mid, reason_code, _p: (codes.append(reason_code.value), done.set())
        self.client.publish(topic, b'{"x": 1}', qos=1)
        assert done.wait(5), "no PUBACK"
        return 0 if codes[0] in (0, 16) else codes[0]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def login(secured, segment):
    port, credentials, _ = secured
    return Session(port, *credentials[segment])


def test_anonymous_and_wrong_password_are_refused(secured):
    port, credentials, _ = secured
    anonymous = Session(port, None, None)
    assert anonymous.refused is not False
    wrong = Session(port, credentials["samd"][0], "not-the-password")
    assert wrong.refused is not False
    for session in (anonymous, wrong):
        session.close()


def test_passwords_are_unique_per_service_and_per_run(secured, tmp_path):
    _, credentials, _ = secured
    assert len({password for _user, password in credentials.values()}) == len(credentials)
    subprocess.run([str(OVERLAY / "usr/lib/benchbus/make-broker-credentials"), str(tmp_path / "p"), str(tmp_path / "c")],
                   check=True, timeout=60)
    other = (tmp_path / "c/samd.env").read_text()
    assert credentials["samd"][1] not in other, "a second robot must not get the same password"


def test_a_service_may_publish_its_own_topics_only(secured):
    samd = login(secured, "samd")
    assert samd.publish_acked(f"benchbus/{DEVICE}/samd/state/bus") == 0
    assert samd.publish_acked(f"benchbus/{DEVICE}/samd/$state") == 0
    assert samd.publish_acked(f"benchbus/{DEVICE}/smoothie/state/position") == 135
    assert samd.publish_acked(f"benchbus/{DEVICE}/calibration/cmd/delete") == 135
    samd.close()


def test_only_the_smoothie_bridge_may_use_the_board_lines(secured):
    for segment in ("smoothie", "gateway", "scheduler", "client"):
        session = login(secured, segment)
        expected = 0 if segment == "smoothie" else 135
        principal = f"benchbus-{segment}"  # a command topic ends with the caller's own user (the ACL pins it)
        assert session.publish_acked(f"benchbus/{DEVICE}/gpio/cmd/smoothie_reset/{principal}") == expected, segment
        assert session.publish_acked(f"benchbus/{DEVICE}/gpio/cmd/smoothie_halt/{principal}") == expected, segment
        session.close()


def test_the_gateway_calls_for_external_clients_and_others_do_not(secured):
    gateway, samd = login(secured, "gateway"), login(secured, "samd")
    assert gateway.publish_acked(f"benchbus/{DEVICE}/smoothie/cmd/home/benchbus-gateway") == 0
    assert gateway.publish_acked(f"benchbus/{DEVICE}/gpio/cmd/set_rail_lights/benchbus-gateway") == 0
    assert gateway.publish_acked(f"benchbus/{DEVICE}/smoothie/cmd/home/benchbus-admin") == 135  # no other principal
    assert samd.publish_acked(f"benchbus/{DEVICE}/smoothie/cmd/home/benchbus-samd") == 135
    assert gateway.publish_acked(f"benchbus/{DEVICE}/smoothie/state/position") == 135
    gateway.close()
    samd.close()


def test_scheduler_may_transact_on_samd(secured):
    scheduler = login(secured, "scheduler")
    assert scheduler.publish_acked(f"benchbus/{DEVICE}/samd/cmd/transact/benchbus-scheduler") == 0
    assert scheduler.publish_acked(f"benchbus/{DEVICE}/smoothie/cmd/move/benchbus-scheduler") == 135
    scheduler.close()


def test_a_real_service_runs_under_its_user(secured, tmp_path):
    """calibration-store with its first-boot credentials: connects, publishes $state ready, answers the gateway."""
    port, credentials, creds = secured
    env = dict(os.environ)
    env.update(line.split("=", 1) for line in (creds / "calibration.env").read_text().split())
    env.update({"BENCHBUS_DEVICE": DEVICE, "BENCHBUS_BROKER_HOST": "127.0.0.1", "BENCHBUS_BROKER_PORT": str(port),
                "BENCHBUS_CALIBRATION_DATA_DIR": str(tmp_path)})
    service = subprocess.Popen([sys.executable, "-m", "benchbus_calibration.service"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from benchbus import BusClient
        from benchbus.settings import BrokerSettings

        user, password = credentials["gateway"]
        broker = BrokerSettings(host="127.0.0.1", port=port, username=user, password=password)
        with BusClient(DEVICE, broker, name="acl-test") as client:
            client.wait_for(f"benchbus/{DEVICE}/calibration/$state", lambda _t, d: d.get("state") == "ready", 20)
            assert isinstance(client.call("calibration", "list_calibrations", {}, timeout=10), dict)
    finally:
        service.terminate()
        service.wait(10)
