"""A lab's central side under many rigs: how many rigs at one broadcast per 20 s one central Mosquitto and one
recorder hold with an ingest lag p99 under 1 s, and what each rig costs the central side.

ours:  N emulated rigs, each its own MQTT 5 connection (as each device's fleet bridge is), publishing a real
       eVOLVER broadcast payload (16 vials of od_90, od_135, temp; ~1.6 kB) at QoS 1 on
       benchbus/<rig>/scheduler/event/broadcast, into one central Mosquitto; one central subscriber (a persistent
       session at QoS 1, parsing every payload, as the recorder does before its commit) measures the ingest lag
       (arrival minus the rig's publish time, same clock). Time is compressed: a broadcast every --period s
       (default 2 s, 10x the real 20 s), so N rigs here load the central side like 10 N rigs at 20 s; the figures
       are reported for the real rate (rigs x compression) and CPU per rig is divided back.
floor: the same message rate from ONE connection into the same broker and subscriber: what the messages alone
       cost, without N connections. The ratio (ours/floor) is what one connection per rig adds.
The rig publishers run in one process driving every paho client from one selector loop (paho's external-loop
API), so 1,000 rigs are 1,000 sockets, not 1,000 threads. Central = the broker plus the subscriber process.
The last line printed is one JSON object: rigs, ingest_lag_p99_s, central_cpu_percent, central_rss_mb.

    .venv/bin/python bench/fleet.py [--quick] [--steps 100,1000,2000] [--period 2] [--window 8]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import selectors
import sys
import time

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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
            self.selector.register(client.socket(), selectors.EVENT_READ, client)
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
                client.publish(TOPIC.format(rig=f"rig{rig:05d}"), broadcast_payload(f"rig{rig:05d}", index, self.period),
                               qos=1)
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


def measure(port: int, central: list[psutil.Process], conn, rigs: int, period: float, window: float,
            connections: int | None = None) -> dict:
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
    fleet.close()
    compression = REAL_PERIOD_S / period
    return {"rigs_here": rigs, "connections": connections or rigs, "rigs_at_20s": int(rigs * compression),
            "msgs_per_s": round(rigs / period, 1), "received": len(lags),
            "ingest_lag_p50_s": round(percentile(lags, 0.5), 4) if lags else None,
            "ingest_lag_p99_s": round(percentile(lags, 0.99), 4) if lags else None,
            "central_cpu_percent": round(cpu, 1), "central_rss_mb": round(memory, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="100,1000,2000", help="rig counts (each its own connection)")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between one rig's broadcasts here")
    parser.add_argument("--window", type=float, default=8.0, help="measured seconds per step")
    parser.add_argument("--quick", action="store_true", help="steps 100,1000 and a 6 s window")
    args = parser.parse_args()
    steps = [100, 1000] if args.quick else [int(s) for s in args.steps.split(",")]
    window = 6.0 if args.quick else args.window
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * max(steps) + 100:
        print(f"machine limit: {hard} open files allow about {(hard - 100) // 2} rigs", file=sys.stderr)
        steps = [s for s in steps if 2 * s + 100 <= hard]
    broker = MosquittoProcess(extra_conf="max_connections -1\n")
    broker.start()
    parent, child = mp.Pipe()
    recorder = mp.Process(target=subscriber, args=(broker.port, child), daemon=True)
    recorder.start()
    parent.recv()
    central = [psutil.Process(broker._process.pid), psutil.Process(recorder.pid)]
    results = []
    try:
        for rigs in steps:
            ours = measure(broker.port, central, parent, rigs, args.period, window)
            floor = measure(broker.port, central, parent, rigs, args.period, window, connections=1)
            results.append(ours)
            ratio_cpu = ours["central_cpu_percent"] / max(floor["central_cpu_percent"], 0.1)
            print(f"{rigs:5d} rigs here = {ours['rigs_at_20s']:6d} rigs at one broadcast per 20 s "
                  f"({ours['msgs_per_s']} msg/s): lag p50 {ours['ingest_lag_p50_s']} s p99 {ours['ingest_lag_p99_s']} s "
                  f"(floor, one connection: p99 {floor['ingest_lag_p99_s']} s); central CPU "
                  f"{ours['central_cpu_percent']} % (floor {floor['central_cpu_percent']} %, ratio {ratio_cpu:.2f}), "
                  f"RSS {ours['central_rss_mb']} MB; received {ours['received']}", flush=True)
    finally:
        parent.send("stop")
        recorder.join(5)
        broker.close()
    held = [r for r in results if r["ingest_lag_p99_s"] is not None and r["ingest_lag_p99_s"] < LAG_TARGET_S]
    best = held[-1] if held else results[-1]
    per_rig_cpu = best["central_cpu_percent"] / best["rigs_at_20s"]
    per_rig_mb = best["central_rss_mb"] / best["rigs_here"]  # includes the idle broker and recorder: an upper bound
    first, last = results[0], results[-1]
    marginal_kb = ((last["central_rss_mb"] - first["central_rss_mb"]) * 1024 / (last["rigs_here"] - first["rigs_here"])
                   if len(results) > 1 else float("nan"))
    print(f"central side per rig at 20 s: {per_rig_cpu:.4f} % CPU; RSS {per_rig_mb * 1024:.0f} kB per connection "
          f"with the idle broker and recorder counted in, {marginal_kb:.1f} kB per added connection; largest step held under {LAG_TARGET_S} s p99: "
          f"{best['rigs_here']} rigs (own connections) at {REAL_PERIOD_S / args.period:g}x the real rate, the message "
          f"load of {best['rigs_at_20s']} rigs at 20 s")
    print(json.dumps({"rigs": best["rigs_here"], "rig_load_equivalent_at_20s": best["rigs_at_20s"],
                      "ingest_lag_p99_s": best["ingest_lag_p99_s"],
                      "central_cpu_percent": round(best["central_cpu_percent"] / (REAL_PERIOD_S / args.period), 2),
                      "central_cpu_percent_compressed": best["central_cpu_percent"],
                      "central_rss_mb": best["central_rss_mb"], "period_s_here": args.period,
                      "steps": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
