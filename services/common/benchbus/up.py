"""`benchbus up`: the whole system on emulated hardware, on a laptop or in CI.

Services and emulators plug in through the entry-point group `benchbus.up`: each installed service package names
a function `units(ctx: UpContext) -> list[Unit]` (for example `samd = "benchbus_samd.up:units"`). Emulators (units
with a `port`) start first; then the services, all at once; `up` waits until every service's `$state` is ready.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from argparse import Namespace
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchbus_schemas import topics

from . import stack
from .stack import state_table
from .client import BusClient
from .settings import BrokerSettings
from .snapshot import gateway_port
from .testing.broker import MosquittoProcess, free_port, wait_for_port

STATE_FILE = stack.STATE_FILE
# A unit that dies is started again after 1 s, then 2, 4, ... up to 60 s while it keeps dying; one that ran for
# STABLE_S before dying starts the count again (systemd's Restart= with a start limit does the same on the Pi).
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
STABLE_S = 30.0


@dataclass
class Unit:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    segment: str | None = None  # a bus service: `up` waits for its $state to be ready
    port: int | None = None  # an emulator: `up` waits until it listens on this TCP port
    url: str | None = None  # shown in the table (the dashboard, a Socket.IO endpoint)
    control: str | None = None  # an emulator's test/fault-injection HTTP interface (listed in up.json)


@dataclass
class UpContext:
    broker: BrokerSettings
    device: str
    data_dir: Path
    http_port: int
    taken: set[int] = field(default_factory=set)

    def free_port(self) -> int:
        while True:
            port = free_port()
            if port not in self.taken:
                self.taken.add(port)
                return port

    def service_dir(self, segment: str) -> Path:
        path = self.data_dir / segment
        path.mkdir(parents=True, exist_ok=True)
        return path


def discover(ctx: UpContext, only: set[str] | None = None) -> list[Unit]:
    units: list[Unit] = []
    for entry in sorted(metadata.entry_points(group="benchbus.up"), key=lambda e: e.name):
        if only and entry.name not in only:
            continue
        units.extend(entry.load()(ctx))
    return units


def restart_delay(failures: int) -> float:
    """Seconds before restarting a unit that died `failures` times in a row (1, 2, 4, ... capped at 60)."""
    return min(RESTART_MAX_S, RESTART_FIRST_S * 2.0 ** max(0, failures - 1))


@dataclass
class _Restarts:
    started_at: float = 0.0
    failures: int = 0
    due_at: float | None = None  # when the dead unit is started again


class Supervisor:
    """Starts units, restarts one that dies with a growing back-off (as systemd or compose would), stops them all in
    reverse order."""

    def __init__(self, ctx: UpContext, units: list[Unit], log_dir: Path):
        self.ctx = ctx
        self.units = units
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, _Restarts] = {u.name: _Restarts() for u in units}
        self.stopping = False

    def _env(self, unit: Unit) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "BENCHBUS_DEVICE": self.ctx.device,
            "BENCHBUS_BROKER_HOST": self.ctx.broker.host,
            "BENCHBUS_BROKER_PORT": str(self.ctx.broker.port),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(unit.env)
        return env

    def launch(self, unit: Unit) -> None:
        with open(self.log_dir / f"{unit.name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.processes[unit.name] = subprocess.Popen(unit.argv, env=self._env(unit), stdout=log,
                                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.restarts[unit.name].started_at = time.monotonic()

    def start_all(self, timeout: float) -> None:
        for unit in self.units:
            if unit.port is not None:
                self.launch(unit)
        for unit in self.units:
            if unit.port is not None:
                wait_for_port("127.0.0.1", unit.port, timeout, self.processes[unit.name])
        for unit in self.units:
            if unit.port is None:
                self.launch(unit)

    def check_children(self) -> None:
        """One round: note units that died (and when to restart them), restart those whose time has come."""
        now = time.monotonic()
        for unit in self.units:
            process, restarts = self.processes.get(unit.name), self.restarts[unit.name]
            if process is None or self.stopping:
                continue
            if restarts.due_at is None and process.poll() is not None:
                ran_s = now - restarts.started_at
                restarts.failures = 1 if ran_s >= STABLE_S else restarts.failures + 1
                delay = restart_delay(restarts.failures)
                restarts.due_at = now + delay
                log = self.log_dir / f"{unit.name}.log"
                print(f"benchbus up: {unit.name} exited with {process.returncode}; restarting it in {delay:.0f} s "
                      f"(it ran {ran_s:.1f} s; log: {log})", file=sys.stderr, flush=True)
            elif restarts.due_at is not None and now >= restarts.due_at:
                restarts.due_at = None
                self.launch(unit)

    def watch_children(self, interval_s: float = 0.2) -> None:
        while not self.stopping:
            self.check_children()
            time.sleep(interval_s)

    def stop_all(self, timeout: float = 10.0) -> None:
        self.stopping = True
        ordered = [u for u in reversed(self.units) if u.port is None] + [u for u in reversed(self.units) if u.port]
        for unit in ordered:
            process = self.processes.get(unit.name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for unit in ordered:
            process = self.processes.get(unit.name)
            if process is None:
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(client: BusClient, segments: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    everyone_ready = threading.Event()

    def seen(topic_name: str, data: Any, _message: Any) -> None:
        parsed = topics.parse(topic_name)
        if parsed and isinstance(data, dict):
            states[parsed[1]] = data
            if all(states.get(s, {}).get("state") == "ready" for s in segments):
                everyone_ready.set()

    handle = client.subscribe(f"benchbus/{client.device}/+/$state", seen)
    if not segments:
        everyone_ready.set()
    everyone_ready.wait(timeout)
    client.unsubscribe(f"benchbus/{client.device}/+/$state", handle)
    return states


def unit_record(unit: Unit) -> dict[str, Any]:
    """What up.json says of a unit, so tests and tools find an emulator's port and control interface."""
    return {"name": unit.name, "segment": unit.segment, "port": unit.port, "url": unit.url, "control": unit.control}


def port_in_use(port: int) -> bool:
    """True when a listener holds the TCP port on any address (TIME_WAIT leftovers do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def busy_port_message(port: int) -> str:
    holder = next((s for s in stack.running_stacks() if s.get("http_port") == port), None)
    who = f"by the `benchbus up` in {holder.get('data_dir')} (pid {holder.get('pid')})" if holder else \
        "by another program"
    return (f"benchbus up: port {port} (the gateway's --http-port) is already in use {who}. Stop it, or choose "
            f"another port: benchbus up --http-port PORT")


def _record(ctx: UpContext, units: list[Unit]) -> dict[str, Any]:
    """up.json: where the stack is (the CLI finds it from any folder through the per-user copy)."""
    return {"broker": f"{ctx.broker.host}:{ctx.broker.port}", "device": ctx.device, "pid": os.getpid(),
            "http_port": ctx.http_port, "data_dir": str(ctx.data_dir), "units": [unit_record(u) for u in units]}


def _start_broker(args: Namespace) -> tuple[BrokerSettings, MosquittoProcess | None]:
    if args.broker:
        host, _, port = args.broker.partition(":")
        return BrokerSettings(host=host, port=int(port or 1883)), None
    broker_process = MosquittoProcess()
    broker_process.start()
    return broker_process.settings(), broker_process


def _report(states: dict[str, dict[str, Any]], segments: list[str], ctx: UpContext, units: list[Unit], log_dir: Path,
            elapsed: float, timeout: float) -> None:
    not_ready = [s for s in segments if states.get(s, {}).get("state") != "ready"]
    print(state_table(states, segments))
    print(f"\nbroker      mqtt://{ctx.broker.host}:{ctx.broker.port}   device {ctx.device}")
    for unit in units:
        if unit.url:
            print(f"{unit.name:<11} {unit.url}")
    print(f"logs        {log_dir}")
    if not_ready:
        print(f"\nnot ready after {timeout:.0f} s: {', '.join(not_ready)} (see their logs)", file=sys.stderr)
    else:
        print(f"\nall {len(segments)} services ready in {elapsed:.2f} s. Ctrl-C stops everything. "
              f"`benchbus status` (from any folder) shows them.")
    sys.stdout.flush()


def _show_bound_port(ctx: UpContext, units: list[Unit]) -> None:
    """--http-port 0: the gateway bound a free port itself (no window for another process to take it); its URLs
    and up.json name that port, read from the gateway's retained state."""
    port = gateway_port(ctx.broker, ctx.device)
    if port:
        ctx.http_port = port
        for unit in units:
            unit.url = unit.url.replace(":0/", f":{port}/") if unit.url else unit.url


def listens_on(units: list[Unit], port: int) -> bool:
    """Whether a unit was given the port (a plug-in passes the port it is to listen on in its argv or environment)."""
    text = str(port)
    return any(text in unit.argv or text in unit.env.values() for unit in units)


def up(args: Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    log_dir = data_dir / "logs"
    started_at = time.monotonic()
    # The plug-ins only pick ports and folders; the broker is known before any unit starts.
    ctx = UpContext(broker=BrokerSettings(), device=args.device, data_dir=data_dir, http_port=args.http_port)
    ctx.taken.add(args.http_port)
    units = discover(ctx, set(args.only.split(",")) if args.only else None)
    if listens_on(units, args.http_port) and port_in_use(args.http_port):
        print(busy_port_message(args.http_port), file=sys.stderr)
        return 1
    log_dir.mkdir(parents=True, exist_ok=True)
    broker, broker_process = _start_broker(args)
    ctx.broker = broker
    supervisor = Supervisor(ctx, units, log_dir)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    segments = [u.segment for u in units if u.segment]
    code = 0
    try:
        supervisor.start_all(args.timeout)
        with BusClient(ctx.device, broker, name=f"up-{os.getpid()}") as client:
            states = wait_ready(client, segments, args.timeout)
        if ctx.http_port == 0:
            _show_bound_port(ctx, units)
        record = _record(ctx, units)
        (data_dir / STATE_FILE).write_text(json.dumps(record))
        stack.register(record)
        _report(states, segments, ctx, units, log_dir, time.monotonic() - started_at, args.timeout)
        threading.Thread(target=supervisor.watch_children, daemon=True).start()
        stop.wait()
    except Exception as exc:
        print(f"benchbus up: {exc}", file=sys.stderr)
        code = 1
    finally:
        print("stopping...", file=sys.stderr)
        stack.unregister(os.getpid())
        supervisor.stop_all()
        if broker_process is not None:
            broker_process.close()
        (data_dir / STATE_FILE).unlink(missing_ok=True)
    return code
