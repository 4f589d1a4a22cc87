"""`benchbus up` end to end, as a user runs it: from a clean virtual environment (only what the packages declare),
in an empty folder; every service ready and the dashboard served; one eVOLVER cycle and a DPU command that reaches
the board; one robot home + move through the bus; then Ctrl-C (SIGINT) and nothing left behind: no process, no
bound port.

One test, in steps (each a function below), because the steps share one running stack and the last one stops it.
"""
from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from .conftest import UpStack, http_json, port_is_bound

RECURRING_WITH_DATA = ("od_90", "od_135", "temp")  # the boards that answer a cycle with readings (`b`)


@pytest.mark.slow  # the first run builds the clean virtual environment (~30 s); later runs reuse it
def test_benchbus_up_end_to_end(tmp_path, clean_venv):
    stack = UpStack(tmp_path / "user-folder", benchbus=clean_venv / "bin" / "benchbus").start()
    try:
        up_reports_every_service_ready_and_where_the_dashboard_is(stack)
        one_evolver_cycle_reaches_every_board_and_is_broadcast(stack)
        a_dpu_command_reaches_the_samd_board(stack)
        the_robot_homes_and_moves_through_the_bus(stack)
        sigint_stops_every_process_and_frees_every_port(stack)
    finally:
        stack.kill()  # only if a step failed before the stop: nothing may outlive the test


def up_reports_every_service_ready_and_where_the_dashboard_is(stack):
    printed = stack.out.text()
    assert f"all {len(stack.segments())} services ready" in printed
    assert f"http://localhost:{stack.http_port}/" in printed
    assert set(stack.segments()) >= {"samd", "smoothie", "gpio", "calibration", "scheduler", "update", "gateway"}
    states = stack.states()
    assert {s: states[s]["state"] for s in stack.segments()} == {s: "ready" for s in stack.segments()}
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.http_port}/", timeout=10) as page:
        assert page.status == 200
        assert b"<html" in page.read().lower()


def recurring_params(stack: UpStack) -> list[str]:
    config = stack.bus.call("scheduler", "get_config", {}, timeout=10)["config"]
    return [name for name, p in config["experimental_params"].items() if p.get("recurring")]


def one_evolver_cycle_reaches_every_board_and_is_broadcast(stack):
    recurring = recurring_params(stack)
    broadcasts: list[dict] = []
    arrived = threading.Event()

    def on_broadcast(_topic, data, _message) -> None:
        broadcasts.append(data)
        if all(data["status"].get(p) == "ok" for p in recurring):
            arrived.set()

    stack.bus.subscribe(stack.bus.topic("scheduler", "event", "broadcast"), on_broadcast)
    # the first cycle ran at start, maybe before we listened: pause + resume starts the next one at once
    stack.bus.call("scheduler", "pause", {}, timeout=10)
    stack.bus.call("scheduler", "resume", {}, timeout=10)
    assert arrived.wait(60), f"no broadcast with every param ok: {broadcasts}"
    cycle = next(b for b in broadcasts if all(b["status"].get(p) == "ok" for p in recurring))
    for param in RECURRING_WITH_DATA:  # 16 vials' readings, as numbers in text (the original's format)
        assert len(cycle["data"][param]) == 16 and all(v.lstrip("-").isdigit() for v in cycle["data"][param])
    assert cycle["errors"] == {}

    emulator = http_json(f"{stack.control('samd-emulator')}/state")
    for param in recurring:  # each board took the cycle's `r` frame and its `a`
        assert emulator["boards"][param]["acks"] >= 1, param


def a_dpu_command_reaches_the_samd_board(stack):
    values = ["13", "0", "7", "8", "8", "8", "8", "8", "8", "8", "8", "8", "8", "8", "8", "11"]
    results: list[dict] = []
    done = threading.Event()

    def on_result(_topic, data, _message) -> None:
        results.append(data)
        done.set()

    stack.bus.subscribe(stack.bus.topic("scheduler", "event", "command_result"), on_result)
    accepted = stack.bus.call("scheduler", "command", {"param": "stir", "value": values, "immediate": True},
                              timeout=10)
    assert accepted["applies"] == "next_boundary" and accepted["value"] == values
    deadline = time.monotonic() + 60
    while not any(r["command_id"] == accepted["command_id"] for r in results) and time.monotonic() < deadline:
        done.wait(1)
        done.clear()
    result = next(r for r in results if r["command_id"] == accepted["command_id"])
    assert result["outcome"] == "applied", result
    assert result["values"] == values
    board = http_json(f"{stack.control('samd-emulator')}/state")["boards"]["stir"]
    assert board["applied"] == values  # the board itself runs the new stir rates


def the_robot_homes_and_moves_through_the_bus(stack):
    home = stack.bus.call("smoothie", "home", {"axes": ["Z"]}, timeout=60)
    assert home["Z"] == pytest.approx(218.0)
    moved = stack.bus.call("smoothie", "move", {"target": {"Z": 150.0}}, timeout=60)
    assert moved["Z"] == pytest.approx(150.0)
    _topic, position = stack.bus.wait_for(stack.bus.topic("smoothie", "state", "position"),
                                          lambda _t, data: data and data.get("Z") == pytest.approx(150.0), timeout=10)
    assert position["Z"] == pytest.approx(150.0)
    board = http_json(f"{stack.control('smoothie-emulator')}/state")
    assert board["homed"]["Z"] is True
    assert board["position"]["Z"] == pytest.approx(150.0, abs=0.01)
    log = http_json(f"{stack.control('smoothie-emulator')}/lines?since=0")["lines"]
    motion = [line for line in log if "G28.2" in line or "G0 " in line]  # a line may carry several codes
    assert any("G28.2 Z" in line for line in motion), motion
    assert any("Z150" in line.split("G0 ", 1)[-1].replace(" ", "") for line in motion if "G0 " in line), motion


def still_running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.NoSuchProcess:
        return f"{process.pid} (gone)"


def sigint_stops_every_process_and_frees_every_port(stack):
    children = stack.children()
    venv_bin = Path(stack.argv[0]).parent
    outside = [describe(c) for c in children if "mosquitto" not in c.name() and Path(c.cmdline()[0]).parent != venv_bin]
    assert outside == [], f"ran outside the clean virtual environment {venv_bin}"
    names = sorted(" ".join(c.cmdline()[1:3]) for c in children)
    assert len(children) == len(stack.info["units"]) + 1, names  # every unit, and the broker `up` started
    ports = stack.ports()
    assert all(port_is_bound(p) for p in ports.values()), {k: p for k, p in ports.items() if not port_is_bound(p)}

    assert stack.stop(60) == 0

    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert [describe(p) for p in alive if still_running(p)] == []
    assert {name: port for name, port in ports.items() if port_is_bound(port)} == {}
    assert not (stack.data_dir / "up.json").exists()
