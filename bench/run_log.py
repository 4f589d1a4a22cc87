"""What a protocol step costs the runner to keep, at the first steps of a run and after thousands.

ours:  RunManager's step report (a step begins, then ends), as the run's process sends them: the command made,
       its log line appended and fsync'd, the bus told (here: a publish that does nothing). Timed over the first
       --window steps and the last --window of --steps.
floor: the durable minimum for one step: appending the same line to a file and fsync'ing it, twice (begin, end).
A log re-saved whole at each step grows its cost with the run; an appended one does not, so late/early stays ~1.
The last line is one JSON object.

    .venv/bin/python bench/run_log.py [--steps 3000] [--window 200]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchbus.settings import BrokerSettings
from benchbus_runner.runs import RunManager, append_line
from benchbus_runner.settings import RunnerSettings


def report(index: int, phase: str) -> dict:
    return {"type": "step", "phase": phase, "id": f"cmd-{index}", "command_type": "aspirate",
            "text": f"Aspirating 50.0 uL from A{index % 12 + 1} of Plate on 1 at 150.0 uL/sec"}


def ours(folder: Path, steps: int) -> list[float]:
    manager = RunManager(RunnerSettings(data_dir=folder), BrokerSettings(), "bench", None,  # type: ignore[arg-type]
                         lambda *_message: None)
    run_id = "bench-run"
    run: dict[str, Any] = {"id": run_id, "protocol_id": None, "status": "running", "created_at": "", "started_at": "",
           "completed_at": None, "current_step": None, "steps_done": 0, "steps_total": steps, "progress": None,
           "paused_reason": None, "errors": [], "commands": [], "live": False}
    manager.runs[run_id] = run
    manager._save(run)
    timings = []
    for index in range(steps):
        started = time.perf_counter()
        manager._on_report(run_id, report(index, "running"))
        manager._on_report(run_id, report(index, "succeeded"))
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def floor(folder: Path, steps: int) -> list[float]:
    path = folder / "floor.jsonl"
    timings = []
    for index in range(steps):
        line = {"id": f"cmd-{index}", "status": "running", "text": report(index, "running")["text"]}
        started = time.perf_counter()
        append_line(path, line)
        append_line(path, {**line, "status": "succeeded"})
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--window", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-log-") as folder:
        mine = ours(Path(folder) / "ours", args.steps)
        bare = floor(Path(folder), args.steps)
    w = args.window
    figures = {"steps": args.steps,
               "early_step_ms": statistics.median(mine[:w]), "late_step_ms": statistics.median(mine[-w:]),
               "floor_early_step_ms": statistics.median(bare[:w]), "floor_late_step_ms": statistics.median(bare[-w:])}
    figures["late_over_early"] = figures["late_step_ms"] / figures["early_step_ms"]
    figures["ratio_late"] = figures["late_step_ms"] / figures["floor_late_step_ms"]
    print(f"ours:  a step (begin + end) at the first {w}: {figures['early_step_ms']:.3f} ms, at the last {w} of "
          f"{args.steps}: {figures['late_step_ms']:.3f} ms (late/early {figures['late_over_early']:.2f})")
    print(f"floor: two fsync'd appends: {figures['floor_early_step_ms']:.3f} ms early, "
          f"{figures['floor_late_step_ms']:.3f} ms late; ours/floor late {figures['ratio_late']:.2f}x")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
