"""A real Mosquitto 2 for tests and benchmarks: a container where a Docker engine answers, else the binary.

Never a fake broker: everything benchbus promises (last wills, retained state, MQTT 5 properties, reconnects)
is a promise about a real broker.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..settings import BrokerSettings

MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
set_tcp_nodelay true
allow_anonymous true
persistence false
max_queued_messages 100000
max_inflight_messages 0
log_dest file {log}
log_type error
log_type warning
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0,
                  process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
                                               if os.access(p, os.X_OK)), None)


class MosquittoProcess:
    """The `mosquitto` binary on a free port with a generated config; stop() and start() keep the same port."""

    def __init__(self, port: int | None = None, extra_conf: str = ""):
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: run ./dev test (it installs Debian's mosquitto)")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="benchbus-mosquitto-"))
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self.conf_path.write_text(MOSQUITTO_CONF.format(port=self.port, log=self.log_path) + extra_conf)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._process = subprocess.Popen([self.binary, "-c", str(self.conf_path)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        wait_for_port(self.host, self.port, process=self._process)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def settings(self) -> BrokerSettings:
        return BrokerSettings(host=self.host, port=self.port, reconnect_min_s=0.05, reconnect_max_s=0.5)


class MosquittoContainer:
    """testcontainers' eclipse-mosquitto 2 image, published on a fixed free host port so a restart keeps it."""

    def __init__(self) -> None:
        from testcontainers.core.container import DockerContainer

        self.host = "127.0.0.1"
        self.port = free_port()
        self._container = (DockerContainer("eclipse-mosquitto:2")
                           .with_bind_ports(1883, self.port)
                           .with_command("mosquitto -c /mosquitto-no-auth.conf"))
        self._started = False

    @property
    def running(self) -> bool:
        return self._started

    def start(self) -> None:
        if self._started:
            return
        if self._container.get_wrapped_container() is None:
            self._container.start()
        else:
            self._container.get_wrapped_container().start()
        self._started = True
        wait_for_port(self.host, self.port, timeout=30)

    def stop(self) -> None:
        if self._started:
            self._container.get_wrapped_container().stop(timeout=2)
            self._started = False

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._container.stop()

    def settings(self) -> BrokerSettings:
        return BrokerSettings(host=self.host, port=self.port, reconnect_min_s=0.05, reconnect_max_s=0.5)


def docker_engine_answers() -> bool:
    if os.environ.get("BENCHBUS_TEST_BROKER") == "binary":
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


Broker = MosquittoProcess | MosquittoContainer


def start_broker() -> Broker:
    broker: Broker = MosquittoContainer() if docker_engine_answers() else MosquittoProcess()
    broker.start()
    return broker


class RetainedTracker:
    """Remembers every retained topic published on the broker, so a test's leftovers can be cleared fast."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.topics: set[str] = set()
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"retained-tracker-{os.getpid()}",
                                   protocol=mqtt.MQTTv5)
        everything = SubscribeOptions(qos=1, retainAsPublished=True)
        self._client.on_connect = lambda c, *_: c.subscribe("#", options=everything)
        self._client.on_message = self._seen
        self._client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]  # paho says int; it sleeps floats
        self._client.connect_async(broker.host, broker.port, 30)
        self._client.loop_start()

    def _seen(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            with self._lock:
                (self.topics.add if message.payload else self.topics.discard)(message.topic)

    def clear(self) -> None:
        if not self.broker.running:
            return
        with self._lock:
            leftovers, self.topics = self.topics, set()
        for topic_name in leftovers:
            self._client.publish(topic_name, b"", qos=1, retain=True)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
