"""The `benchbus` command line's wall time, as a user at a shell sees it, beside its floor.

ours:  `benchbus status`, `benchbus call demo echo` and `benchbus commands`, each a fresh process of the installed
       console script (interpreter start, imports, connect, the retained snapshot, the call), against one Mosquitto
       holding the retained $state of a device with 8 services (the demo service, running, and 7 more).
floor: a fresh Python process with a bare paho client that connects, subscribes to the same $state topics and
       exits when it has read all 8: what any command line must at least spend to show the status.
All run sequentially in this one run. Prints the median and the slowest of each and the ratio to the floor; the
last line is one JSON object with status_s, call_s, commands_s and floor_s (medians, seconds).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchbus.demo import DemoService, DemoSettings
from benchbus.testing.bench import bare_client
from benchbus.testing.broker import MosquittoProcess

DEVICE = "bench-cli"
OTHER_SERVICES = ["calibration", "gateway", "gpio", "samd", "scheduler", "smoothie", "update"]
BENCHBUS = Path(sys.executable).with_name("benchbus")

FLOOR = """
import sys, threading
import paho.mqtt.client as mqtt
host, port, topic_filter, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
seen = {}
done = threading.Event()
def on_message(_c, _u, message):
    seen[message.topic] = message.payload
    if len(seen) >= expected:
        done.set()
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.on_message = on_message
client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=0)
client.connect(host, port)
client.loop_start()
assert done.wait(10), "retained $state missing"
client.disconnect()
client.loop_stop()
print(len(seen))
"""


def wall_times(argv: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return samples


def publish_other_states(broker) -> None:
    client = bare_client(broker, "bench-cli-states")
    for service in OTHER_SERVICES:
        state = {"state": "ready", "version": "0.1.0", "pid": 1, "since": "2026-01-01T00:00:00.000Z"}
        client.publish(f"benchbus/{DEVICE}/{service}/$state", json.dumps(state), qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def show(name: str, samples: list[float], floor: float) -> None:
    median = statistics.median(samples)
    print(f"{name:<20} median {median * 1000:7.1f} ms   slowest {max(samples) * 1000:7.1f} ms   "
          f"{median / floor:5.2f} x floor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="3 runs of each")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs

    broker = MosquittoProcess()
    broker.start()
    service = DemoService(DemoSettings(device=DEVICE, broker=broker.settings()))
    service.serve_in_background()
    try:
        publish_other_states(broker)
        bus = ["--broker", f"{broker.host}:{broker.port}", "--device", DEVICE]
        expected = len(OTHER_SERVICES) + 1
        floor = wall_times([sys.executable, "-c", FLOOR, broker.host, str(broker.port),
                            f"benchbus/{DEVICE}/+/$state", str(expected)], runs)
        status = wall_times([str(BENCHBUS), "status", *bus], runs)
        call = wall_times([str(BENCHBUS), "call", "demo", "echo", '{"text": "bench"}', *bus], runs)
        commands = wall_times([str(BENCHBUS), "commands"], runs)
    finally:
        service.stop()
        broker.close()

    floor_s = statistics.median(floor)
    print(f"{runs} runs each; {expected} services' retained $state on one Mosquitto")
    show("floor (bare paho)", floor, floor_s)
    show("benchbus status", status, floor_s)
    show("benchbus call", call, floor_s)
    show("benchbus commands", commands, floor_s)
    result = {"status_s": round(statistics.median(status), 4), "call_s": round(statistics.median(call), 4),
              "commands_s": round(statistics.median(commands), 4), "floor_s": round(floor_s, 4),
              "status_ratio": round(statistics.median(status) / floor_s, 2),
              "call_ratio": round(statistics.median(call) / floor_s, 2), "runs": runs}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
