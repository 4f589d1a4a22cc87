"""Fan-out of the scheduler's broadcast through the websocket-gateway to 200 clients.

ours:  publish scheduler/event/broadcast -> broker -> gateway -> 200 clients (Engine.IO 3 WebSocket, Engine.IO 3
       long-polling, /ws JSON WebSocket), latency from the publish to receipt at each client
floor: the same publish -> broker -> one bare paho subscriber (the bus alone; the gateway cannot beat it)
The gateway runs as its own process (benchbus-gateway) so its CPU and memory are measured alone; the clients and the
publisher share this process. One broadcast a second, as the eVOLVER scheduler at its fastest sensible rate.
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
from benchbus.testing.broker import MosquittoProcess, free_port, wait_for_port

DEVICE = "bench"
NAMESPACE = "/dpu-evolver"
TOPIC = f"benchbus/{DEVICE}/scheduler/event/broadcast"
TARGET_P99_MS = 10  # issue 21


class CpuMeter:
    """CPU time of some processes per broadcast, less what they spend idle with every client connected."""

    def __init__(self, processes: list[psutil.Process]):
        self.processes = processes

    def used_ms(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes) * 1000

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
    join = f"40{NAMESPACE}".encode()
    await poster.request("POST", target, bytes([0, *map(int, str(len(join))), 0xFF]) + join)
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
            await poster.request("POST", target, bytes([0, 1, 0xFF]) + b"2")


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
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-gateway-")  # the gateway makes its token here
    env = dict(os.environ, BENCHBUS_DEVICE=DEVICE, BENCHBUS_BROKER_HOST=broker.host,
               BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_GATEWAY_PORT=str(port),
               BENCHBUS_GATEWAY_HOST="127.0.0.1", BENCHBUS_LOG_LEVEL="warning", BENCHBUS_GATEWAY_DATA_DIR=data_dir)
    gateway = subprocess.Popen([sys.executable, "-m", "benchbus_gateway.service", "--config", os.devnull], env=env)
    try:
        wait_for_port("127.0.0.1", port, 20, gateway)
        return measure(broker, gateway, f"http://127.0.0.1:{port}/", counts, args)
    finally:
        gateway.terminate()
        try:
            gateway.wait(10)
        except subprocess.TimeoutExpired:
            gateway.kill()
        broker.close()


def measure(broker, gateway: subprocess.Popen, base: str, counts: dict[str, int], args) -> int:
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
        return 1

    floor: list[float] = []
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-floor", protocol=mqtt.MQTTv5)
    subscriber.on_message = lambda _c, _u, m: floor.append((time.time() - json.loads(m.payload)["timestamp"]) * 1000)
    subscriber.connect(broker.host, broker.port)
    subscriber.subscribe(TOPIC, qos=1)
    subscriber.loop_start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-scheduler", protocol=mqtt.MQTTv5)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    time.sleep(0.5)

    process = psutil.Process(gateway.pid)
    gateway_cpu = CpuMeter([process])
    clients_cpu = CpuMeter([psutil.Process(worker.pid) for worker in workers])
    for meter in (gateway_cpu, clients_cpu):
        meter.start()
    time.sleep(3.0)  # the CPU with every client connected and nothing to send
    for meter in (gateway_cpu, clients_cpu):
        meter.idle_done()
    process.cpu_percent(None)
    measuring.set()
    started = time.monotonic()
    for seq in range(args.broadcasts):
        publisher.publish(TOPIC, json.dumps(broadcast_payload(seq)), qos=1)
        time.sleep(max(0.0, started + (seq + 1) * args.interval - time.monotonic()))
    time.sleep(0.5)
    cpu = process.cpu_percent(None)
    cpu_ms_per_broadcast = gateway_cpu.per_broadcast(args.broadcasts)
    clients_ms_per_broadcast = clients_cpu.per_broadcast(args.broadcasts)
    rss_mb = process.memory_info().rss / 2**20
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

    expected = args.broadcasts * sum(counts.values())
    p50, p99 = percentile(latencies.samples, 0.5), percentile(latencies.samples, 0.99)
    floor_p50, floor_p99 = percentile(floor, 0.5), percentile(floor, 0.99)
    print(f"clients: {counts} in {args.processes} processes; {args.broadcasts} broadcasts, one every {args.interval} s")
    print(f"ours  (publish -> gateway -> client): p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
          f"({len(latencies.samples)}/{expected} deliveries)")
    for kind, values in sorted(latencies.by_kind.items()):
        print(f"   {kind:<15} p50 {percentile(values, 0.5):.2f} ms  p99 {percentile(values, 0.99):.2f} ms"
              f"  n={len(values)}")
    print(f"floor (publish -> broker -> paho subscriber): p50 {floor_p50:.2f} ms  p99 {floor_p99:.2f} ms")
    print(f"ratio ours/floor: p50 {p50 / floor_p50:.1f}x  p99 {p99 / floor_p99:.1f}x")
    print(f"gateway process: cpu {cpu_ms_per_broadcast:.2f} ms per broadcast above idle "
          f"({gateway_cpu.idle_ms_per_s:.1f} ms/s; {cpu:.1f} % of one core), rss {rss_mb:.1f} MB; "
          f"target p99 <= {TARGET_P99_MS} ms")
    # the last client cannot have its message before the CPU every delivery needs has been spent on the cores there are
    cores = psutil.cpu_count() or 1
    cpu_bound_ms = (cpu_ms_per_broadcast + clients_ms_per_broadcast) / cores
    print(f"client processes: cpu {clients_ms_per_broadcast:.2f} ms per broadcast; (gateway + clients) / {cores} "
          f"cores = {cpu_bound_ms:.2f} ms before the last delivery can be read")
    print(json.dumps({"clients": sum(counts.values()), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                      "floor_p50_ms": round(floor_p50, 2), "floor_p99_ms": round(floor_p99, 2),
                      "ratio_p99": round(p99 / floor_p99, 1), "delivered": len(latencies.samples),
                      "expected": expected, "cpu_percent": round(cpu, 1),
                      "gateway_cpu_ms_per_broadcast": round(cpu_ms_per_broadcast, 2), "rss_mb": round(rss_mb, 1),
                      "clients_cpu_ms_per_broadcast": round(clients_ms_per_broadcast, 2),
                      "cpu_bound_ms": round(cpu_bound_ms, 2),
                      "target_p99_ms": TARGET_P99_MS,
                      "met": p99 <= TARGET_P99_MS and len(latencies.samples) == expected}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
