"""The lab on real hosts: three devices (each its own Mosquitto with the generated ACL, the fleet edge broker from
`benchbus.fleet`, and a rig built on the real runtime) in their own network namespaces, bridged over veth links to a
central Mosquitto in a fourth. On the central link's far end: the real recorder (`benchbus-recorder`, every device,
a persistent session acknowledged after commit) writing to a real PostgreSQL, and a plain persistent MQTT 5 session
counting what the broker delivers (duplicates included, which the database's key absorbs).

Failure cases: a device's link cut while it broadcasts (BENCHBUS_LAB_OUTAGE_S, default 10 s; the issue's 60 s with
the variable set), the central broker restarted, a command for one device, a command from a lab user without the
role, and a central side that publishes commands under names the device never gave it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchbus import BusClient
from benchbus.errors import CallTimeout
from benchbus.fleet import CentralBroker, FleetSettings, LocalBroker, bridge_conf
from benchbus.settings import BrokerSettings
from benchbus_schemas import roles
from netlab import NetLab, cannot_run_reason
from postgres import PostgresServer  # tests/recorder/postgres.py: Debian's initdb/pg_ctl in a temp dir

DEVICES = ["rig1", "rig2", "rig3"]
LAB_USERS = {"alice": "operator", "bob": "viewer"}
OUTAGE_S = float(os.environ.get("BENCHBUS_LAB_OUTAGE_S", "10"))
RIG = Path(__file__).with_name("rig.py")
RECORDER = str(Path(sys.executable).with_name("benchbus-recorder"))
LAB_ID = "lab"  # the recorder's own device id on the central broker
PYTHON = sys.executable  # the venv's, with benchbus installed

AS_ROOT = "user root\n"  # Mosquitto started as root would drop to `mosquitto`, which cannot read the test's temp dir

pytestmark = pytest.mark.slow


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:g} s: {what}")


class CentralStore:
    """A persistent session on the central broker: broadcasts by (device, cycle), audits, link notifications."""

    def __init__(self, host: str):
        self.lock = threading.Lock()
        self.cycles: dict[str, Counter] = defaultdict(Counter)
        self.audits: list[tuple[str, dict]] = []
        self.links: dict[str, list[str]] = defaultdict(list)
        self.recorder_state: str | None = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"central-store-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        connect_props = Properties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 3600
        self.client.connect_async(host, 1883, keepalive=5, clean_start=False, properties=connect_props)
        self.client.loop_start()

    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if not reason_code.is_failure:
            client.subscribe([("benchbus/+/scheduler/event/broadcast", 1), ("benchbus/+/+/$audit", 1),
                              ("benchbus/+/fleet/state/link", 1), (f"benchbus/{LAB_ID}/recorder/$state", 1)])

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        device = message.topic.split("/")[1]
        with self.lock:
            if message.topic.endswith("/recorder/$state"):
                self.recorder_state = json.loads(message.payload)["state"] if message.payload else None
            elif message.topic.endswith("/event/broadcast"):
                self.cycles[device][json.loads(message.payload)["cycle"]] += 1
            elif message.topic.endswith("/$audit"):  # an AuditBatch: the records of one short window
                self.audits.extend((device, record) for record in json.loads(message.payload)["records"])
            else:
                self.links[device].append(message.payload.decode())

    def has_every_cycle(self, device: str, last: int) -> bool:
        with self.lock:
            return all(self.cycles[device][c] >= 1 for c in range(1, last + 1))

    def missing(self, device: str, last: int) -> list[int]:
        with self.lock:
            return [c for c in range(1, last + 1) if self.cycles[device][c] == 0]

    def highest(self, device: str) -> int:
        with self.lock:
            return max(self.cycles[device], default=0)

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for counts in self.cycles.values() for n in counts.values() if n > 1)

    def audits_of(self, principal: str) -> list[tuple[str, dict]]:
        with self.lock:
            return [(device, record) for device, record in self.audits if record["principal"] == principal]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Lab:
    def __init__(self, root: Path):
        self.root = root
        self.net = NetLab(DEVICES)
        self.python = PYTHON
        self.central_process: subprocess.Popen | None = None
        self.postgres = PostgresServer()
        self.database_url: str | None = None
        self.recorder_process: subprocess.Popen | None = None

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def cycle_of(self, device: str) -> int:
        path = self.root / device / "cycle"
        return int(path.read_text()) if path.is_file() else 0

    def start_central(self) -> None:
        conf = self.root / "central.conf"
        data = self.root / "central-data"
        data.mkdir(exist_ok=True)
        conf.write_text(f"{AS_ROOT}listener 1883 0.0.0.0\nallow_anonymous true\npersistence true\n"
                        f"persistence_location {data}/\nmax_queued_messages 100000\nlog_dest stderr\n"
                        "log_type all\n")
        self.central_process = self.net.spawn(self.net.central, ["mosquitto", "-c", str(conf)], self.log("central"))

    def stop_central(self) -> None:
        assert self.central_process is not None
        self.central_process.terminate()  # a clean stop: Mosquitto writes its persistence file
        self.central_process.wait(timeout=20)

    def start_recorder(self) -> None:
        """The real recorder on the host end of the central link, every device, into PostgreSQL."""
        if self.database_url is None:
            self.postgres.start()
            self.database_url = self.postgres.new_database()
        env = {"BENCHBUS_RECORDER_DEVICE": LAB_ID, "BENCHBUS_RECORDER_ALL_DEVICES": "true",
               "BENCHBUS_RECORDER_DATABASE_URL": self.database_url,
               "BENCHBUS_RECORDER_DATA_DIR": str(self.root / "recorder"), "BENCHBUS_RECORDER_HTTP_PORT": "0",
               "BENCHBUS_BROKER_HOST": self.net.central_for_host, "BENCHBUS_BROKER_PORT": "1883"}
        with self.log("recorder").open("ab") as out:
            self.recorder_process = subprocess.Popen([RECORDER],
                                                     stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
        self.net.processes.append(self.recorder_process)

    def kill_recorder(self) -> None:
        assert self.recorder_process is not None
        self.recorder_process.kill()  # -9: it acknowledges only what it committed, so nothing may be lost
        self.recorder_process.wait(timeout=10)

    def held_in_database(self, device: str) -> tuple[int, set[int]]:
        """(rows, distinct cycles) of a device's broadcasts in PostgreSQL."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(sa.text("SELECT cycle FROM broadcasts WHERE device = :d"),
                                          {"d": device}).scalars().all()
        finally:
            engine.dispose()
        return len(rows), set(rows)

    def start_device(self, device: str) -> None:
        home = self.root / device
        home.mkdir()
        passwords = {"benchbus-scheduler": uuid.uuid4().hex, roles.FLEET_USERNAME: uuid.uuid4().hex}
        passwd = home / "passwd"
        for user, password in passwords.items():
            subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if not passwd.exists() else []), str(passwd), user,
                            password], check=True, capture_output=True)
        acl = home / "benchbus.acl"
        acl.write_text(roles.acl_text(LAB_USERS, fleet_role="operator"))
        (home / "data").mkdir()
        (home / "mosquitto.conf").write_text(
            f"{AS_ROOT}per_listener_settings false\nallow_anonymous false\n"
            f"password_file {passwd}\nacl_file {acl}\nlistener 1883 127.0.0.1\npersistence true\n"
            f"persistence_location {home / 'data'}/\nlog_dest stderr\nlog_type all\n")
        settings = FleetSettings(
            device=device, edge_port=18830, data_dir=home / "edge-data", restart_timeout_s=(1, 2),
            central=CentralBroker(host=self.net.central_for(device), port=1883, password="lab", keepalive_s=5),
            local=LocalBroker(password=passwords[roles.FLEET_USERNAME]))
        settings.data_dir.mkdir()
        (home / "edge.conf").write_text(AS_ROOT + bridge_conf(settings))
        ns = self.net.ns(device)
        self.net.spawn(ns, ["mosquitto", "-c", str(home / "mosquitto.conf")], self.log(f"{device}-broker"))
        self.net.spawn(ns, ["mosquitto", "-c", str(home / "edge.conf")], self.log(f"{device}-edge"))
        # The rig begins once the edge's persistent session on the device's broker exists (its last subscription
        # logged): from then on the device's broker keeps for it every broadcast, whatever happens to the links.
        edge_subscribed = f"benchbus-fleet-{device} 1 benchbus/{device}/_client/#"
        wait_until(lambda: edge_subscribed in self.log(f"{device}-broker").read_text(), 15,
                   f"the edge's session on {device}'s broker")
        self.net.spawn(ns, [self.python, str(RIG), "--device", device, "--password",
                            passwords["benchbus-scheduler"], "--cycle-file", str(home / "cycle")],
                       self.log(f"{device}-rig"))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log")))

    def client(self, principal: str, device: str) -> BusClient:
        """A lab user on the central broker (use it in `with`, which connects)."""
        return BusClient(device, BrokerSettings(host=self.net.central_for_host, port=1883, username=principal),
                         name=f"t{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = cannot_run_reason()
    if reason is not None:
        print(f"lab tests not run: {reason}")
        pytest.skip(reason)
    lab = Lab(tmp_path_factory.mktemp("lab"))
    try:
        lab.net.build()
        lab.start_central()
        # The central store's session first: the central broker holds for a session only what came after it began.
        lab.store = CentralStore(lab.net.central_for_host)
        wait_until(lambda: lab.store.subscribed.is_set(), 15, "the central store's subscription")
        lab.start_recorder()
        wait_until(lambda: lab.store.recorder_state == "ready", 60, "the recorder ready (its session subscribed)")
        for device in DEVICES:
            lab.start_device(device)
        for device in DEVICES:
            wait_until(lambda d=device: lab.store.highest(d) >= 3, 30, f"broadcasts of {device} at the central broker")
        yield lab
    except BaseException:
        print(lab.logs())
        raise
    finally:
        if hasattr(lab, "store"):
            lab.store.close()
            (lab.root / "audits.json").write_text(json.dumps(lab.store.audits, indent=1))  # for a failure's reader
        lab.net.close()
        lab.postgres.stop()


def everything_arrived(lab: Lab, timeout: float = 30) -> None:
    """Every broadcast each device made so far: delivered at the central broker, and in PostgreSQL exactly once."""
    for device in DEVICES:
        last = lab.cycle_of(device)
        try:
            wait_until(lambda d=device, n=last: lab.store.has_every_cycle(d, n), timeout, "")
        except AssertionError:
            raise AssertionError(f"{device}'s broadcasts 1..{last} not all at the central side within {timeout} s; "
                                 f"missing: {lab.store.missing(device, last)}") from None
        wanted = set(range(1, last + 1))
        try:
            wait_until(lambda d=device, w=wanted: w <= lab.held_in_database(d)[1], timeout, "")
        except AssertionError:
            raise AssertionError(f"{device}'s broadcasts not all in PostgreSQL within {timeout} s; missing: "
                                 f"{sorted(wanted - lab.held_in_database(device)[1])}") from None
        rows, cycles = lab.held_in_database(device)
        assert rows == len(cycles), f"{device}: {rows - len(cycles)} broadcasts held twice in PostgreSQL"


def test_a_cut_link_loses_no_broadcast(lab):
    device = "rig2"
    everything_arrived(lab)
    links_before = len(lab.store.links[device])
    lab.net.set_link(device, up=False)
    cut_at, cut_at_cycle = time.monotonic(), lab.cycle_of(device)
    try:
        # The central side notices the device is gone (its bridge's will, after the keepalive), ...
        wait_until(lambda: "0" in lab.store.links[device][links_before:], OUTAGE_S + 15, "the link's will at central")
        time.sleep(max(0.0, cut_at + OUTAGE_S - time.monotonic()))  # the outage's length is the test's input
        crossed = lab.store.highest(device) - cut_at_cycle
    finally:
        lab.net.set_link(device, up=True)
    assert crossed <= 2, f"{crossed} broadcasts crossed a link that was down"
    # ... while the device kept its loop running alone.
    made_during_outage = lab.cycle_of(device) - cut_at_cycle
    assert made_during_outage >= 10, f"the rig made only {made_during_outage} broadcasts while cut off"
    restored_at = time.monotonic()
    wait_until(lambda: lab.store.links[device][-1:] == ["1"], 30, "the link back at central")
    everything_arrived(lab)
    print(f"{device}: link down {restored_at - cut_at:.1f} s, {made_during_outage} broadcasts made meanwhile, all "
          f"held at the central side {time.monotonic() - restored_at:.1f} s after the link returned")
    assert lab.store.duplicates() == 0, f"{lab.store.duplicates()} broadcasts arrived twice"


def test_a_central_restart_loses_nothing(lab):
    """The central broker stopped and started, the recorder killed (-9) and started: every broadcast still held."""
    everything_arrived(lab)
    before = {d: lab.cycle_of(d) for d in DEVICES}
    lab.kill_recorder()
    lab.stop_central()
    wait_until(lambda: all(lab.cycle_of(d) >= before[d] + 8 for d in DEVICES), 30,
               "the rigs broadcasting while the central side is down")
    lab.start_central()
    lab.start_recorder()
    everything_arrived(lab, timeout=60)
    for device in DEVICES:
        assert lab.store.highest(device) >= before[device] + 8
    print(f"duplicates delivered after the restarts (QoS 1; the database's key holds each once): "
          f"{lab.store.duplicates()}")


def test_a_command_reaches_its_device_and_no_other(lab):
    with lab.client("alice", "rig1") as alice:
        assert alice.call("scheduler", "pause", {}, timeout=10) == {"paused": True}
        alice.call("scheduler", "resume", {}, timeout=10)
    wait_until(lambda: [d for d, r in lab.store.audits_of("alice") if r["command"] == "resume"], 10,
               "alice's audit records at the central side")
    devices = {device for device, record in lab.store.audits_of("alice") if record["command"] in ("pause", "resume")}
    assert devices == {"rig1"}
    assert "pause by alice" in lab.log("rig1-rig").read_text()
    assert "pause by alice" not in lab.log("rig2-rig").read_text() + lab.log("rig3-rig").read_text()


def test_a_command_beyond_the_users_role_is_refused_at_the_device(lab):
    with lab.client("bob", "rig2") as bob:
        with pytest.raises(CallTimeout):  # the device's ACL drops it: no reply, no execution
            bob.call("scheduler", "pause", {}, timeout=3)
        # A command within bob's role takes the same path and is answered, so the refusal above is the role's.
        assert bob.call("scheduler", "get_config", {}, timeout=10)["paused"] is False
    assert "pause by bob" not in lab.log("rig2-rig").read_text()
    assert not [r for _d, r in lab.store.audits_of("bob") if r["command"] == "pause"]
    assert "Denied PUBLISH from benchbus-fleet-rig2" in lab.log("rig2-broker").read_text()


def test_the_central_side_cannot_speak_for_a_local_user(lab):
    """A central broker (or anyone on it) publishing requests under names of the device's own users: refused."""
    with lab.client("benchbus-admin", "rig3") as impostor, pytest.raises(CallTimeout):
        impostor.call("scheduler", "pause", {}, timeout=3)
    with lab.client("alice", "rig3") as alice:  # the same path, answered: the impostor's request went before it
        assert alice.call("scheduler", "get_config", {}, timeout=10)["paused"] is False
    assert "pause by benchbus-admin" not in lab.log("rig3-rig").read_text()
    assert "Denied PUBLISH from benchbus-fleet-rig3" in lab.log("rig3-broker").read_text()
