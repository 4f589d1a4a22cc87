"""A door switch's edge to its `event/door` at a client, beside a bare MQTT publish of the same news.

ours:  simulated chip edge (kernel-style timestamp) -> select wakes the input loop -> debounce -> event/door
       published -> broker -> a subscribed BusClient. Measured from the edge's own timestamp to arrival, minus
       the debounce window (the window is a deliberate wait; it is reported as configured).
floor: a bare paho client publishes the same-size payload -> broker -> a bare paho subscriber, measured from
       just before publish to arrival: what any notification over this bus costs at the least.
Both run against one Mosquitto, interleaved in blocks. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time


from benchbus.testing.bench import bare_client, percentile
from benchbus import BusClient
from benchbus.testing.broker import MosquittoProcess
from benchbus_gpio.service import GpioService
from benchbus_gpio.settings import GpioSettings
from benchbus_gpio.sim import SimChip

DOOR = 20


def floor_notifications(broker, count: int) -> list[float]:
    sender, receiver = bare_client(broker, "bench-door-tx"), bare_client(broker, "bench-door-rx")
    arrived = threading.Event()
    receiver.on_message = lambda *_: arrived.set()
    receiver.subscribe("bench/door", qos=1)
    time.sleep(0.3)
    payload = json.dumps({"switch": "door", "state": "open", "at": "2026-01-01T00:00:00.000Z"}).encode()
    samples = []
    for _ in range(count):
        arrived.clear()
        start = time.monotonic_ns()
        sender.publish("bench/door", payload, qos=1)
        arrived.wait(5)
        samples.append((time.monotonic_ns() - start) / 1e6)
    for client in (sender, receiver):
        client.loop_stop()
        client.disconnect()
    return samples


def door_events(broker, count: int, debounce_ms: float) -> list[float]:
    chip = SimChip()
    settings = GpioSettings(device="bench", broker=broker.settings(), backend="sim", debounce_ms=debounce_ms)
    service = GpioService(settings, chip=chip)
    service.serve_in_background()
    arrived = threading.Event()
    arrival = [0]

    def seen(_topic, _data, _message) -> None:
        arrival[0] = time.monotonic_ns()
        arrived.set()

    samples = []
    with BusClient("bench", broker.settings(), name="bench-door") as client:
        client.subscribe(client.topic("gpio", "event", "door"), seen)
        time.sleep(0.3)
        for index in range(count):
            arrived.clear()
            before = time.monotonic_ns()
            chip.drive(DOOR, index % 2)  # open, close, open, ...: every drive is one real change
            if not arrived.wait(5):
                raise RuntimeError("no event/door within 5 s")
            samples.append((arrival[0] - before) / 1e6 - debounce_ms)
    service.stop()
    chip.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--debounce-ms", type=float, default=20.0)
    args = parser.parse_args()
    broker = MosquittoProcess()
    broker.start()
    try:
        floor_notifications(broker, 100)  # warm-up
        ours, floor = [], []
        block = max(1, args.events // 5)
        for _ in range(5):
            floor += floor_notifications(broker, block)
            ours += door_events(broker, block, args.debounce_ms)
    finally:
        broker.close()
    result = {
        "events": len(ours),
        "debounce_ms": args.debounce_ms,
        "edge_to_event_p50_ms": round(statistics.median(ours), 3),
        "edge_to_event_p99_ms": round(percentile(ours, 0.99), 3),
        "floor_p50_ms": round(statistics.median(floor), 3),
        "floor_p99_ms": round(percentile(floor, 0.99), 3),
    }
    result["ratio"] = round(result["edge_to_event_p50_ms"] / result["floor_p50_ms"], 3)
    print(f"door edge -> event/door (beyond the {args.debounce_ms:g} ms debounce window): "
          f"p50 {result['edge_to_event_p50_ms']} ms  p99 {result['edge_to_event_p99_ms']} ms  ({len(ours)} edges)")
    print(f"bare paho notification (floor): p50 {result['floor_p50_ms']} ms  p99 {result['floor_p99_ms']} ms  "
          f"({len(floor)} messages)")
    print(f"ratio (p50 over p50): {result['ratio']}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
