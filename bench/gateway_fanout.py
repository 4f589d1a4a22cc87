"""Fan-out of the scheduler's broadcast through the websocket-gateway to 200 clients.

ours:  publish scheduler/event/broadcast -> broker -> gateway -> 200 clients (Engine.IO 3 WebSocket, Engine.IO 3
       long-polling, /ws JSON WebSocket), latency from the publish to receipt at each client
floor: the same clients, the same publish -> broker -> the same web server (uvicorn, httptools, websockets-sansio)
       running a bare fan-out app (bench/fanout_floor.py: just enough protocol for these clients, nothing of ours);
       and the bus alone: publish -> broker -> one bare paho subscriber.
Each server runs as its own process so its CPU and memory are measured alone; the clients run in --processes
processes of their own, and their CPU is measured too: on a small machine the clients' own work shares the cores.
One broadcast a second, as the eVOLVER scheduler at its fastest sensible rate.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as mqtt
import psutil
import uvloop
import websockets

from benchbus.testing.bench import percentile
from fanout_floor import binary_framed
from benchbus.testing.broker import MosquittoProcess, free_port, wait_for_port

DEVICE = "bench"
NAMESPACE = "/dpu-evolver"
TOPIC = f"benchbus/{DEVICE}/scheduler/event/broadcast"
TARGET_P99_MS = 10  # issue 21


def on_cpu_ms(pid: int) -> float:
    """Time on a CPU of every thread of `pid`, in ns resolution (/proc/<pid>/task/*/schedstat; psutil's cpu_times
    counts 10 ms ticks, too coarse for a few ms per broadcast)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return total / 1e6


class CpuMeter:
    """CPU time of some processes per broadcast, less what they spend idle with every client connected."""

    def __init__(self, processes: list[psutil.Process]):
        self.processes = processes

    def used_ms(self) -> float:
        return sum(on_cpu_ms(p.pid) for p in self.processes)

    def start(self) -> None:
        self.mark, self.marked_at = self.used_ms(), time.monotonic()

    def idle_done(self) -> None:
        now = time.monotonic()
        self.idle_ms_per_s = (self.used_ms() - self.mark) / (now - self.marked_at)
        self.mark, self.marked_at = self.used_ms(), now

    def per_broadcast(self, broadcasts: int) -> float:
        busy = self.used_ms() - self.mark - self.idle_ms_per_s * (time.monotonic() - self.marked_at)
        return busy / broadcasts


def broadcast_payload(seq: int) -> dict:
    """The eVOLVER broadcast's shape and size (16 vials, values as strings) with the send time in `timestamp`."""
    vials = [str(30000 + 37 * i) for i in range(16)]
    config = {p: {"recurring": True, "fields_expected_outgoing": 17, "fields_expected_incoming": 17,
                  "value": ["4095"] * 16} for p in ("od_led", "temp", "stir")}
    return {"data": {"od_90": vials, "od_135": vials, "temp": ["2070"] * 16}, "config": config,
            "ip": "127.0.0.1", "timestamp": time.time(), "status": {"od_90": "ok"}, "errors": {}, "cycle": seq,
            "cycle_s": 0.5, "broadcast_timing": 1.0, "calibrated": {}, "calibration": {}}


class Latencies:
    def __init__(self, measuring) -> None:
        self.samples: list[float] = []
        self.by_kind: dict[str, list[float]] = {}
        self.measuring = measuring  # a multiprocessing.Event: set while broadcasts are timed

    def add(self, kind: str, sent: float) -> None:
        if self.measuring.is_set():
            delay = (time.time() - sent) * 1000
            self.samples.append(delay)
            self.by_kind.setdefault(kind, []).append(delay)


TIMESTAMP = re.compile(r'"timestamp":\s*([0-9.]+)')
BROADCAST_PACKET = f'42{NAMESPACE},["broadcast",'


def timestamp_of_socketio(packet: str) -> float | None:
    """The send time of a broadcast packet (a regex, not a JSON parse: the clients' own cost must stay small)."""
    if not packet.startswith(BROADCAST_PACKET):
        return None
    match = TIMESTAMP.search(packet)
    return float(match.group(1)) if match else None


async def eio3_websocket_client(base: str, latencies: Latencies, ready: asyncio.Event) -> None:
    url = base.replace("http", "ws") + "socket.io/?EIO=3&transport=websocket"
    async with websockets.connect(url, max_size=None) as socket:
        await socket.recv()  # open
        await socket.send(f"40{NAMESPACE}")
        pinger = asyncio.ensure_future(_ping_forever(socket))
        try:
            async for packet in socket:  # until the task is cancelled (a wait_for per recv is a task per message)
                if not isinstance(packet, str):  # the gateway sends text frames only
                    continue
                if packet == f"40{NAMESPACE}":
                    ready.set()
                sent = timestamp_of_socketio(packet)
                if sent is not None:
                    latencies.add("eio3_websocket", sent)
        finally:
            pinger.cancel()


async def _ping_forever(socket) -> None:
    while True:
        await asyncio.sleep(20)
        await socket.send("2")


def _decode_binary_payload(body: bytes) -> list[str]:
    packets, index = [], 0
    while index < len(body):
        index += 1
        digits = ""
        while body[index] != 0xFF:
            digits += str(body[index])
            index += 1
        index += 1
        packets.append(body[index:index + int(digits)].decode())
        index += int(digits)
    return packets


class KeepAliveHttp:
    """A minimal HTTP/1.1 keep-alive client (httpx costs more CPU per request than the gateway does)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes = b"") -> bytes:
        try:
            return await self._request(method, target, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # the server closes a keep-alive connection idle for 5 s (uvicorn's default); a browser opens another
            self.close()
            self.reader = self.writer = None
            return await self._request(method, target, body)

    async def _request(self, method: str, target: str, body: bytes = b"") -> bytes:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/octet-stream\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in headers.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def eio3_polling_client(base: str, latencies: Latencies, ready: asyncio.Event) -> None:
    address = base.split("//", 1)[1].rstrip("/")
    host, port = address.split(":")
    poller, poster = KeepAliveHttp(host, int(port)), KeepAliveHttp(host, int(port))
    opened = await poller.request("GET", "/socket.io/?EIO=3&transport=polling")
    sid = json.loads(_decode_binary_payload(opened)[0][1:])["sid"]
    target = f"/socket.io/?EIO=3&transport=polling&sid={sid}"
    await poster.request("POST", target, binary_framed([f"40{NAMESPACE}"]))
    last_ping = time.monotonic()
    try:
        await _poll_forever(poller, poster, target, latencies, ready, last_ping)
    finally:
        poller.close()
        poster.close()


async def _poll_forever(poller, poster, target, latencies, ready, last_ping) -> None:
    while True:  # until the task is cancelled
        body = await poller.request("GET", target)
        for packet in _decode_binary_payload(body):
            if packet == f"40{NAMESPACE}":
                ready.set()
            sent = timestamp_of_socketio(packet)
            if sent is not None:
                latencies.add("eio3_polling", sent)
        if time.monotonic() - last_ping > 20:
            last_ping = time.monotonic()
            await poster.request("POST", target, binary_framed(["2"]))


async def ws_client(base: str, latencies: Latencies, ready: asyncio.Event) -> None:
    async with websockets.connect(base.replace("http", "ws") + "ws", max_size=None) as socket:
        await socket.send(json.dumps({"op": "subscribe", "filter": "scheduler/event/broadcast"}))
        async for text in socket:  # until the task is cancelled
            if not isinstance(text, str):  # the gateway sends text frames only
                continue
            message = {"op": "message"} if text.startswith('{"op":"message"') else json.loads(text)
            if message["op"] == "subscribed":
                ready.set()
            elif message["op"] == "message":
                match = TIMESTAMP.search(text)
                if match:
                    latencies.add("ws", float(match.group(1)))


def client_worker(base: str, counts: dict[str, int], measuring, all_ready, stop_flag, results) -> None:
    """One process of clients (the clients are spread over processes so their own cost does not queue up)."""
    latencies = Latencies(measuring)
    uvloop.run(run_clients(base, counts, latencies, all_ready, stop_flag))
    results.put(latencies.by_kind)


async def run_clients(base: str, counts: dict[str, int], latencies: Latencies, all_ready,
                      stop_flag) -> None:
    readies: list[asyncio.Event] = []
    tasks = []
    for kind, count in counts.items():
        for _ in range(count):
            ready = asyncio.Event()
            readies.append(ready)
            if kind == "eio3_websocket":
                tasks.append(asyncio.ensure_future(eio3_websocket_client(base, latencies, ready)))
            elif kind == "eio3_polling":
                tasks.append(asyncio.ensure_future(eio3_polling_client(base, latencies, ready)))
            else:
                tasks.append(asyncio.ensure_future(ws_client(base, latencies, ready)))
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    all_ready.set()
    while not stop_flag.is_set():
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--only", choices=("eio3_websocket", "eio3_polling", "ws"),
                        help="every client of this one kind (what each transport costs the gateway per client)")
    args = parser.parse_args()
    third = args.clients // 3
    counts = {"eio3_websocket": args.clients - 2 * third, "eio3_polling": third, "ws": third}
    if args.only:
        counts = {args.only: args.clients}

    broker = MosquittoProcess()
    broker.start()
    try:
        ours = run_round(broker, gateway_command(broker), counts, args)
        floor = run_round(broker, floor_command(broker), counts, args)
    finally:
        broker.close()
    if ours is None or floor is None:
        return 1
    report(ours, floor, counts, args)
    return 0


def gateway_command(broker) -> tuple[list[str], dict[str, str], int]:
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-gateway-")  # the gateway makes its token here
    env = dict(os.environ, BENCHBUS_DEVICE=DEVICE, BENCHBUS_BROKER_HOST=broker.host,
               BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_GATEWAY_PORT=str(port),
               BENCHBUS_GATEWAY_HOST="127.0.0.1", BENCHBUS_LOG_LEVEL="warning", BENCHBUS_GATEWAY_DATA_DIR=data_dir)
    return [sys.executable, "-m", "benchbus_gateway.service", "--config", os.devnull], env, port


def floor_command(broker) -> tuple[list[str], dict[str, str], int]:
    port = free_port()
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fanout_floor.py")
    return ([sys.executable, script, "--broker-host", broker.host, "--broker-port", str(broker.port),
             "--port", str(port), "--topic", TOPIC], dict(os.environ), port)


def run_round(broker, command: tuple[list[str], dict[str, str], int], counts: dict[str, int], args) -> dict | None:
    """Start the server, connect every client, time the broadcasts; the figures, or None when clients failed."""
    argv, env, port = command
    server = subprocess.Popen(argv, env=env)
    try:
        wait_for_port("127.0.0.1", port, 20, server)
        return measure(broker, server, f"http://127.0.0.1:{port}/", counts, args)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def measure(broker, server: subprocess.Popen, base: str, counts: dict[str, int], args) -> dict | None:
    context = multiprocessing.get_context("fork")
    measuring, stop_flag, results = context.Event(), context.Event(), context.Queue()
    shares = [{kind: count // args.processes + (1 if i < count % args.processes else 0)
               for kind, count in counts.items()}
              for i in range(args.processes)]
    readies = [context.Event() for _ in shares]
    workers = [context.Process(target=client_worker, args=(base, share, measuring, ready, stop_flag, results),
                               daemon=True) for share, ready in zip(shares, readies, strict=True)]
    for worker in workers:
        worker.start()
    if not all(ready.wait(90) for ready in readies):
        print("not every client connected", file=sys.stderr)
        return None

    bus_floor: list[float] = []
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-floor", protocol=mqtt.MQTTv5)
    subscriber.on_message = lambda _c, _u, m: bus_floor.append(
        (time.time() - json.loads(m.payload)["timestamp"]) * 1000)
    subscriber.connect(broker.host, broker.port)
    subscriber.subscribe(TOPIC, qos=1)
    subscriber.loop_start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-scheduler", protocol=mqtt.MQTTv5)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    time.sleep(0.5)

    process = psutil.Process(server.pid)
    server_cpu = CpuMeter([process])
    clients_cpu = CpuMeter([psutil.Process(worker.pid) for worker in workers])
    for meter in (server_cpu, clients_cpu):
        meter.start()
    time.sleep(3.0)  # the CPU with every client connected and nothing to send
    for meter in (server_cpu, clients_cpu):
        meter.idle_done()
    measuring.set()
    started = time.monotonic()
    for seq in range(args.broadcasts):
        publisher.publish(TOPIC, json.dumps(broadcast_payload(seq)), qos=1)
        time.sleep(max(0.0, started + (seq + 1) * args.interval - time.monotonic()))
    time.sleep(0.5)
    figures = {"server_cpu_ms": server_cpu.per_broadcast(args.broadcasts),
               "clients_cpu_ms": clients_cpu.per_broadcast(args.broadcasts),
               "server_idle_ms_per_s": server_cpu.idle_ms_per_s, "rss_mb": process.memory_info().rss / 2**20}
    measuring.clear()
    stop_flag.set()
    latencies = Latencies(measuring)
    for _ in workers:
        for kind, values in results.get(timeout=30).items():
            latencies.by_kind.setdefault(kind, []).extend(values)
            latencies.samples.extend(values)
    for worker in workers:
        worker.join(10)
    publisher.loop_stop()
    subscriber.loop_stop()
    return {**figures, "latencies": latencies, "bus_floor": bus_floor}


def report(ours: dict, floor: dict, counts: dict[str, int], args) -> None:
    expected = args.broadcasts * sum(counts.values())
    samples = ours["latencies"].samples
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    f50, f99 = percentile(floor["latencies"].samples, 0.5), percentile(floor["latencies"].samples, 0.99)
    bus_p50, bus_p99 = percentile(ours["bus_floor"], 0.5), percentile(ours["bus_floor"], 0.99)
    print(f"clients: {counts} in {args.processes} processes; {args.broadcasts} broadcasts, one every {args.interval} s")
    for name, run in (("ours ", ours), ("floor", floor)):
        values = run["latencies"].samples
        print(f"{name} (publish -> {'gateway' if run is ours else 'bare uvicorn fan-out'} -> client): "
              f"p50 {percentile(values, 0.5):.2f} ms  p99 {percentile(values, 0.99):.2f} ms "
              f"({len(values)}/{expected} deliveries); server cpu {run['server_cpu_ms']:.2f} ms per broadcast, "
              f"clients cpu {run['clients_cpu_ms']:.2f} ms")
        for kind, by_kind in sorted(run["latencies"].by_kind.items()):
            print(f"   {kind:<15} p50 {percentile(by_kind, 0.5):.2f} ms  p99 {percentile(by_kind, 0.99):.2f} ms"
                  f"  n={len(by_kind)}")
    print(f"bus alone (publish -> broker -> paho subscriber): p50 {bus_p50:.2f} ms  p99 {bus_p99:.2f} ms")
    print(f"ratio ours/floor: p50 {p50 / f50:.2f}x  p99 {p99 / f99:.2f}x;  server cpu "
          f"{ours['server_cpu_ms'] / floor['server_cpu_ms']:.2f}x")
    # the last client cannot have its message before the CPU every delivery needs has been spent on the cores there are
    cores = psutil.cpu_count() or 1
    cpu_bound_ms = (ours["server_cpu_ms"] + ours["clients_cpu_ms"]) / cores
    print(f"(gateway + clients cpu) / {cores} cores = {cpu_bound_ms:.2f} ms before the last delivery can be read; "
          f"gateway rss {ours['rss_mb']:.1f} MB; target p99 <= {TARGET_P99_MS} ms")
    print(json.dumps({"clients": sum(counts.values()), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                      "floor_p50_ms": round(f50, 2), "floor_p99_ms": round(f99, 2), "ratio_p99": round(p99 / f99, 2),
                      "bus_p50_ms": round(bus_p50, 2), "bus_p99_ms": round(bus_p99, 2),
                      "delivered": len(samples), "expected": expected,
                      "gateway_cpu_ms_per_broadcast": round(ours["server_cpu_ms"], 2),
                      "floor_cpu_ms_per_broadcast": round(floor["server_cpu_ms"], 2),
                      "clients_cpu_ms_per_broadcast": round(ours["clients_cpu_ms"], 2),
                      "cpu_bound_ms": round(cpu_bound_ms, 2), "rss_mb": round(ours["rss_mb"], 1),
                      "target_p99_ms": TARGET_P99_MS, "met": p99 <= TARGET_P99_MS and len(samples) == expected}))


if __name__ == "__main__":
    sys.exit(main())
