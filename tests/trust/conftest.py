"""The Pi's broker, for real: Mosquitto with the overlay's configuration, the password file our first-boot script
makes and the ACL generated from bus-schemas/benchbus_schemas/roles.py. Every principal logs in as itself."""
from __future__ import annotations

import subprocess
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from benchbus import BusClient
from benchbus.settings import BrokerSettings
from benchbus.testing.broker import free_port, mosquitto_binary, wait_for_port

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "buildroot-overlay"
NOT_AUTHORIZED = 135


class PiBroker:
    def __init__(self, work: Path):
        self.work = work
        self.passwd, self.creds = work / "benchbus.passwd", work / "credentials"
        subprocess.run([str(OVERLAY / "usr/lib/benchbus/make-broker-credentials"), str(self.passwd), str(self.creds),
                        str(OVERLAY / "usr/lib/benchbus/broker-users")], check=True, timeout=120)
        self.port = free_port()
        conf = (OVERLAY / "etc/mosquitto/conf.d/benchbus.conf").read_text()
        conf = (conf.replace("listener 1883", f"listener {self.port} 127.0.0.1")
                    .replace("/etc/mosquitto/benchbus.passwd", str(self.passwd))
                    .replace("/etc/mosquitto/benchbus.acl", str(OVERLAY / "etc/mosquitto/benchbus.acl"))
                    .replace("persistence true", "persistence false"))
        conf += "\n# started as root by the tests: stay root to read the pytest temp dir (ignored when not root)\n"
        conf += "user root\n"
        (work / "mosquitto.conf").write_text(conf)
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(work / "mosquitto.conf")],
                                        stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, process=self.process)
        self.credentials: dict[str, tuple[str, str]] = {}
        for env_file in self.creds.glob("*.env"):
            values = dict(line.split("=", 1) for line in env_file.read_text().split())
            self.credentials[values["BENCHBUS_BROKER_USERNAME"]] = (values["BENCHBUS_BROKER_USERNAME"],
                                                                    values["BENCHBUS_BROKER_PASSWORD"])

    def settings(self, username: str) -> BrokerSettings:
        user, password = self.credentials[username]
        return BrokerSettings(host="127.0.0.1", port=self.port, username=user, password=password,
                              reconnect_min_s=0.05, reconnect_max_s=0.5)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="session")
def pi_broker(tmp_path_factory):
    broker = PiBroker(tmp_path_factory.mktemp("pi-broker"))
    yield broker
    broker.close()


class Session:
    """A bare paho MQTT 5 session as one broker user: what an attacker on the lab network would hold."""

    def __init__(self, port: int, user: str | None, password: str | None):
        self.received: list[mqtt.MQTTMessage] = []
        self.arrived = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.refused: bool | None = None
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, _c, _u, _f, reason_code, _p):
        self.refused = reason_code.is_failure
        self.connected.set()

    def _on_message(self, _c, _u, message):
        with self.arrived:
            self.received.append(message)
            self.arrived.notify_all()

    def publish_acked(self, topic: str, payload: bytes = b'{}', retain: bool = False,
                      response_topic: str | None = None) -> int:
        """Publish at QoS 1; 0 when the broker accepted it (PUBACK 0, or 16 "no matching subscribers"), else
        the PUBACK reason code (135: not authorized)."""
        codes: list[int] = []
        done = threading.Event()
        self.client.on_publish = lambda _c, _u, _mid, reason_code, _p: (codes.append(reason_code.value), done.set())
        props = None
        if response_topic is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response_topic
            props.CorrelationData = b"x"
        self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        assert done.wait(5), "no PUBACK"
        return 0 if codes[0] in (0, 16) else codes[0]

    def subscribe_acked(self, topic_filter: str) -> int:
        """Subscribe; the SUBACK's reason code (0-2 granted QoS, 135 not authorized)."""
        codes: list[int] = []
        done = threading.Event()
        self.client.on_subscribe = lambda _c, _u, _mid, reason_codes, _p: (codes.append(reason_codes[0].value),
                                                                            done.set())
        self.client.subscribe(topic_filter, options=SubscribeOptions(qos=1))
        assert done.wait(5), "no SUBACK"
        return codes[0]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: any(predicate(m) for m in self.received), timeout)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def login(pi_broker):
    sessions: list[Session] = []

    def make(username: str) -> Session:
        session = Session(pi_broker.port, *pi_broker.credentials[username])
        sessions.append(session)
        return session
    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def client_as(pi_broker, device):
    clients: list[BusClient] = []

    def make(username: str, name: str | None = None) -> BusClient:
        client = BusClient(device, pi_broker.settings(username), name=name)
        client.start()
        clients.append(client)
        return client
    yield make
    for client in clients:
        client.close()
