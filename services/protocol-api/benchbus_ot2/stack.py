"""The robot's stack on emulated hardware, for one run or one benchmark: a private Mosquitto, the Smoothieboard
emulator (real bytes, real motion time unless `speedup`), the smoothie-bridge, gpio-service (simulated chip: the
door is closed) and calibration-store (empty: nominal geometry), each a process of its own as on the robot, found
through their `benchbus up` plug-ins. Everything stops at `stop()`.

    with EmulatedStack(speedup=20) as stack:
        subprocess.run(["benchbus-execute", "--broker", stack.broker_address, "--device", stack.device, "p.py"])
        print(stack.emulator_state()["moved_s"])       # the emulator's JSON control interface
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchbus import BusClient
from benchbus.testing.broker import MosquittoProcess
from benchbus.up import Supervisor, UpContext, discover, wait_ready

SERVICES = ("smoothie", "gpio", "calibration")
DEFAULT_LEFT = "p300_single_v2.1:P3HSV2120200101"
DEFAULT_RIGHT = "p20_multi_v2.0:P20MV2020200101"


class EmulatedStack:
    """Broker + emulators + services on this machine."""

    def __init__(self, left: str | None = DEFAULT_LEFT, right: str | None = DEFAULT_RIGHT, speedup: float = 1.0,
                 timeout_s: float = 60.0, keep_logs: bool = False):
        self.left, self.right = left, right
        self.speedup = speedup
        self.timeout_s = timeout_s
        self.keep_logs = keep_logs
        self.device = f"emulated-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="benchbus-stack-"))
        self._broker: MosquittoProcess | None = None
        self._supervisor: Supervisor | None = None
        self._control: str | None = None
        self.broker: Any = None

    @property
    def broker_address(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    def _adjust(self, units) -> None:
        for unit in units:
            if "benchbus_smoothie.emulator" in " ".join(unit.argv):
                unit.argv += ["--speedup", str(self.speedup), "--left", self.left or "none",
                              "--right", self.right or "none"]
                self._control = unit.control

    def start(self) -> EmulatedStack:
        self._broker = MosquittoProcess()
        self._broker.start()
        self.broker = self._broker.settings()
        ctx = UpContext(broker=self.broker, device=self.device, data_dir=self.data_dir, http_port=0)
        units = discover(ctx, set(SERVICES))
        missing = set(SERVICES) - {u.segment for u in units if u.segment}
        if missing:
            self.stop()
            raise RuntimeError(f"the emulated stack needs the {', '.join(sorted(missing))} service package(s)")
        self._adjust(units)
        log_dir = self.data_dir / "logs"
        log_dir.mkdir()
        self._supervisor = Supervisor(ctx, units, log_dir)
        try:
            self._supervisor.start_all(self.timeout_s)
            with BusClient(self.device, self.broker, name=f"stack-{os.getpid()}") as client:
                states = wait_ready(client, list(SERVICES), self.timeout_s)
            late = [s for s in SERVICES if states.get(s, {}).get("state") != "ready"]
            if late:
                logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in log_dir.iterdir())
                raise RuntimeError(f"not ready after {self.timeout_s:.0f} s: {', '.join(late)}\n{logs}")
        except BaseException:
            self.stop()
            raise
        return self

    def emulator_state(self) -> dict[str, Any]:
        """The Smoothieboard emulator's /state: position, homed, lines received, moved_s."""
        if self._control is None:
            raise RuntimeError("the emulator has no control interface")
        with urllib.request.urlopen(self._control.rstrip("/") + "/state", timeout=5) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop_all()
            self._supervisor = None
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        if not self.keep_logs:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmulatedStack:
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
