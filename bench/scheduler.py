"""Benchmark of the broadcast-scheduler with the real samd-bridge and the emulated boards at real timing (9600 baud).

    .venv/bin/python bench/scheduler.py [--cycles 3] [--idle-s 20] [--samples 30]

Prints, in one run:
- the default conf's cycle duration against the physical limit of the same transactions (bytes on the wire at the
  baud rate plus the boards' turnaround, from the emulator's wire log); target <= 1.10x;
- the latency from an immediate command (the bus call leaving this process) to its first byte on the serial line,
  p50/p99, idle (between cycles) and busy (cycles back to back); targets: p99 <= 20 ms idle, <= one transaction
  busy (`cmd_latency_p50_ms` is the idle p50; the busy p50 has a key of its own);
- the CPU time the scheduler and the samd-bridge processes use per minute while idle between cycles (target < 0.6 s;
  the original server busy-waits, i.e. 60 s per minute).
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchbus.testing.bench import percentile
from benchbus import BusClient
from benchbus.testing.broker import MosquittoProcess
from benchbus_samd.emulator.line import SamdEmulator
from benchbus_samd.emulator.wire import LineTiming
from benchbus_scheduler.settings import SHARED

ORIGINAL_IDLE_CPU_S_PER_MIN = 60.0  # evolver.py's main loop is `while True` without a sleep (reference A0)


def conf_text(timing: float) -> str:
    return (SHARED / "conf.yml").read_text().replace("broadcast_timing: 20", f"broadcast_timing: {timing}")


class Rig:
    """Mosquitto, the emulator (in this process, so its wire log is readable), the bridge and the scheduler."""

    def __init__(self, workdir: Path):
        self.broker = MosquittoProcess()
        self.broker.start()
        self.device = f"bench{os.getpid()}"
        self.emu = SamdEmulator(LineTiming())  # the real line: 9600 baud, 100 ms turnaround, stir holds 300 ms
        self.emu.start_tcp(0)
        env = dict(os.environ, BENCHBUS_DEVICE=self.device, BENCHBUS_BROKER_HOST=self.broker.host,
                   BENCHBUS_BROKER_PORT=str(self.broker.port), BENCHBUS_LOG_LEVEL="warning")
        conf_path = workdir / "conf.yml"
        conf_path.write_text(conf_text(600))
        self.processes = {
            "samd-bridge": subprocess.Popen([sys.executable, "-m", "benchbus_samd"],
                                            env=dict(env, BENCHBUS_SAMD_PORT=self.emu.url)),
            "scheduler": subprocess.Popen([sys.executable, "-m", "benchbus_scheduler.service"],
                                          env=dict(env, BENCHBUS_SCHEDULER_CONF_PATH=str(conf_path),
                                                   BENCHBUS_SCHEDULER_START_PAUSED="true")),
        }
        self.bus = BusClient(self.device, self.broker.settings(), name="bench")
        self.bus.start()
        for segment in ("samd", "scheduler"):
            self.bus.wait_for(f"benchbus/{self.device}/{segment}/$state",
                              lambda _t, d: isinstance(d, dict) and d.get("state") == "ready", timeout=30)
        self.broadcasts: list[dict] = []
        self.results: dict[str, dict] = {}
        self.changed = threading.Condition()
        self.bus.subscribe(self.bus.topic("scheduler", "event", "broadcast"), self._on_broadcast)
        self.bus.subscribe(self.bus.topic("scheduler", "event", "command_result"), self._on_result)

    def _on_broadcast(self, _topic, data, _message) -> None:
        with self.changed:
            self.broadcasts.append(data)
            self.changed.notify_all()

    def _on_result(self, _topic, data, _message) -> None:
        with self.changed:
            self.results[data["command_id"]] = data
            self.changed.notify_all()

    def next_broadcast(self, after: int, timeout: float = 60) -> dict:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.broadcasts) > after, timeout):
                raise TimeoutError("no broadcast")
            return self.broadcasts[after]

    def result(self, command_id: str, timeout: float = 30) -> dict:
        with self.changed:
            if not self.changed.wait_for(lambda: command_id in self.results, timeout):
                raise TimeoutError("no command_result")
            return self.results[command_id]

    def cpu_s(self) -> dict[str, float]:
        out = {}
        for name, process in self.processes.items():
            times = psutil.Process(process.pid).cpu_times()
            out[name] = times.user + times.system
        return out

    def close(self) -> None:
        self.bus.close()
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.wait(10)
        self.emu.close()
        self.broker.close()


def first_byte_of(emu: SamdEmulator, values: list[str], since: float) -> float | None:
    """The wire time of the first byte of the `temp` immediate frame carrying `values`."""
    for frame in emu.frames("temp", "i"):
        if frame.t >= since and frame.values == values:
            return frame.t - len(frame.text) * emu.timing.char_s
    return None


def measure_cycles(rig: Rig, cycles: int) -> tuple[list[float], list[float], list[float]]:
    rig.bus.call("scheduler", "load_conf", {"text": conf_text(600)})
    durations, limits, transactions = [], [], []
    for _ in range(cycles):
        wire_from = len(rig.emu.wire)
        seen = len(rig.broadcasts)
        rig.bus.call("scheduler", "resume")  # starts one cycle at once; the next is 600 s away
        report = rig.next_broadcast(seen)
        rig.bus.call("scheduler", "pause")
        events = rig.emu.wire[wire_from:]
        durations.append(report["cycle_s"])
        limits.append(rig.emu.physical_limit_s(events))
        for param in ("od_90", "od_135", "od_led", "temp", "stir"):
            transactions.append(rig.emu.physical_limit_s([e for e in events if e.param == param or
                                                          (e.source == "host" and e.data.startswith(param.encode()))]))
    return durations, limits, transactions


def command_latency(rig: Rig, tag: int) -> float:
    values = [str(2000 + tag % 2000)] * 16
    before = time.monotonic()
    reply = rig.bus.call("scheduler", "command", {"param": "temp", "value": values, "immediate": True})
    result = rig.result(reply["command_id"])
    if result["outcome"] != "applied":
        raise RuntimeError(f"command failed: {result}")
    at = first_byte_of(rig.emu, values, before)
    if at is None:
        raise RuntimeError("the command's frame was not seen on the line")
    return (at - before) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as workdir:
        rig = Rig(Path(workdir))
        try:
            durations, limits, transactions = measure_cycles(rig, args.cycles)
            cycle_s, limit_s = statistics.median(durations), statistics.median(limits)
            transaction_s = max(transactions)
            print(f"default cycle: ours {cycle_s:.3f} s, physical limit {limit_s:.3f} s, "
                  f"ratio {cycle_s / limit_s:.3f} (target <= 1.10); longest transaction {transaction_s:.3f} s")

            # idle between cycles: one cycle, then nothing for 600 s
            seen = len(rig.broadcasts)
            rig.bus.call("scheduler", "resume")
            rig.next_broadcast(seen)
            time.sleep(1.0)
            cpu_before, wall_before = rig.cpu_s(), time.monotonic()
            time.sleep(args.idle_s)
            cpu_after, wall = rig.cpu_s(), time.monotonic() - wall_before
            per_min = {name: (cpu_after[name] - cpu_before[name]) * 60 / wall for name in cpu_after}
            idle_cpu = sum(per_min.values())
            print(f"idle CPU per minute: scheduler {per_min['scheduler']:.3f} s, samd-bridge "
                  f"{per_min['samd-bridge']:.3f} s, together {idle_cpu:.3f} s (target < 0.6); the original "
                  f"{ORIGINAL_IDLE_CPU_S_PER_MIN:.0f} s, ratio {idle_cpu / ORIGINAL_IDLE_CPU_S_PER_MIN:.4f}")

            idle = [command_latency(rig, i) for i in range(args.samples)]
            rig.bus.call("scheduler", "pause")

            # busy: cycles back to back, commands at random moments inside them
            rig.bus.call("scheduler", "load_conf", {"text": conf_text(0.01)})
            rig.bus.call("scheduler", "resume")
            rng = random.Random(7)
            busy = []
            for i in range(args.samples):
                time.sleep(rng.uniform(0.0, 1.5))
                busy.append(command_latency(rig, 1000 + i))
            rig.bus.call("scheduler", "pause")
        finally:
            rig.close()
    p50 = percentile(idle, 0.5)
    p99_idle, p99_busy = percentile(idle, 0.99), percentile(busy, 0.99)
    print(f"immediate command -> first byte, idle: p50 {p50:.1f} ms, p99 {p99_idle:.1f} ms "
          f"(target <= 20 ms)")
    print(f"immediate command -> first byte, busy: p50 {percentile(busy, 0.5):.1f} ms, p99 {p99_busy:.1f} ms "
          f"(target <= one transaction, {transaction_s * 1000:.0f} ms; ratio {p99_busy / (transaction_s * 1000):.2f})")
    print(json.dumps({
        "cycle_s": round(cycle_s, 4), "limit_s": round(limit_s, 4), "cycle_ratio": round(cycle_s / limit_s, 4),
        "transaction_s": round(transaction_s, 4),
        "cmd_latency_p50_ms": round(p50, 2),
        "cmd_latency_p50_ms_busy": round(percentile(busy, 0.5), 2),
        "cmd_latency_p99_ms_idle": round(p99_idle, 2), "cmd_latency_p99_ms_busy": round(p99_busy, 2),
        "idle_cpu_s_per_min": round(idle_cpu, 4), "idle_cpu_s_per_min_scheduler": round(per_min["scheduler"], 4),
        "idle_cpu_s_per_min_samd": round(per_min["samd-bridge"], 4),
        "original_idle_cpu_s_per_min": ORIGINAL_IDLE_CPU_S_PER_MIN,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
