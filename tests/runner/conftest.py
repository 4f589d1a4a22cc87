"""The robot's stack on emulated hardware (broker, Smoothieboard emulator, smoothie-bridge, gpio-service,
calibration-store: `benchbus_ot2.stack.EmulatedStack`, each its own process) and the protocol-runner as a real
process of its own (so a test can kill -9 it), its HTTP API on a free port."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from benchbus import BusClient
from benchbus.testing.broker import free_port
from benchbus_ot2.stack import EmulatedStack

HERE = Path(__file__).parent
PROTOCOLS = HERE.parent / "protocol" / "protocols"
LABWARE = HERE.parent / "protocol" / "labware" / "benchtest_6_tuberack_5ml.json"
HEADERS = {"Opentrons-Version": "*"}
MOTION = re.compile(r"\b(G0|G1|G28\.2)\b")

SHORT = '''
requirements = {"robotType": "OT-2", "apiLevel": "2.13"}

def run(protocol):
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    plate = protocol.load_labware("nest_12_reservoir_15ml", 2)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])
    p300.pick_up_tip()
    p300.aspirate(100, plate["A1"])
    p300.dispense(100, plate["A2"])
    p300.drop_tip()
'''

# long enough to be caught in the middle: many moves between two columns of a reservoir
LONG = '''
requirements = {"robotType": "OT-2", "apiLevel": "2.13"}

def run(protocol):
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    plate = protocol.load_labware("nest_12_reservoir_15ml", 2)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])
    p300.pick_up_tip()
    for _ in range(400):
        p300.move_to(plate["A1"].top(20))
        p300.move_to(plate["A12"].top(20))
    p300.drop_tip()
'''


@pytest.fixture(scope="session")
def stack():
    with EmulatedStack(speedup=100, timeout_s=90) as emulated:
        yield emulated


class RunnerProcess:
    def __init__(self, stack: EmulatedStack, data_dir: Path, env: dict[str, str] | None = None):
        self.stack, self.data_dir, self.extra_env = stack, data_dir, env or {}
        self.port = free_port()
        self.host = self.extra_env.get("BENCHBUS_RUNNER_HTTP_HOST", "127.0.0.1")
        self.base = f"http://{self.host}:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = data_dir / "runner.log"

    def start(self) -> RunnerProcess:
        env = dict(os.environ, BENCHBUS_DEVICE=self.stack.device, BENCHBUS_BROKER_HOST=self.stack.broker.host,
                   BENCHBUS_BROKER_PORT=str(self.stack.broker.port), BENCHBUS_RUNNER_DATA_DIR=str(self.data_dir),
                   BENCHBUS_RUNNER_HTTP_PORT=str(self.port))
        env.update(self.extra_env, BENCHBUS_RUNNER_HTTP_HOST=self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "benchbus_runner.service"], env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                httpx.get(self.base + "/health", timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"the runner did not listen within 60 s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    # -- HTTP helpers --------------------------------------------------------------------------------------------

    def get(self, path: str) -> dict:
        reply = httpx.get(self.base + path, headers=HEADERS, timeout=30)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def post(self, path: str, data: dict | None = None, expect: int = 201) -> dict:
        reply = httpx.post(self.base + path, headers=HEADERS, json=data, timeout=120)
        assert reply.status_code == expect, reply.text
        return reply.json()

    def upload(self, source: str, name: str = "protocol.py", labware: list[Path] = ()) -> httpx.Response:
        files = [("files", (name, source.encode(), "text/x-python"))]
        files += [("files", (path.name, path.read_bytes(), "application/json")) for path in labware]
        return httpx.post(self.base + "/protocols", headers=HEADERS, files=files, timeout=120)

    def wait_status(self, run_id: str, statuses: tuple[str, ...], timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/runs/{run_id}")["data"]
            if run["status"] in statuses:
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} is still {run['status']} after {timeout:.0f} s")


@pytest.fixture
def start_runner(stack, tmp_path):
    started: list[RunnerProcess] = []

    def start(data_dir: Path | None = None, env: dict[str, str] | None = None) -> RunnerProcess:
        runner = RunnerProcess(stack, data_dir or tmp_path / "runner", env).start()
        started.append(runner)
        return runner
    yield start
    for runner in started:
        runner.stop()
    # the next test starts from a free robot: a run stopped at the runner's stop gives the lease back first
    with BusClient(stack.device, stack.broker, name=f"runner-teardown-{os.getpid()}") as client:
        lease_free(client, timeout=60)


@pytest.fixture
def runner(start_runner) -> RunnerProcess:
    return start_runner()


@pytest.fixture
def bus(stack):
    with BusClient(stack.device, stack.broker, name=f"runner-test-{os.getpid()}") as client:
        yield client


def emulator_lines(stack: EmulatedStack, since: int = 0) -> tuple[list[str], int]:
    with urllib.request.urlopen(f"{stack._control.rstrip('/')}/lines?since={since}", timeout=5) as reply:
        found = json.loads(reply.read())
    return found["lines"], found["next"]


def moves(lines: list[str]) -> list[str]:
    return [line for line in lines if MOTION.search(line)]


def lease_free(bus: BusClient, timeout: float = 15) -> None:
    bus.wait_for(bus.topic("smoothie", "state", "lease"), lambda _t, d: (d or {}).get("holder") is None, timeout)


TERMINAL = ("succeeded", "failed", "stopped")


def wait_steps(bus: BusClient, run_id: str, steps: int, timeout: float = 180) -> dict:
    """Until the run has done `steps` steps; a run that ended before that fails the test with its errors."""
    _t, run = bus.wait_for(bus.topic("runner", "state", "run"), lambda _t, d: d.get("id") == run_id and (
        d.get("steps_done", 0) >= steps or d.get("status") in TERMINAL), timeout)
    assert run["status"] not in TERMINAL, run["errors"]
    return run
