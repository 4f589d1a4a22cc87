"""The traps a newcomer fell into: imports shadowed by a folder, a busy port, a unit restarted every second."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from benchbus import up as up_module
from benchbus.settings import BrokerSettings
from benchbus.up import Supervisor, Unit, UpContext, restart_delay

REPO = Path(__file__).resolve().parents[2]


def repository_packages() -> list[str]:
    """The top-level import names of every distribution of this repository installed here."""
    names = []
    for dist in metadata.distributions():
        if (dist.metadata["Name"] or "").startswith("benchbus"):
            top = dist.read_text("top_level.txt")
            names += top.split() if top else [dist.metadata["Name"].replace("-", "_")]
    return sorted(set(names))


def test_imports_work_from_a_folder_holding_a_clone_named_like_the_package(tmp_path):
    """A notebook started next to a clone called `benchbus` (a namespace folder on sys.path[0]) still gets ours."""
    packages = repository_packages()
    assert {"benchbus", "benchbus_schemas"} <= set(packages)
    for name in packages:
        (tmp_path / name / "services").mkdir(parents=True)  # what a clone's folder looks like to Python
    code = ("import importlib, sys\n"
            "from benchbus import BusClient, Service\n"
            f"for name in {packages!r}:\n"
            "    module = importlib.import_module(name)\n"
            "    assert module.__file__, name + ' is the namespace folder ' + str(module.__path__)\n"
            "    print(name, module.__file__)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        assert Path(line.split()[1]).is_relative_to(REPO), line


@pytest.fixture
def busy_port():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


def test_up_refuses_a_busy_gateway_port_at_once_naming_it(busy_port, tmp_path):
    benchbus = Path(sys.executable).with_name("benchbus")
    run = subprocess.run([str(benchbus), "up", "--http-port", str(busy_port), "--data-dir", str(tmp_path / "data")],
                         capture_output=True, text=True, timeout=20, cwd=tmp_path)  # at once: not after 30 s
    assert run.returncode != 0
    assert f"port {busy_port}" in run.stderr and "--http-port" in run.stderr
    assert not (tmp_path / "data" / "logs").exists()  # no unit (and no broker) was started


def test_up_without_the_gateway_does_not_care_about_its_port(busy_port, broker, device, tmp_path):
    """`up --only samd` starts nothing on the http port, so a busy one is no reason to refuse."""
    benchbus = Path(sys.executable).with_name("benchbus")
    up = subprocess.Popen([str(benchbus), "up", "--only", "samd", "--http-port", str(busy_port), "--broker",
                           f"{broker.host}:{broker.port}", "--device", device, "--data-dir", str(tmp_path / "data")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    ready_line = ""
    try:
        for line in up.stdout:  # ends at EOF if `up` exits
            if "ready in" in line or "not ready" in line:
                ready_line = line
                break
    finally:
        os.killpg(up.pid, signal.SIGINT)
        _out, err = up.communicate(timeout=30)
    assert "all 1 services ready" in ready_line, err
    assert up.returncode == 0, err


def test_restart_delay_grows_and_is_capped():
    delays = [restart_delay(n) for n in range(1, 10)]
    assert delays[:4] == [1, 2, 4, 8]
    assert delays == sorted(delays) and max(delays) == up_module.RESTART_MAX_S


def test_a_unit_that_keeps_dying_is_restarted_later_each_time(tmp_path):
    ctx = UpContext(broker=BrokerSettings(), device="backoff", data_dir=tmp_path, http_port=0)
    unit = Unit("dies", [sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = Supervisor(ctx, [unit], tmp_path)
    supervisor.launch(unit)
    delays = []
    for _attempt in range(3):
        supervisor.processes["dies"].wait(20)
        supervisor.check_children()  # notices the death, schedules the restart
        restarts = supervisor.restarts["dies"]
        delays.append(restarts.due_at - time.monotonic())
        restarts.due_at = time.monotonic()  # the test does not wait the back-off out
        first = supervisor.processes["dies"]
        supervisor.check_children()
        assert supervisor.processes["dies"] is not first  # restarted
    supervisor.stop_all()
    assert delays[0] <= 1.0 < delays[1] <= 2.0 < delays[2] <= 4.0
