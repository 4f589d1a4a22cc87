"""pytest fixtures for every benchbus test (registered as a pytest11 plugin by the benchbus package).

- `broker`: a real Mosquitto 2 (one per test session/xdist worker); a test may stop() / restart() it; after each
  test it runs again and the test's retained messages are cleared.
- `device`: a device id unique to the test, so tests never see each other's topics.
- `bus`: a BusClient connected to `broker` for `device`.
- `make_settings(Model, **fields)`: a service's settings pointed at the test broker and device.
- `serve(ServiceClass, settings)`: the service `ServiceClass(settings)` running in-process until the test ends.
- `spawn(argv, segment)`: a service (or any program) as a subprocess with the broker and device in its
  environment; waits for its `$state` to be ready; killed at the end.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from benchbus_schemas import topics

from ..client import BusClient
from ..settings import ServiceSettings
from .broker import Broker, RetainedTracker, start_broker

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@pytest.fixture(scope="session")
def _broker_session() -> Iterator[tuple[Broker, RetainedTracker]]:
    broker = start_broker()
    tracker = RetainedTracker(broker)
    yield broker, tracker
    tracker.close()
    broker.close()


@pytest.fixture
def broker(_broker_session: tuple[Broker, RetainedTracker]) -> Iterator[Broker]:
    broker, tracker = _broker_session
    broker.start()
    yield broker
    if not broker.running:
        broker.start()
    tracker.clear()


@pytest.fixture
def device() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bus(broker: Broker, device: str) -> Iterator[BusClient]:
    client = BusClient(device, broker.settings(), name=f"test-{uuid.uuid4().hex[:8]}")
    client.start()
    yield client
    client.close()


@pytest.fixture
def make_settings(broker: Broker, device: str) -> Callable[..., ServiceSettings]:
    def make(model: type[SettingsT], **fields: Any) -> SettingsT:
        fields.setdefault("device", device)
        fields.setdefault("broker", broker.settings())
        fields.setdefault("shutdown_grace_s", 2.0)
        return model(**fields)
    return make


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Any], Any], ServiceSettings], Any]]:
    running: list[Any] = []

    def start(make: Callable[[Any], Any], settings: ServiceSettings) -> Any:
        """`make` is a Service class (or a partial of one carrying extra arguments, such as a test's GPIO chip)."""
        service = make(settings)
        service.serve_in_background()
        running.append(service)
        return service

    yield start
    for service in reversed(running):
        service.stop()


def service_env(broker: Broker, device: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "BENCHBUS_DEVICE": device,
        "BENCHBUS_BROKER_HOST": broker.host,
        "BENCHBUS_BROKER_PORT": str(broker.port),
        "BENCHBUS_BROKER_RECONNECT_MIN_S": "0.05",
        "BENCHBUS_BROKER_RECONNECT_MAX_S": "0.5",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


class Spawned:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path):
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def spawn(broker: Broker, device: str, bus: BusClient, tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    spawned: list[Spawned] = []

    def start(argv: list[str], segment: str | None = None, env: dict[str, str] | None = None,
              ready_timeout: float = 20.0) -> Spawned:
        if argv and argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        log_path = tmp_path / f"spawn-{len(spawned)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(argv, env=service_env(broker, device, env), stdout=log_file,
                                       stderr=subprocess.STDOUT)
        handle = Spawned(process, log_path)
        spawned.append(handle)
        if segment is not None:
            try:
                bus.wait_for(topics.lifecycle_topic(device, segment),
                             lambda _t, d: (isinstance(d, dict) and d.get("state") == "ready"
                                            and d.get("pid") == process.pid),
                             ready_timeout)
            except Exception:
                raise AssertionError(f"{argv} never became ready; its log:\n{handle.log()}") from None
        return handle

    yield start
    for handle in spawned:
        handle.terminate()
