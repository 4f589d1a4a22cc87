"""Which broker the command line uses: the running `benchbus up` from any folder, or it says which one it took."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchbus import stack


@pytest.fixture
def registry_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "stacks"
    monkeypatch.setenv("BENCHBUS_STACKS_DIR", str(folder))
    for name in ("BENCHBUS_BROKER_HOST", "BENCHBUS_BROKER_PORT", "BENCHBUS_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(stack, "INSTALLED_CONFIG_DIR", tmp_path / "no-etc-benchbus")
    return folder


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def record(pid: int, broker: str, data_dir: str, device: str = "rig") -> dict:
    return {"broker": broker, "device": device, "pid": pid, "http_port": 8081, "data_dir": data_dir, "units": []}


def test_the_one_running_stack_is_found_from_any_folder(registry_dir, tmp_path):
    stack.register(record(os.getpid(), "127.0.0.1:41000", "/somewhere/.benchbus"))
    target = stack.choose(cwd=tmp_path)
    assert (target.broker, target.device, target.note) == ("127.0.0.1:41000", "rig", None)
    assert "/somewhere/.benchbus" in target.source


def test_the_stack_of_this_folder_or_one_above_wins(registry_dir, tmp_path):
    stack.register(record(os.getpid(), "127.0.0.1:41000", "/elsewhere/.benchbus"))
    (tmp_path / "repo" / ".benchbus").mkdir(parents=True)
    (tmp_path / "repo" / ".benchbus" / "up.json").write_text(json.dumps(record(os.getpid(), "127.0.0.1:42000", "x")))
    (tmp_path / "repo" / "services" / "deep").mkdir(parents=True)
    target = stack.choose(cwd=tmp_path / "repo" / "services" / "deep")
    assert target.broker == "127.0.0.1:42000"
    assert target.source == str(tmp_path / "repo" / ".benchbus" / "up.json")


def test_a_dead_stack_is_forgotten_and_the_default_is_said(registry_dir, tmp_path):
    path = stack.register(record(dead_pid(), "127.0.0.1:41000", "/gone/.benchbus"))
    target = stack.choose(cwd=tmp_path)
    assert target.broker == stack.DEFAULT_BROKER and target.source == "default"
    assert target.note is not None and stack.DEFAULT_BROKER in target.note and "--broker" in target.note
    assert not path.exists()


def test_several_stacks_take_the_newest_and_name_the_others(registry_dir, tmp_path):
    stack.register(record(os.getpid(), "127.0.0.1:41000", "/first/.benchbus"))
    older = registry_dir / f"{os.getpid()}.json"
    os.utime(older, (1, 1))
    stack.register({**record(os.getppid(), "127.0.0.1:42000", "/second/.benchbus")})
    target = stack.choose(cwd=tmp_path)
    assert target.broker == "127.0.0.1:42000"
    assert "127.0.0.1:41000" in target.note and "/first/.benchbus" in target.note


def test_command_line_and_environment_come_first(registry_dir, tmp_path, monkeypatch):
    stack.register(record(os.getpid(), "127.0.0.1:41000", "/somewhere/.benchbus"))
    assert stack.choose("10.0.0.9:1884", "dev9", cwd=tmp_path) == stack.Target("10.0.0.9:1884", "dev9", "--broker")
    monkeypatch.setenv("BENCHBUS_BROKER_HOST", "10.0.0.8")
    assert stack.choose(cwd=tmp_path).broker == "10.0.0.8:1883"


def test_an_installed_instrument_uses_its_own_broker_quietly(registry_dir, tmp_path, monkeypatch):
    (tmp_path / "etc-benchbus").mkdir()
    monkeypatch.setattr(stack, "INSTALLED_CONFIG_DIR", tmp_path / "etc-benchbus")
    target = stack.choose(cwd=tmp_path)
    assert (target.broker, target.note) == (stack.DEFAULT_BROKER, None)


def test_status_from_another_folder_finds_the_running_stack(spawn, broker, device, cli, stacks_dir, tmp_path):
    """The CLI as a user runs it, in a folder that has nothing to do with the stack."""
    spawn(["python", "-m", "benchbus.demo"], segment="demo")
    stacks_dir.mkdir(parents=True)
    (stacks_dir / f"{os.getpid()}.json").write_text(json.dumps(record(os.getpid(), f"{broker.host}:{broker.port}",
                                                                      "/the/stack/.benchbus", device)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = cli("status", bus=False, cwd=elsewhere)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "demo" in run.stdout and "/the/stack/.benchbus" in run.stdout and run.stderr == ""


@pytest.mark.skipif(stack.INSTALLED_CONFIG_DIR.is_dir(), reason="an installed instrument uses localhost quietly")
def test_without_a_stack_the_cli_says_which_broker_it_uses(cli):
    run = cli("status", bus=False, env={"BENCHBUS_DEVICE": "nobody-here"})
    assert "no running `benchbus up` found; using the broker at localhost:1883" in run.stderr
