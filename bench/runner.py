"""The protocol-runner: upload-to-first-move latency, and what the HTTP live-command path costs per command.

- upload_to_first_move_s: POST /protocols (Opentrons' analysis in a child process), POST /runs, play, until the
  Smoothieboard emulator receives the first motion line. Its floor is Opentrons' analysis alone (the same
  `benchbus_runner.analyse` child process, timed here); the rest is the run's process starting Opentrons and
  taking the lease. Both printed, with the ratio.
- http_command_overhead_p99_ms: live `aspirateInPlace`/`dispenseInPlace` through `POST /runs/{id}/commands?
  waitUntilComplete=true` (the protocol engine in the run's process, on the bus backend) against the same plunger
  moves sent straight to the smoothie-bridge over the bus (`smoothie move`), alternated between the same two
  plunger targets the engine used. overhead p99 = HTTP p99 - bus p99.

The stack is `benchbus_ot2.stack.EmulatedStack` (broker, emulator, smoothie-bridge, gpio-service,
calibration-store, each its own process) with the emulator's motion sped up, and the runner as its own process.
`--quick` for a short run. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

from benchbus import BusClient
from benchbus.testing.broker import free_port
from benchbus_ot2.stack import EmulatedStack

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "tests" / "protocol" / "protocols" / "api_2_15_engine.py"
HEADERS = {"Opentrons-Version": "*"}
MOTION = re.compile(r"\b(G0|G1|G28\.2)\b")
PLUNGER = re.compile(r"\bG0 B(-?\d+(?:\.\d+)?)")  # a plunger move (M907 also names B: its current)


def lines_since(stack: EmulatedStack, since: int) -> tuple[list[str], int]:
    control = stack._control or ""
    with urllib.request.urlopen(f"{control.rstrip('/')}/lines?since={since}", timeout=5) as reply:
        found = json.loads(reply.read())
    return found["lines"], found["next"]


def start_runner(stack: EmulatedStack, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, BENCHBUS_DEVICE=stack.device, BENCHBUS_BROKER_HOST=stack.broker.host,
               BENCHBUS_BROKER_PORT=str(stack.broker.port), BENCHBUS_RUNNER_DATA_DIR=str(data_dir),
               BENCHBUS_RUNNER_HTTP_PORT=str(port), BENCHBUS_RUNNER_HTTP_HOST="127.0.0.1",
               BENCHBUS_RUNNER_LOG_LEVEL="warning")
    with open(data_dir / "runner.log", "w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([sys.executable, "-m", "benchbus_runner.service"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/health", timeout=2)
            return process, base
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the runner did not start")


def post(base: str, path: str, data: dict | None = None) -> dict:
    reply = httpx.post(base + path, headers=HEADERS, json=data, timeout=120)
    if reply.status_code not in (200, 201):
        raise SystemExit(f"POST {path}: {reply.status_code} {reply.text}")
    return reply.json()


def upload_to_first_move(stack: EmulatedStack, base: str) -> float:
    _lines, mark = lines_since(stack, 0)
    started = time.perf_counter()
    reply = httpx.post(base + "/protocols", headers=HEADERS, timeout=120,
                       files=[("files", ("engine.py", PROTOCOL.read_bytes(), "text/x-python"))])
    if reply.status_code != 201:
        raise SystemExit(f"upload refused: {reply.text}")
    run = post(base, "/runs", {"data": {"protocolId": reply.json()["data"]["id"]}})["data"]
    post(base, f"/runs/{run['id']}/actions", {"data": {"actionType": "play"}})
    while True:
        found, mark = lines_since(stack, mark)
        if any(MOTION.search(line) for line in found):
            took = time.perf_counter() - started
            break
        if time.perf_counter() - started > 120:
            raise SystemExit("no motion within 120 s of the upload")
        time.sleep(0.005)
    post(base, f"/runs/{run['id']}/actions", {"data": {"actionType": "stop"}})
    return took


def analysis_floor() -> float:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "labware").mkdir()
        (Path(folder) / "main.py").write_bytes(PROTOCOL.read_bytes())
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "benchbus_runner.analyse", folder], capture_output=True, check=True)
        return time.perf_counter() - started


def live_commands(base: str, stack: EmulatedStack, repeats: int) -> tuple[list[float], list[float]]:
    run_id = post(base, "/runs")["data"]["id"]
    httpx.post(base + "/robot/home", headers=HEADERS, json={"target": "robot"}, timeout=120).raise_for_status()

    def command(kind: str, params: dict) -> dict:
        found = post(base, f"/runs/{run_id}/commands?waitUntilComplete=true",
                     {"data": {"commandType": kind, "params": params, "intent": "setup"}})["data"]
        if found["status"] != "succeeded":
            raise SystemExit(f"{kind} failed: {found.get('error')}")
        return found

    tips = command("loadLabware", {"location": {"slotName": "1"}, "loadName": "opentrons_96_tiprack_300ul",
                                   "namespace": "opentrons", "version": 1})["result"]["labwareId"]
    pipette = command("loadPipette", {"pipetteName": "p300_single_gen2", "mount": "left"})["result"]["pipetteId"]
    command("pickUpTip", {"pipetteId": pipette, "labwareId": tips, "wellName": "A1",
                          "wellLocation": {"origin": "bottom", "offset": {"x": 0, "y": 0, "z": 50}}})
    # some liquid in the tip: a partial dispense never pushes the plunger past its bottom (a full one would, and the
    # engine then wants the next aspirate in a well)
    command("aspirateInPlace", {"pipetteId": pipette, "volume": 50, "flowRate": 300})
    _lines, mark = lines_since(stack, 0)
    http_ms = []
    for _ in range(repeats):
        for kind in ("dispenseInPlace", "aspirateInPlace"):
            started = time.perf_counter()
            command(kind, {"pipetteId": pipette, "volume": 10, "flowRate": 300})
            http_ms.append((time.perf_counter() - started) * 1000)
    found, _ = lines_since(stack, mark)
    targets = sorted({float(value) for line in found for value in PLUNGER.findall(line)})
    post(base, f"/runs/{run_id}/actions", {"data": {"actionType": "stop"}})
    if len(targets) < 2:
        raise SystemExit(f"the engine's plunger targets were not seen: {found[:10]}")
    low, high = targets[0], targets[-1]
    with BusClient(stack.device, stack.broker, name="bench-runner") as bus:
        bus.call("smoothie", "home", {}, timeout=120)  # the live run's stop halted the robot
        bus_ms = []
        for _ in range(repeats):
            for target in (low, high):
                started = time.perf_counter()
                bus.call("smoothie", "move", {"target": {"B": target}}, timeout=30)
                bus_ms.append((time.perf_counter() - started) * 1000)
    return http_ms, bus_ms


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 command pairs instead of 100")
    parser.add_argument("--speedup", type=float, default=50.0, help="emulated motion this much faster")
    args = parser.parse_args()
    repeats = 20 if args.quick else 100
    with EmulatedStack(speedup=args.speedup) as stack, tempfile.TemporaryDirectory() as data:
        process, base = start_runner(stack, Path(data))
        try:
            floor = analysis_floor()
            latency = upload_to_first_move(stack, base)
            http_ms, bus_ms = live_commands(base, stack, repeats)
        finally:
            process.terminate()
            process.wait(20)
    print(f"upload to first move: {latency:.2f} s; Opentrons' analysis alone {floor:.2f} s "
          f"(ratio {latency / floor:.2f})")
    print(f"live plunger command, p50/p99 ms: HTTP {statistics.median(http_ms):.1f}/{p99(http_ms):.1f}, "
          f"bus direct {statistics.median(bus_ms):.1f}/{p99(bus_ms):.1f} (ratio p99 {p99(http_ms) / p99(bus_ms):.2f}, "
          f"{len(http_ms)} commands each)")
    print(json.dumps({"upload_to_first_move_s": round(latency, 3), "analysis_floor_s": round(floor, 3),
                      "http_command_p99_ms": round(p99(http_ms), 2), "bus_move_p99_ms": round(p99(bus_ms), 2),
                      "http_command_overhead_p99_ms": round(p99(http_ms) - p99(bus_ms), 2),
                      "speedup": args.speedup, "commands": len(http_ms)}))


if __name__ == "__main__":
    main()
