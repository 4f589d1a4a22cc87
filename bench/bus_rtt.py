"""Request/reply round trip through the benchbus runtime, beside a bare paho echo through the same broker.

ours:  BusClient.call -> broker -> Service (validate, handler, validate, reply) -> broker -> caller
floor: bare paho publish -> broker -> bare paho echo client publishes it back -> broker -> caller
Both run sequentially in the same process against one Mosquitto, with the caller waiting on a threading.Event.
Prints p50/p99 of both and the ratio; the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.properties import Properties


from benchbus.testing.bench import bare_client, percentile
from benchbus import BusClient
from benchbus.demo import DemoService, DemoSettings
from benchbus.testing.broker import MosquittoProcess


@contextlib.contextmanager
def pahos_own_decoder():
    """The floor is paho as shipped: its own Properties decoder, not the runtime's faster one, which importing
    benchbus installed in this process (benchbus.paho_speedups)."""
    installed, _packet.Properties = _packet.Properties, Properties
    try:
        yield
    finally:
        _packet.Properties = installed


def bare_echo(broker, calls: int) -> list[float]:
    with pahos_own_decoder():
        return _bare_echo(broker, calls)


def _bare_echo(broker, calls: int) -> list[float]:
    echo = bare_client(broker, "bench-echo")

    def pong(client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        client.publish("bench/pong", message.payload, qos=1)
    echo.on_message = pong
    echo.subscribe("bench/ping", qos=1)
    caller = bare_client(broker, "bench-caller")
    arrived = threading.Event()
    caller.on_message = lambda *_: arrived.set()
    caller.subscribe("bench/pong", qos=1)
    time.sleep(0.3)
    samples = []
    payload = json.dumps({"text": "ping", "count": 1}).encode()
    for _ in range(calls):
        arrived.clear()
        start = time.perf_counter()
        caller.publish("bench/ping", payload, qos=1)
        arrived.wait(5)
        samples.append((time.perf_counter() - start) * 1000)
    for client in (echo, caller):
        client.loop_stop()
        client.disconnect()
    return samples


def runtime_calls(broker, calls: int) -> list[float]:
    service = DemoService(DemoSettings(device="bench", broker=broker.settings(), handler_threads=4))
    service.serve_in_background()
    samples = []
    with BusClient("bench", broker.settings(), name="bench-runtime") as client:
        for _ in range(200):  # warm-up
            client.call("demo", "echo", {"text": "ping"})
        for _ in range(calls):
            start = time.perf_counter()
            client.call("demo", "echo", {"text": "ping"})
            samples.append((time.perf_counter() - start) * 1000)
    service.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    broker = MosquittoProcess()
    broker.start()
    try:
        bare_echo(broker, 200)  # warm-up
        # Interleave the two in blocks so machine noise lands on both alike.
        echo, ours = [], []
        block = max(1, args.calls // 5)
        for _ in range(5):
            echo += bare_echo(broker, block)
            ours += runtime_calls(broker, block)
    finally:
        broker.close()
    result = {
        "calls": len(ours),
        "rtt_p50_ms": round(statistics.median(ours), 3),
        "rtt_p99_ms": round(percentile(ours, 0.99), 3),
        "echo_p50_ms": round(statistics.median(echo), 3),
        "echo_p99_ms": round(percentile(echo, 0.99), 3),
    }
    result["ratio"] = round(result["rtt_p50_ms"] / result["echo_p50_ms"], 3)
    print(f"runtime request/reply: p50 {result['rtt_p50_ms']} ms  p99 {result['rtt_p99_ms']} ms  ({len(ours)} calls)")
    print(f"bare paho echo (floor): p50 {result['echo_p50_ms']} ms  p99 {result['echo_p99_ms']} ms  "
          f"({len(echo)} round trips)")
    print(f"ratio (p50 over p50): {result['ratio']}x   target <= 1.3x (issue 21)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
