"""A run's log is appended to a step at a time, read back in order, and survives a kill mid-line."""
from __future__ import annotations

import json

from benchbus.settings import BrokerSettings
from benchbus_runner.runs import RunManager, append_line, read_command_log
from benchbus_runner.settings import RunnerSettings


def step(command_id: str, status: str, text: str) -> dict:
    return {"id": command_id, "key": f"step-{command_id}", "commandType": "custom", "status": status,
            "params": {"text": text}}


def test_the_log_keeps_each_commands_last_line_in_the_order_they_began(tmp_path):
    path = tmp_path / "run.commands.jsonl"
    append_line(path, step("a", "running", "Picking up tip"))
    append_line(path, step("b", "running", "Aspirating"))  # a live run may start one before the other ends
    append_line(path, step("a", "succeeded", "Picking up tip"))
    append_line(path, step("b", "failed", "Aspirating"))
    with open(path, "a") as handle:
        handle.write('{"id": "c", "status": "runn')  # the runner was killed while it wrote this line
    commands = read_command_log(path)
    assert [(c["id"], c["status"]) for c in commands] == [("a", "succeeded"), ("b", "failed")]


def test_a_run_kept_by_an_older_runner_keeps_its_inline_log(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    old = {"id": "r1", "status": "succeeded", "errors": [], "commands": [step("a", "succeeded", "Homing")]}
    (runs / "r1.json").write_text(json.dumps(old))
    published: list = []
    manager = RunManager(RunnerSettings(data_dir=tmp_path), BrokerSettings(), "dev", None,  # type: ignore[arg-type]
                         lambda *message: published.append(message))
    manager.recover()
    assert [c["params"]["text"] for c in manager.commands("r1")] == ["Homing"]
    manager._save(manager.runs["r1"])  # the run's file no longer holds the log; the log file does
    assert "commands" not in json.loads((runs / "r1.json").read_text())
    assert [c["id"] for c in read_command_log(runs / "r1.commands.jsonl")] == ["a"]
