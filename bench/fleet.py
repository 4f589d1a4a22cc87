"""A lab's central side under many rigs: how many rigs at one broadcast per 20 s one central Mosquitto and one
recorder hold with an ingest lag p99 under 1 s, and what each rig costs the central side.

ours:  N emulated rigs, each its own MQTT 5 connection (as each device's fleet bridge is), publishing a real
       eVOLVER broadcast payload (16 vials of od_90, od_135, temp; ~1.6 kB) at QoS 1 on
       benchbus/<rig>/scheduler/event/broadcast, into one central Mosquitto, recorded by the real recorder
       (`benchbus-recorder`, every device, SQLite in a temp dir or --database-url PostgreSQL). A central subscriber
       (a persistent session at QoS 1, parsing every payload) measures the transit (arrival minus the rig's publish
       time, same clock); the recorder reports arrival-to-commit p99 on /metrics. The ingest lag reported is their
       sum (publish to committed, an upper bound of the p99). Time is compressed: a broadcast every PERIOD s
       (per step, e.g. 2 s: 10x the real 20 s), so N rigs here load the central side like 10 N rigs at 20 s; the figures
       are reported for the real rate (rigs x compression) and CPU per rig is divided back.
floor: the same message rate from ONE connection into the same broker and subscriber: what the messages alone
       cost, without N connections. The ratio (ours/floor) is what one connection per rig adds.
The recorder's backlog (received, not yet committed) is printed too. A step is held when the ingest p99 is under
1 s and the backlog at its end is under one second's messages; before each step the backlog is drained.
The rig publishers run in one process driving every paho client from one selector loop (paho's external-loop
API), so 1,000 rigs are 1,000 sockets, not 1,000 threads. Central = the broker, the recorder and the subscriber process.
The last line printed is one JSON object: rigs, ingest_lag_p99_s, central_cpu_percent, central_rss_mb.

    .venv/bin/python bench/fleet.py [--quick] [--steps 100@2,300@2,1000@5,1000@2] [--window 6] [--database-url URL]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import re
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchbus.errors import BusError
from benchbus.settings import BrokerSettings
from benchbus.snapshot import read_retained
from benchbus.testing.bench import percentile
from benchbus.testing.broker import MosquittoProcess

LAG_TARGET_S = 1.0
REAL_PERIOD_S = 20.0
TOPIC = "benchbus/{rig}/scheduler/event/broadcast"


def broadcast_payload(rig: str, cycle: int, period: float) -> bytes:
    vials = 16
    return json.dumps({
        "data": {"od_90": [f"{52000 + v * 13}" for v in range(vials)],
                 "od_135": [f"{48000 + v * 11}" for v in range(vials)],
                 "temp": [f"{2100 + v}" for v in range(vials)]},
        "config": {"od_90": {"fields_expected_outgoing": 17, "fields_expected_incoming": 17, "recurring": True,
                             "value": ["1000"]}, "temp": {"value": ["2000"] * vials}},
        "ip": rig, "timestamp": time.time(), "status": {"od_90": "ok", "od_135": "ok", "temp": "ok"},
        "errors": {}, "cycle": cycle, "cycle_s": 1.2, "broadcast_timing": period,
        "calibrated": {"od": [0.21] * vials, "temp": [37.0] * vials}, "calibration": {"od": "od_fit"},
    }).encode()


# -- the central subscriber (its own process: its CPU and memory are the recorder's share) -----------------------

def subscriber(port: int, conn) -> None:
    lags: list[float] = []
    seen = 0
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-central-recorder", protocol=mqtt.MQTTv5)

    def on_message(_c, _u, message: mqtt.MQTTMessage) -> None:
        nonlocal seen
        arrived = time.time()
        payload = json.loads(message.payload)  # what a recorder does before it can store anything
        lags.append(arrived - payload["timestamp"])
        seen += 1

    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, keepalive=30, clean_start=False, properties=props)
    client.subscribe("benchbus/+/scheduler/event/broadcast", qos=1)
    client.loop_start()
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "reset":
            lags.clear()
            conn.send(seen)
        elif command == "collect":
            conn.send((list(lags), seen))
        else:
            break
    client.loop_stop()
    client.disconnect()


# -- the real recorder --------------------------------------------------------------------------------------------

class Recorder:
    """`benchbus-recorder` recording every device; its /metrics tell commit lag and backlog."""

    def __init__(self, port: int, database_url: str | None):
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-recorder-"))
        env = {**os.environ, "BENCHBUS_RECORDER_DEVICE": "lab", "BENCHBUS_RECORDER_ALL_DEVICES": "true",
               "BENCHBUS_RECORDER_DATA_DIR": str(self.workdir), "BENCHBUS_RECORDER_HTTP_PORT": "0",
               "BENCHBUS_RECORDER_LOG_LEVEL": "warning",
               "BENCHBUS_BROKER_HOST": "127.0.0.1", "BENCHBUS_BROKER_PORT": str(port)}
        if database_url:
            env["BENCHBUS_RECORDER_DATABASE_URL"] = database_url
        self.process = subprocess.Popen([str(Path(sys.executable).with_name("benchbus-recorder"))], env=env)
        self.url = self._wait_url(BrokerSettings(host="127.0.0.1", port=port))

    def _wait_url(self, broker: BrokerSettings) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the recorder exited with {self.process.returncode}")
            try:
                held = read_retained(broker, ["benchbus/lab/recorder/$state", "benchbus/lab/recorder/state/http"], 1.0)
            except BusError:
                held = {}
            state = json.loads(held.get("benchbus/lab/recorder/$state", b"{}"))
            if state.get("state") == "ready" and "benchbus/lab/recorder/state/http" in held:
                return json.loads(held["benchbus/lab/recorder/state/http"])["url"]
            time.sleep(0.3)
        raise SystemExit("the recorder was not ready within 60 s")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.url.rstrip('/')}/metrics", timeout=10) as response:
            text = response.read().decode()
        wanted = ("benchbus_recorder_committed_messages_total", "benchbus_recorder_pending_messages",
                  "benchbus_recorder_commit_lag_p99_seconds")
        return {name: float(m.group(1)) for name in wanted
                if (m := re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))}

    def drain(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.metrics().get("benchbus_recorder_pending_messages", 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.5)

    def close(self) -> None:
        self.process.terminate()  # it commits what it holds first; with a large backlog that takes a while
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the rigs: many paho clients on one selector loop ------------------------------------------------------------

class Rigs:
    def __init__(self, port: int, count: int, period: float, connections: int | None = None):
        """`count` rigs publishing every `period`; over `connections` clients (default one per rig: ours)."""
        self.period = period
        self.count = count
        self.selector = selectors.DefaultSelector()
        self.clients: list[mqtt.Client] = []
        for i in range(connections or count):
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-rig-{i}", protocol=mqtt.MQTTv5)
            client.max_inflight_messages_set(0 if connections else 20)
            client.connect("127.0.0.1", port, keepalive=60)
            sock = client.socket()
            assert sock is not None, "connect() leaves paho with a socket"
            self.selector.register(sock, selectors.EVENT_READ, client)
            self.clients.append(client)
        self.cycle = 0
        self.sent = 0

    def settle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(0.05)

    def _pump(self, timeout: float) -> None:
        for key, _events in self.selector.select(timeout):
            key.data.loop_read()
        for client in self.clients:
            if client.want_write():
                client.loop_write()

    def run(self, seconds: float) -> None:
        """Every rig publishes once per period, spread evenly across it (rigs are not synchronised)."""
        start = time.monotonic()
        gap = self.period / self.count
        next_misc = start + 1
        due = start
        index = 0
        while time.monotonic() < start + seconds:
            now = time.monotonic()
            while due <= now:
                rig = index % self.count
                client = self.clients[rig % len(self.clients)]
                name = f"rig{rig:05d}"
                client.publish(TOPIC.format(rig=name), broadcast_payload(name, index, self.period), qos=1)
                self.sent += 1
                index += 1
                due = start + index * gap
            self._pump(max(0.0, min(0.02, due - time.monotonic())))
            if now >= next_misc:
                for client in self.clients:
                    client.loop_misc()
                next_misc = now + 1

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_write()
        self.selector.close()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def rss_mb(processes: list[psutil.Process]) -> float:
    return sum(p.memory_info().rss for p in processes) / 1024 / 1024


def measure(port: int, central: list[psutil.Process], conn, recorder: Recorder, rigs: int, period: float,
            window: float, connections: int | None = None) -> dict:
    recorder.drain()  # a backlog left by the step before would count against this one
    fleet = Rigs(port, rigs, period, connections)
    fleet.settle(1.0)
    fleet.run(period)  # one full period of warm-up: every rig has published once
    conn.send("reset")
    conn.recv()
    cpu_before, wall_before = cpu_seconds(central), time.monotonic()
    fleet.run(window)
    fleet.settle(1.5)  # the last messages land
    cpu = (cpu_seconds(central) - cpu_before) / (time.monotonic() - wall_before) * 100
    conn.send("collect")
    lags, _seen = conn.recv()
    memory = rss_mb(central)
    recorded = recorder.metrics()
    fleet.close()
    compression = REAL_PERIOD_S / period
    backlog = recorded.get("benchbus_recorder_pending_messages", 0.0)
    return {"rigs_here": rigs, "period_s": period, "connections": connections or rigs,
            "rigs_at_20s": int(rigs * compression),
            "msgs_per_s": round(rigs / period, 1), "received": len(lags),
            "held": bool(lags) and backlog <= rigs / period
            and percentile(lags, 0.99) + recorded.get("benchbus_recorder_commit_lag_p99_seconds", 99) < LAG_TARGET_S,
            "transit_p50_s": round(percentile(lags, 0.5), 4) if lags else None,
            "transit_p99_s": round(percentile(lags, 0.99), 4) if lags else None,
            "commit_lag_p99_s": recorded.get("benchbus_recorder_commit_lag_p99_seconds"),
            "recorder_backlog": recorded.get("benchbus_recorder_pending_messages"),
            "ingest_lag_p99_s": round(percentile(lags, 0.99) + recorded.get(
                "benchbus_recorder_commit_lag_p99_seconds", float("inf")), 4) if lags else None,
            "central_cpu_percent": round(cpu, 1), "central_rss_mb": round(memory, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="100@2,1000@5,1000@2", help="RIGS@PERIOD: rigs (each its own "
                        "connection) broadcasting every PERIOD s here (20 s is the real rate)")
    parser.add_argument("--window", type=float, default=5.0, help="measured seconds per step")
    parser.add_argument("--quick", action="store_true", help="steps 100@2,1000@5 and a 4 s window")
    parser.add_argument("--database-url", default=None, help="the recorder's PostgreSQL (default: SQLite, temp dir)")
    args = parser.parse_args()
    spec = "100@2,1000@5" if args.quick else args.steps
    steps = [(int(n), float(period)) for n, period in (item.split("@") for item in spec.split(","))]
    window = 4.0 if args.quick else args.window
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * max(n for n, _ in steps) + 100:
        print(f"machine limit: {hard} open files allow about {(hard - 100) // 2} rigs", file=sys.stderr)
        steps = [(n, period) for n, period in steps if 2 * n + 100 <= hard]
    broker = MosquittoProcess(extra_conf="max_connections -1\n")
    broker.start()
    parent, child = mp.Pipe()
    recorder = mp.Process(target=subscriber, args=(broker.port, child), daemon=True)
    recorder.start()
    parent.recv()
    lab_recorder = Recorder(broker.port, args.database_url)
    assert broker._process is not None  # started above
    central = [psutil.Process(broker._process.pid), psutil.Process(recorder.pid),
               psutil.Process(lab_recorder.process.pid)]
    results = []
    try:
        for rigs, period in steps:
            ours = measure(broker.port, central, parent, lab_recorder, rigs, period, window)
            floor = measure(broker.port, central, parent, lab_recorder, rigs, period, window, connections=1)
            results.append(ours)
            ratio_cpu = ours["central_cpu_percent"] / max(floor["central_cpu_percent"], 0.1)
            print(f"{rigs:5d} rigs here = {ours['rigs_at_20s']:6d} rigs at one broadcast per 20 s "
                  f"({ours['msgs_per_s']} msg/s): transit p50 {ours['transit_p50_s']} s p99 {ours['transit_p99_s']} s, "
                  f"recorder commit p99 {ours['commit_lag_p99_s']} s, backlog {ours['recorder_backlog']:.0f}: ingest "
                  f"p99 {ours['ingest_lag_p99_s']} s (floor, one connection: {floor['ingest_lag_p99_s']} s); "
                  f"central CPU "
                  f"{ours['central_cpu_percent']} % (floor {floor['central_cpu_percent']} %, ratio {ratio_cpu:.2f}), "
                  f"RSS {ours['central_rss_mb']} MB; received {ours['received']}; "
                  f"{'held' if ours['held'] else 'NOT held'}",
                  flush=True)
    finally:
        parent.send("stop")
        recorder.join(5)
        lab_recorder.close()
        broker.close()
    held = [r for r in results if r["held"]]
    # the most rigs held (own connections), and of those the heaviest message load
    best = max(held, key=lambda r: (r["rigs_here"], r["rigs_at_20s"])) if held else results[0]
    per_rig_cpu = best["central_cpu_percent"] / best["rigs_at_20s"]  # scaled back to one broadcast per 20 s
    per_rig_mb = best["central_rss_mb"] / best["rigs_here"]  # includes the idle broker and recorder: an upper bound
    first, last = results[0], results[-1]
    marginal_kb = ((last["central_rss_mb"] - first["central_rss_mb"]) * 1024 / (last["rigs_here"] - first["rigs_here"])
                   if len(results) > 1 else float("nan"))
    verdict = (f"largest step held under {LAG_TARGET_S:g} s p99: {best['rigs_here']} rigs (own connections) at "
               f"{REAL_PERIOD_S / best['period_s']:g}x the real rate, the message load of {best['rigs_at_20s']} "
               f"rigs at 20 s" if held else
               f"NO step held (ingest p99 under {LAG_TARGET_S:g} s, no growing backlog); figures of the first step")
    print(f"central side (broker + recorder + subscriber) per rig at 20 s: {per_rig_cpu:.4f} % CPU; RSS "
          f"{per_rig_mb * 1024:.0f} kB per connection with the idle central processes counted in, {marginal_kb:.1f} kB "
          f"per added connection; {verdict}")
    print(json.dumps({"rigs": best["rigs_here"] if held else 0, "rigs_measured": best["rigs_here"],
                      "rig_load_equivalent_at_20s": best["rigs_at_20s"],
                      "ingest_lag_p99_s": best["ingest_lag_p99_s"],
                      "central_cpu_percent": round(best["central_cpu_percent"] / (REAL_PERIOD_S / best["period_s"]), 2),
                      "central_cpu_percent_compressed": best["central_cpu_percent"],
                      "central_rss_mb": best["central_rss_mb"], "period_s_here": best["period_s"],
                      "largest_held_load_at_20s": max((r["rigs_at_20s"] for r in held), default=0),
                      "steps": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
