"""Round trip through the smoothie-bridge over the bus, beside the same work done directly on the serial line.

Two emulator processes, identical and realistic (115200 baud pacing, real motion timing): one is driven directly
by the driver in this process (the floor: what a program owning the UART would do), the other by the bridge running
as its own process (`benchbus-smoothie`), called through Mosquitto by a BusClient. Per command kind:
- short move (1 mm on X, alternating): direct = driver.move (M907/G0, M400, M114.2); bus = `move`;
- position read: direct = M114.2 on the line; bus = `position` (served from the bridge's cache);
- switch read: direct = M119 on the line; bus = `switches`.
Kinds are interleaved in blocks so machine noise lands on both alike. The bridge's own `$audit` records give its
handler time per request (validation, the serial exchange, publishing state), so the added time splits into the
bridge's share and the bus's (client -> broker -> bridge -> broker -> client). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchbus.testing.bench import percentile
from benchbus import BusClient
from benchbus.testing.broker import MosquittoProcess, free_port, wait_for_port
from benchbus_schemas import topics
from benchbus_smoothie.driver import SmoothieDriver
from benchbus_smoothie.robot import DriverConfig
from benchbus_smoothie.serial_link import SerialLink

TARGET_OVERHEAD_P99_MS = 1.0  # issue 21: the bus adds at most 1 ms at p99, for every kind


def start_emulator() -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "benchbus_smoothie.emulator", "--tcp", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, 10, process)
    return process, port


def stop(process: subprocess.Popen) -> None:
    """Terminate; kill what does not end in time (a hung bridge must not outlive the benchmark)."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def bus_shares(calls: list[float], handled: list[float]) -> list[float]:
    """Per call, its time less its own handler's: the bus's part (client -> broker -> bridge -> broker -> client),
    free of the serial line's noise. The calls are sequential and nobody else calls, so the audit records are
    these calls', in order."""
    if len(handled) != len(calls):
        raise SystemExit(f"{len(handled)} audit records for {len(calls)} calls")
    return [call - handler for call, handler in zip(calls, handled, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="samples per kind and path")
    parser.add_argument("--bridge-log", help="write the bridge's log here (default: discarded)")
    args = parser.parse_args()
    broker = MosquittoProcess()
    broker.start()
    emulators = []
    bridge = None
    try:
        direct_emu, direct_port = start_emulator()
        bus_emu, bus_port = start_emulator()
        emulators += [direct_emu, bus_emu]
        device = "bench"
        env = dict(os.environ, BENCHBUS_DEVICE=device, BENCHBUS_BROKER_HOST=broker.host,
                   BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_SMOOTHIE_PORT=f"socket://127.0.0.1:{bus_port}",
                   BENCHBUS_SMOOTHIE_USE_GPIO="false", BENCHBUS_SMOOTHIE_DOOR_SAFETY="false",  # no gpio: no door
                   BENCHBUS_LOG_LEVEL="warning")
        with open(args.bridge_log or os.devnull, "w") as bridge_log:  # the child keeps its own descriptor
            bridge = subprocess.Popen([sys.executable, "-m", "benchbus_smoothie"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=bridge_log)
        driver = SmoothieDriver(SerialLink(f"socket://127.0.0.1:{direct_port}"), DriverConfig())
        driver.ping()
        driver.setup()
        driver.home()
        driver.move({"X": 200.0})  # start both beside where the short moves happen
        with BusClient(device, broker.settings(), name="bench") as client:
            client.wait_for(topics.lifecycle_topic(device, "smoothie"), lambda _t, d: d.get("state") == "ready", 30)
            handler: dict[str, list[float]] = {"move": [], "position": [], "switches": []}

            def audited(_topic: str, batch, _message) -> None:
                for record in (batch or {}).get("records", []):  # $audit carries a batch per 50 ms window
                    if record.get("command") in handler:
                        handler[record["command"]].append(float(record["duration_ms"]))
            client.subscribe(topics.audit_topic(device, "smoothie"), audited)
            client.call("smoothie", "home", {}, timeout=60)
            client.call("smoothie", "move", {"target": {"X": 200.0}}, timeout=60)
            settle_deadline = time.monotonic() + 5
            while not handler["move"] and time.monotonic() < settle_deadline:
                time.sleep(0.05)  # the warm-up move's record: every later one is a measured call's
            handler["move"].clear()
            direct: dict[str, list[float]] = {"move": [], "position": [], "switches": []}
            bus: dict[str, list[float]] = {"move": [], "position": [], "switches": []}
            block = 25
            step = 0
            for _ in range(max(1, args.rounds // block)):
                for _ in range(block):
                    step += 1
                    x = 200.0 + (step % 2)
                    direct["move"].append(timed(lambda x=x: driver.move({"X": x})))
                    bus["move"].append(timed(lambda x=x: client.call("smoothie", "move", {"target": {"X": x}})))
                for _ in range(block):
                    direct["position"].append(timed(driver.read_position))
                    bus["position"].append(timed(lambda: client.call("smoothie", "position")))
                for _ in range(block):
                    direct["switches"].append(timed(driver.read_switches))
                    bus["switches"].append(timed(lambda: client.call("smoothie", "switches")))
            deadline = time.monotonic() + 5
            while sum(map(len, handler.values())) < sum(map(len, bus.values())) and time.monotonic() < deadline:
                time.sleep(0.05)  # the last audit records are on their way
        driver.link.close()
    finally:
        for process in ([bridge] if bridge is not None else []) + emulators:
            stop(process)
        broker.close()

    result: dict = {}
    overheads = []
    for kind in ("move", "position", "switches"):
        d50, d99 = statistics.median(direct[kind]), percentile(direct[kind], 0.99)
        b50, b99 = statistics.median(bus[kind]), percentile(bus[kind], 0.99)
        overheads.append(b99 - d99)
        h50, h99 = statistics.median(handler[kind]), percentile(handler[kind], 0.99)
        share = bus_shares(bus[kind], handler[kind])
        s50, s99 = statistics.median(share), percentile(share, 0.99)
        result[kind] = {"direct_p50_ms": round(d50, 3), "direct_p99_ms": round(d99, 3), "bus_p50_ms": round(b50, 3),
                        "bus_p99_ms": round(b99, 3), "overhead_p99_ms": round(b99 - d99, 3),
                        "ratio_p50": round(b50 / d50, 3), "handler_p50_ms": round(h50, 3),
                        "handler_p99_ms": round(h99, 3), "bus_share_p50_ms": round(s50, 3),
                        "bus_share_p99_ms": round(s99, 3)}
        print(f"{kind:<9} direct p50 {d50:8.3f} ms  p99 {d99:8.3f} ms | bus p50 {b50:8.3f} ms  p99 {b99:8.3f} ms"
              f" | added p99 {b99 - d99:+.3f} ms  ratio p50 {b50 / d50:.2f}x  ({len(bus[kind])} each)")
        print(f"{'':<9} inside the bridge (its $audit duration): p50 {h50:8.3f} ms  p99 {h99:8.3f} ms;"
              f" the bus's share per call (call - its handler): p50 {s50:.3f} ms  p99 {s99:.3f} ms")
    worst = max(("move", "position", "switches"), key=lambda k: result[k]["overhead_p99_ms"])
    summary = {"direct_p99_ms": result[worst]["direct_p99_ms"], "bus_p99_ms": result[worst]["bus_p99_ms"],
               "overhead_p99_ms": round(max(overheads), 3), "worst_kind": worst,
               "overhead_p50_ms": round(max(r["bus_p50_ms"] - r["direct_p50_ms"] for r in result.values()), 3),
               "target_overhead_p99_ms": TARGET_OVERHEAD_P99_MS,
               **{f"{k}_{m}": v for k, r in result.items() for m, v in r.items()}}
    print(f"largest added p99: {summary['overhead_p99_ms']} ms ({worst}); target <= {TARGET_OVERHEAD_P99_MS:g} ms")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
