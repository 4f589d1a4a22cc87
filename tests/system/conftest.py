"""The whole system as a user starts it: the installed `benchbus up` console script, as a subprocess.

`UpStack` runs `benchbus up` in a folder of its own, waits for its "ready" line, reads `<data-dir>/up.json` (the
broker, the device, every unit with its emulator port and control interface) and gives the test a bus client and
the emulators' JSON control interfaces. `stop()` sends SIGINT, as Ctrl-C in a terminal does.

`clean_venv` is a virtual environment holding only what the packages of this repository declare (installed
editable, as `./dev` does, without requirements-dev.txt): a service that imports something it does not declare
fails there. It is kept in pytest's cache and rebuilt when a pyproject.toml or the interpreter changes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from benchbus.client import BusClient
from benchbus.settings import BrokerSettings

REPO = Path(__file__).resolve().parents[2]
BENCHBUS = Path(sys.executable).with_name("benchbus")  # the console script of the virtual environment
READY_MARK = "services ready in"
START_TIMEOUT_S = 60.0


def user_environment() -> dict[str, str]:
    """The environment of a user's shell: nothing of the test session's benchbus settings leaks in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("BENCHBUS_", "PYTEST", "NOTIFY_SOCKET"))}


class OutputReader:
    """Collects a pipe's lines on a thread, so the child never blocks on a full pipe and tests can wait for text."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # the end of the stream
            self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, mark: str, timeout: float, process: subprocess.Popen) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(mark in line for line in self.lines):
                if process.poll() is not None or time.monotonic() > deadline:
                    return False
                self._changed.wait(0.2)
        return True


def http_json(url: str, body: dict | None = None, timeout: float = 5.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def port_is_bound(port: int) -> bool:
    """True when something still holds the TCP port (a listener on 127.0.0.1 or on every address)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def repository_packages() -> list[Path]:
    """Every package `./dev` installs: the contract, the runtime, then each service folder."""
    services = [p.parent for p in sorted(REPO.glob("services/*/pyproject.toml")) if p.parent.name != "common"]
    return [REPO / "bus-schemas", REPO / "shared-data", REPO / "services" / "common", *services]


def build_clean_venv(cache: Path) -> Path:
    packages = repository_packages()
    stamp = hashlib.sha256(sys.version.encode() + b"".join((p / "pyproject.toml").read_bytes() for p in packages))
    venv = cache / stamp.hexdigest()[:16]
    complete = venv / ".benchbus-complete"
    if complete.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)  # a build that was interrupted
    for old in cache.iterdir():  # environments of earlier pyproject.toml versions
        shutil.rmtree(old, ignore_errors=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    editable = [arg for p in packages for arg in ("-e", str(p))]
    for argv in ([sys.executable, "-m", "venv", str(venv)], pip + ["setuptools>=68"],
                 pip + ["--no-build-isolation", *editable]):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"building the clean virtual environment failed: {' '.join(argv)}\n{done.stdout}{done.stderr}")
    complete.write_text(stamp.hexdigest())
    return venv


@pytest.fixture(scope="session")
def clean_venv(request) -> Path:
    return build_clean_venv(request.config.cache.mkdir("benchbus-clean-venv"))


class UpStack:
    def __init__(self, workdir: Path, broker: str | None = None, extra_args: list[str] | None = None,
                 benchbus: Path = BENCHBUS):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.http_port = 0  # the gateway binds a free port itself (a port picked here could be taken before it binds)
        self.argv = [str(benchbus), "up", "--data-dir", str(self.data_dir), "--http-port", "0"]
        if broker:
            self.argv += ["--broker", broker]
        self.argv += extra_args or []
        self.process: subprocess.Popen | None = None
        self.info: dict = {}
        self.bus: BusClient | None = None

    # -- starting and stopping -------------------------------------------------------------------------------------

    def start(self) -> UpStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.argv, cwd=self.workdir, env=user_environment(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self.out = OutputReader(self.process.stdout)
        self.err = OutputReader(self.process.stderr)
        if not self.out.wait_for(READY_MARK, START_TIMEOUT_S, self.process):
            self.kill()
            pytest.fail(f"`benchbus up` did not report ready:\n{self.out.text()}\n{self.err.text()}")
        self.info = json.loads((self.data_dir / "up.json").read_text())
        self.http_port = self.info["http_port"]
        host, _, port = self.info["broker"].partition(":")
        broker = BrokerSettings(host=host, port=int(port), reconnect_min_s=0.05, reconnect_max_s=0.5)
        self.bus = BusClient(self.info["device"], broker, name=f"system-test-{uuid.uuid4().hex[:6]}")
        self.bus.start()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C: SIGINT to `benchbus up` only (its children run in sessions of their own, as under a terminal)."""
        if self.bus is not None:
            self.bus.close()
            self.bus = None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """Last resort after a failure: nothing of the stack may outlive the test."""
        if self.bus is not None:
            self.bus.close()
            self.bus = None
        if self.process is None or self.process.poll() is not None:
            return
        for child in self.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.process.kill()
        self.process.wait(10)

    # -- what the stack is made of ---------------------------------------------------------------------------------

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def unit(self, name: str) -> dict:
        return next(u for u in self.info["units"] if u["name"] == name)

    def control(self, emulator: str) -> str:
        return self.unit(emulator)["control"]

    def segments(self) -> list[str]:
        return [u["segment"] for u in self.info["units"] if u["segment"]]

    def ports(self) -> dict[str, int]:
        """Every TCP port the stack listens on: broker, emulators and their control interfaces, HTTP servers."""
        ports = {"broker": int(self.info["broker"].rpartition(":")[2]), "gateway http": self.info["http_port"]}
        for unit in self.info["units"]:
            if unit["port"]:
                ports[f"{unit['name']} port"] = unit["port"]
            for key in ("control", "url"):
                if unit[key] and urlsplit(unit[key].split()[0]).port:
                    ports[f"{unit['name']} {key}"] = urlsplit(unit[key].split()[0]).port
        return ports

    def states(self, timeout: float = 5.0) -> dict[str, dict]:
        """The retained $state of every service of the device."""
        seen: dict[str, dict] = {}
        done = threading.Event()
        segments = set(self.segments())

        def collect(topic: str, data, _message) -> None:
            seen[topic.split("/")[2]] = data
            if segments <= set(seen):
                done.set()
        topic_filter = f"benchbus/{self.info['device']}/+/$state"
        handle = self.bus.subscribe(topic_filter, collect)
        done.wait(timeout)
        self.bus.unsubscribe(topic_filter, handle)
        return seen

    def wait_all_ready(self, timeout: float = 60.0) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(s, {}).get("state") == "ready" for s in self.segments()):
                return states
            if time.monotonic() > deadline:
                return states
            time.sleep(0.3)
