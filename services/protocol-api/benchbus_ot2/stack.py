"""`benchbus-simulate protocol.py`: run a protocol against the emulators and print its steps with their timing.

The stack is the real one, started for the purpose: a private Mosquitto, the Smoothieboard emulator (real bytes,
real motion time unless --speedup), the smoothie-bridge, gpio-service (simulated chip: the door is closed) and the
calibration-store (empty: nominal geometry), found through their `benchbus up` plug-ins. The bridge is told to
accept the protocol's firmware configuration (M92/M365, see api.py). Everything stops when the protocol ends.

A protocol file defines `run(protocol)` (and may define `metadata`), as OT-2 protocols do:

    def run(protocol):
        tips = protocol.load_labware("benchbus_96_tiprack_300ul", 1)
        ...

From Python: `connect(simulate=True, left="p300_single_v2.1:P3HSV2120200101")` gives a ProtocolContext on such a
stack (stopped at close()).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from benchbus import BusClient
from benchbus.up import Supervisor, UpContext, discover, wait_ready
from benchbus.testing.broker import MosquittoProcess

SERVICES = ("smoothie", "gpio", "calibration")
DEFAULT_LEFT = "p300_single_v2.1:P3HSV2120200101"
DEFAULT_RIGHT = "p20_single_v2.0:P20SV2020200101"


class SimulatedStack:
    """Broker + emulators + services on this machine, for one protocol run."""

    def __init__(self, left: str | None = DEFAULT_LEFT, right: str | None = DEFAULT_RIGHT, speedup: float = 1.0,
                 timeout_s: float = 60.0, keep_logs: bool = False):
        self.left, self.right = left, right
        self.speedup = speedup
        self.timeout_s = timeout_s
        self.keep_logs = keep_logs
        self.device = f"simulate-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="benchbus-simulate-"))
        self._broker: MosquittoProcess | None = None
        self._supervisor: Supervisor | None = None
        self.broker = None

    def _adjust(self, units) -> None:
        for unit in units:
            if unit.port is not None and "benchbus_smoothie.emulator" in " ".join(unit.argv):
                unit.argv += ["--speedup", str(self.speedup), "--left", self.left or "none",
                              "--right", self.right or "none"]

    def start(self) -> "SimulatedStack":
        self._broker = MosquittoProcess()
        self._broker.start()
        self.broker = self._broker.settings()
        ctx = UpContext(broker=self.broker, device=self.device, data_dir=self.data_dir, http_port=0)
        units = discover(ctx, set(SERVICES))
        missing = set(SERVICES) - {u.segment for u in units if u.segment}
        if missing:
            self.stop()
            raise RuntimeError(f"benchbus-simulate needs the {', '.join(sorted(missing))} service package(s) "
                               "installed (./dev installs every package)")
        self._adjust(units)
        log_dir = self.data_dir / "logs"
        log_dir.mkdir()
        self._supervisor = Supervisor(ctx, units, log_dir)
        try:
            self._supervisor.start_all(self.timeout_s)
            with BusClient(self.device, self.broker, name=f"simulate-{os.getpid()}") as client:
                states = wait_ready(client, list(SERVICES), self.timeout_s)
            late = [s for s in SERVICES if states.get(s, {}).get("state") != "ready"]
            if late:
                logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in log_dir.iterdir())
                raise RuntimeError(f"not ready after {self.timeout_s:.0f} s: {', '.join(late)}\n{logs}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop_all()
            self._supervisor = None
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        if not self.keep_logs:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "SimulatedStack":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()


def load_protocol(path: Path):
    spec = importlib.util.spec_from_file_location(f"benchbus_user_protocol_{uuid.uuid4().hex[:6]}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"benchbus-simulate: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise SystemExit(f"benchbus-simulate: {path} defines no run(protocol) function")
    return module


def format_step(step, t0: float) -> str:
    status = "" if step.error is None else f"   FAILED: {step.error}"
    return f"{step.index:>4}  {step.started - t0:8.2f} s  {step.duration:7.2f} s  {step.text}{status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchbus-simulate", description=__doc__.splitlines()[0])
    parser.add_argument("protocol", type=Path, help="a Python file defining run(protocol)")
    parser.add_argument("--left", default=DEFAULT_LEFT, help="pipette on the left mount, MODEL:ID or none "
                        f"(default {DEFAULT_LEFT})")
    parser.add_argument("--right", default=DEFAULT_RIGHT, help=f"MODEL:ID or none (default {DEFAULT_RIGHT})")
    parser.add_argument("--speedup", type=float, default=1.0, help="run the emulated motion this many times faster "
                        "(default 1: the robot's own timing)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (the path is printed)")
    args = parser.parse_args(argv)
    if not args.protocol.is_file():
        parser.error(f"no file {args.protocol}")
    module = load_protocol(args.protocol)
    from .api import connect  # after argument errors, so --help is quick

    print(f"benchbus-simulate: starting broker, emulators and services for {args.protocol.name} ...", flush=True)
    started = time.monotonic()
    stack = SimulatedStack(args.left, args.right, args.speedup, keep_logs=args.keep_logs)
    stack.start()
    print(f"stack ready in {time.monotonic() - started:.1f} s (device {stack.device})\n", flush=True)
    print(f"{'STEP':>4}  {'AT':>10}  {'TOOK':>9}  WHAT")
    code = 0
    t0 = time.monotonic()
    try:
        with connect(stack.device, stack.broker) as protocol:
            protocol.step_listeners.append(lambda step: print(format_step(step, t0), flush=True))
            try:
                module.run(protocol)
            finally:
                moving = sum(s.duration or 0 for s in protocol.steps)
                print(f"\n{len(protocol.steps)} steps, {time.monotonic() - t0:.2f} s "
                      f"({moving:.2f} s in steps)" + (f" at {args.speedup:g}x speed" if args.speedup != 1 else ""))
                for note in protocol.calibration.notes:
                    print(f"note: {note}")
    except Exception as exc:  # the user's protocol failed: show why, exit non-zero
        print(f"\nprotocol failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not getattr(exc, "__module__", "").startswith("benchbus_protocol"):
            traceback.print_exc()
        code = 1
    finally:
        if args.keep_logs:
            print(f"logs: {stack.data_dir / 'logs'}")
        stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
