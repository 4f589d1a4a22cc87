"""The lab on real hosts: three devices (each its own Mosquitto with the generated ACL, the fleet edge broker from
`benchbus.fleet`, and a rig built on the real runtime) in their own network namespaces, bridged over veth links to a
central Mosquitto in a fourth. On the central link's far end: the real recorder (`benchbus-recorder`, every device,
a persistent session acknowledged after commit) writing to a real PostgreSQL, and a plain persistent MQTT 5 session
counting what the broker delivers (duplicates included, which the database's key absorbs).

The central broker runs with the ACL and password file generated from the lab's users and devices
(benchbus.labaccess); the central gateway in lab mode (the real `benchbus-websocket-gateway`, user lab-gateway) runs
beside the recorder.

Failure cases: a device's link cut while it broadcasts (BENCHBUS_LAB_OUTAGE_S, default 10 s; the issue's 60 s with
the variable set), the central broker restarted, a command for one device (from a lab user, and from the central
gateway's HTTP, /ws and Socket.IO APIs), a command from a lab user without the role (refused at central, or at the
device when only the device withholds the role), and a central side that publishes commands under names the device
never gave it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import socketio
import sqlalchemy as sa
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from websockets.sync.client import connect as ws_connect

from benchbus import BusClient, BusError
from benchbus.errors import CallTimeout
from benchbus.fleet import CentralBroker, FleetSettings, LocalBroker, bridge_conf
from benchbus.labaccess import LabDevice, LabFile, LabUser, write_access
from benchbus.settings import BrokerSettings
from benchbus.testing.broker import free_port
from benchbus_schemas import roles
from netlab import NetLab, cannot_run_reason
from postgres import PostgresServer  # tests/recorder/postgres.py: Debian's initdb/pg_ctl in a temp dir

DEVICES = ["rig1", "rig2", "rig3"]
# The lab's central roles (its broker's ACL), and what each device grants (the device's own ACL): carol operates
# in the lab but is only a viewer on the rigs; the central gateway operates rig1 and rig2, and only views rig3.
CENTRAL_ROLES = {"alice": "operator", "bob": "viewer", "carol": "operator", "watcher": "viewer"}
LAB_USERS = {"alice": "operator", "bob": "viewer", "carol": "viewer", roles.LAB_GATEWAY_USERNAME: "operator"}
DEVICE_LAB_USERS = {"rig3": {**LAB_USERS, roles.LAB_GATEWAY_USERNAME: "viewer"}}
# Every central login's password, new for each run; `benchbus-admin` is a device-local name no lab file may give a
# central user: the last test adds it to the central broker by hand, as a broker taken over would.
PASSWORDS = {name: uuid.uuid4().hex for name in [*CENTRAL_ROLES, *DEVICES, roles.LAB_RECORDER_USERNAME,
                                                 roles.LAB_GATEWAY_USERNAME, "benchbus-admin"]}
CHROMIUM = "/usr/bin/chromium"  # Debian's; playwright-python drives it (no browser download)
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]  # root here
REPO = Path(__file__).resolve().parents[2]
GATEWAY = str(Path(sys.executable).with_name("benchbus-websocket-gateway"))
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
        """Logs in as `watcher`, a lab viewer: the public topics of every device are a viewer's to read."""
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
        self.client.username_pw_set("watcher", PASSWORDS["watcher"])
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
        self.gateway_port = free_port()

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def cycle_of(self, device: str) -> int:
        path = self.root / device / "cycle"
        return int(path.read_text()) if path.is_file() else 0

    def start_central(self) -> None:
        conf = self.root / "central.conf"
        data = self.root / "central-data"
        data.mkdir(exist_ok=True)
        if not (self.root / "access").exists():
            self.write_central_access()
        acl, passwd = self.root / "access/central.acl", self.root / "access/central.passwd"
        conf.write_text(f"{AS_ROOT}listener 1883 0.0.0.0\nallow_anonymous false\npassword_file {passwd}\n"
                        f"acl_file {acl}\npersistence true\n"
                        f"persistence_location {data}/\nmax_queued_messages 100000\nlog_dest stderr\n"
                        "log_type all\n")
        self.central_process = self.net.spawn(self.net.central, ["mosquitto", "-c", str(conf)], self.log("central"))

    def write_central_access(self) -> None:
        """The generated ACL and password file (benchbus.labaccess), plus one hand-made entry: a `benchbus-admin`
        allowed every command, as an edited or taken-over central broker would have (the generator refuses it)."""
        lab = LabFile(users={name: LabUser(role=role, password=PASSWORDS[name])
                             for name, role in CENTRAL_ROLES.items()},
                      devices={device: LabDevice(password=PASSWORDS[device]) for device in DEVICES})
        service_passwords = {name: PASSWORDS[name]
                             for name in (roles.LAB_RECORDER_USERNAME, roles.LAB_GATEWAY_USERNAME)}
        acl, passwd = write_access(lab, self.root / "access", service_passwords)
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), "benchbus-admin", PASSWORDS["benchbus-admin"]],
                       check=True, capture_output=True)
        with acl.open("a") as out:
            out.write("\n# added by hand (the test's taken-over central broker)\nuser benchbus-admin\n"
                      "topic readwrite benchbus/#\n")

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
               **self.central_login(roles.LAB_RECORDER_USERNAME)}
        with self.log("recorder").open("ab") as out:
            self.recorder_process = subprocess.Popen([RECORDER],
                                                     stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
        self.net.processes.append(self.recorder_process)

    def central_login(self, username: str) -> dict[str, str]:
        return {"BENCHBUS_BROKER_HOST": self.net.central_for_host, "BENCHBUS_BROKER_PORT": "1883",
                "BENCHBUS_BROKER_USERNAME": username, "BENCHBUS_BROKER_PASSWORD": PASSWORDS[username]}

    def start_gateway(self) -> None:
        """The real gateway in lab mode on the host end of the central link, as the lab user lab-gateway."""
        env = {"BENCHBUS_GATEWAY_DEVICE": LAB_ID, "BENCHBUS_GATEWAY_LAB": "true", "BENCHBUS_GATEWAY_HOST": "127.0.0.1",
               "BENCHBUS_GATEWAY_PORT": str(self.gateway_port), "BENCHBUS_GATEWAY_DATA_DIR": str(self.root / "gateway"),
               "BENCHBUS_GATEWAY_CALL_TIMEOUT_S": "3", **self.central_login(roles.LAB_GATEWAY_USERNAME)}
        with self.log("gateway").open("ab") as out:
            self.net.processes.append(subprocess.Popen([GATEWAY], stdout=out, stderr=subprocess.STDOUT,
                                                       env={**os.environ, **env}))

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

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
        acl.write_text(roles.acl_text(DEVICE_LAB_USERS.get(device, LAB_USERS), fleet_role="operator"))
        (home / "data").mkdir()
        (home / "mosquitto.conf").write_text(
            f"{AS_ROOT}per_listener_settings false\nallow_anonymous false\n"
            f"password_file {passwd}\nacl_file {acl}\nlistener 1883 127.0.0.1\npersistence true\n"
            f"persistence_location {home / 'data'}/\nlog_dest stderr\nlog_type all\n")
        settings = FleetSettings(
            device=device, edge_port=18830, data_dir=home / "edge-data", restart_timeout_s=(1, 2),
            central=CentralBroker(host=self.net.central_for(device), port=1883, password=PASSWORDS[device],
                                  keepalive_s=5),
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
        return BusClient(device, BrokerSettings(host=self.net.central_for_host, port=1883, username=principal,
                                                password=PASSWORDS[principal]),
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
        lab.start_gateway()
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


def test_the_fleet_page_in_a_browser_shows_a_cut_link_and_opens_a_device(lab, tmp_path):
    """Chromium on the central gateway's fleet page: every device listed; rig1's link cut shows it down (with the
    alarm), then up again; its name opens its dashboard through the central broker (/ws?device=rig1)."""
    from playwright.sync_api import expect, sync_playwright
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 500})
            page.on("pageerror", lambda error: problems.append(f"exception: {error}"))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.goto(f"{lab.gateway_url}/fleet.html")
            rows = {device: page.locator(f"#fleet tbody tr[data-device='{device}']") for device in DEVICES}
            for row in rows.values():
                expect(row.locator("td").nth(1)).to_have_text("rig", timeout=15_000)
                expect(row.locator("td").nth(2)).to_have_text("up")
                expect(row.locator("td").nth(3)).to_contain_text("scheduler: ready")
                expect(row.locator("td").nth(4)).to_contain_text("broadcast")
            lab.net.set_link("rig1", up=False)
            try:  # the central broker gives the bridge's will after its keepalive (5 s here) times 1.5
                expect(rows["rig1"].locator("td").nth(2)).to_have_text("down", timeout=30_000)
                expect(rows["rig1"].locator("td").nth(5)).to_contain_text("link down")
                expect(rows["rig2"].locator("td").nth(2)).to_have_text("up")
                page.screenshot(path=str(tmp_path / "fleet-link-down.png"))
            finally:
                lab.net.set_link("rig1", up=True)
            expect(rows["rig1"].locator("td").nth(2)).to_have_text("up", timeout=30_000)
            expect(rows["rig1"].locator("td").nth(5)).not_to_contain_text("link down")
            assert not problems, problems

            rows["rig1"].locator("a").click()  # index.html?device=rig1, through the central broker
            expect(page.locator("#device")).to_have_text("rig1", timeout=15_000)
            expect(page.locator("#service-states tr[data-service='scheduler']")).to_contain_text("ready")
            assert not [p for p in problems if p.startswith("exception")], problems
        finally:
            browser.close()
    (REPO / "test-output").mkdir(exist_ok=True)
    shutil.copyfile(tmp_path / "fleet-link-down.png", REPO / "test-output" / "fleet-link-down.png")
    everything_arrived(lab)  # the cut lost nothing either


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


def gateway_call(lab: Lab, device: str, command: str) -> httpx.Response:
    """The central gateway's HTTP API, from a trusted (loopback) address: no token needed."""
    return httpx.post(f"{lab.gateway_url}/api/call/scheduler/{command}", params={"device": device}, json={},
                      timeout=15)


def gateway_knows(lab: Lab, device: str) -> None:
    def seen() -> bool:
        try:
            response = httpx.get(f"{lab.gateway_url}/api/state", params={"device": device}, timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and "scheduler" in response.json()
    wait_until(seen, 30, f"the central gateway's view of {device}")


def ws_view(lab: Lab, device: str) -> tuple[set[str], dict]:
    """A device's dashboard connection (/ws?device=): the topics a relative subscription gives, a call's reply."""
    topics_seen: set[str] = set()
    with ws_connect(f"ws://127.0.0.1:{lab.gateway_port}/ws?device={device}") as ws:
        ws.send(json.dumps({"op": "subscribe", "filter": "+/$state"}))
        ws.send(json.dumps({"op": "subscribe", "filter": "scheduler/event/broadcast"}))
        ws.send(json.dumps({"op": "call", "id": 1, "service": "scheduler", "command": "get_config", "timeout": 10}))
        reply = None
        while reply is None or not any(t.endswith("/event/broadcast") for t in topics_seen):
            message = json.loads(ws.recv(timeout=15))
            if message.get("op") == "message":
                topics_seen.add(message["topic"])
            elif message.get("op") == "reply":
                reply = message
    return topics_seen, reply


def test_the_central_gateway_opens_one_device(lab):
    """HTTP, /ws and Socket.IO of the central gateway, each for rig2: rig2 answers, and only rig2 runs the pause."""
    gateway_knows(lab, "rig2")
    paused = gateway_call(lab, "rig2", "pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["result"] == {"paused": True}
    assert gateway_call(lab, "rig2", "resume").json()["result"] == {"paused": False}
    assert "pause by lab-gateway" in lab.log("rig2-rig").read_text()
    assert "pause by lab-gateway" not in lab.log("rig1-rig").read_text() + lab.log("rig3-rig").read_text()

    topics_seen, reply = ws_view(lab, "rig2")
    assert reply["ok"] is True and reply["result"]["paused"] is False, reply
    assert topics_seen and all(t.startswith("benchbus/rig2/") for t in topics_seen), topics_seen

    client = socketio.Client()
    client.connect(f"{lab.gateway_url}?device=rig2", namespaces=["/dpu-evolver"], transports=["websocket"])
    try:
        answer = client.call("getconfig", {}, namespace="/dpu-evolver", timeout=10)  # the DPU's event, to rig2
    finally:
        client.disconnect()
    assert answer == {"ok": True, "result": {}}, answer

    wait_until(lambda: [d for d, r in lab.store.audits_of(roles.LAB_GATEWAY_USERNAME) if r["command"] == "resume"],
               10, "the gateway's audit records at the central side")
    devices = {d for d, r in lab.store.audits_of(roles.LAB_GATEWAY_USERNAME) if r["command"] in ("pause", "resume")}
    assert devices == {"rig2"}


def test_a_write_the_device_withholds_from_the_central_gateway_is_refused_there(lab):
    """rig3 gives the central gateway only a viewer's role: its pause dies at rig3's broker, its reads pass."""
    gateway_knows(lab, "rig3")
    refused = gateway_call(lab, "rig3", "pause")
    assert refused.status_code == 504, refused.text  # no reply ever comes: the device dropped the request
    assert gateway_call(lab, "rig3", "get_config").status_code == 200
    assert "pause by lab-gateway" not in lab.log("rig3-rig").read_text()
    assert "Denied PUBLISH from benchbus-fleet-rig3" in lab.log("rig3-broker").read_text()
    unknown = gateway_call(lab, "rig9", "get_config")
    assert unknown.status_code == 404 and "'device'" in unknown.json()["error"]["message"]


def test_a_viewer_at_central_cannot_publish_a_command(lab):
    with lab.client("bob", "rig2") as bob:
        with pytest.raises(BusError) as refused:  # the central broker's PUBACK 135: it never reaches a device
            bob.call("scheduler", "pause", {}, timeout=10)
        assert refused.value.code == "unauthorized"
        # A command within bob's role takes the same path and is answered, so the refusal above is the role's.
        assert bob.call("scheduler", "get_config", {}, timeout=10)["paused"] is False
    assert "pause by bob" not in lab.log("rig2-rig").read_text()
    assert "Denied PUBLISH from benchbus-t" in lab.log("central").read_text()


def test_a_command_beyond_the_users_role_on_the_device_is_refused_there(lab):
    """carol operates in the lab (central lets her pause) but rig2 gives her only a viewer's role."""
    with lab.client("carol", "rig2") as carol:
        with pytest.raises(CallTimeout):  # the device's ACL drops it: no reply, no execution
            carol.call("scheduler", "pause", {}, timeout=3)
        assert carol.call("scheduler", "get_config", {}, timeout=10)["paused"] is False
    assert "pause by carol" not in lab.log("rig2-rig").read_text()
    assert not [r for _d, r in lab.store.audits_of("carol") if r["command"] == "pause"]
    assert "Denied PUBLISH from benchbus-fleet-rig2" in lab.log("rig2-broker").read_text()


def test_the_central_side_cannot_speak_for_a_local_user(lab):
    """A central broker (or anyone on it) publishing requests under names of the device's own users: refused."""
    with lab.client("benchbus-admin", "rig3") as impostor, pytest.raises(CallTimeout):
        impostor.call("scheduler", "pause", {}, timeout=3)
    with lab.client("alice", "rig3") as alice:  # the same path, answered: the impostor's request went before it
        assert alice.call("scheduler", "get_config", {}, timeout=10)["paused"] is False
    assert "pause by benchbus-admin" not in lab.log("rig3-rig").read_text()
    assert "Denied PUBLISH from benchbus-fleet-rig3" in lab.log("rig3-broker").read_text()
