"""An emulated day of on-device experiments: the experiment service (its own process) on growing cultures.

    .venv/bin/python bench/experiment.py [--hours 24] [--quick]

The rig: the SAMD21 emulator with a culture in every vial (benchbus_samd.culture, a day in a minute at time scale
1440), the real samd-bridge, calibration-store (the shipped example calibrations, which the emulator inverts) and
broadcast-scheduler (broadcasts back to back at the fast test line) in this process; the experiment service in its
own process, running 4 turbidostat vials (0.2-0.4), 4 chemostat vials (0.2/h) and 4 growth curves.

ours:  in_band_fraction: the turbidostat vials' true OD (the model's, sampled every 20 ms) inside the band, after
       first reaching it; dilution_rate_error: the chemostat vials' delivered dilution rate (the model's influx volume
       over the vial volume and the time) against the target; decision_latency_p99_ms: from the broadcast (its
       timestamp) to the first byte of the pump frame carrying the decision on the wire; cpu_s_per_day: the
       experiment process's CPU seconds per emulated day.
floor: the same latency for a bare client that sends a fixed pump command on every broadcast it receives (no
       decision, no state file), and the CPU of a bare process that only receives and decodes the same broadcasts.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import psutil

from benchbus import BusClient, Service
from benchbus.testing.bench import percentile
from benchbus.testing.broker import MosquittoProcess
from benchbus_calibration.service import CalibrationService
from benchbus_calibration.settings import CalibrationSettings
from benchbus_samd.culture import CultureParams, Rig, RigCalibration
from benchbus_samd.emulator.line import SamdEmulator
from benchbus_samd.emulator.wire import LineTiming
from benchbus_samd.service import SamdService
from benchbus_samd.settings import SamdSettings
from benchbus_scheduler.service import SchedulerService
from benchbus_scheduler.settings import SHARED, SchedulerSettings

TIME_SCALE = 1440.0
FAST: dict[str, Any] = dict(baudrate=230400, reply_delay_s=0.002, hold_s=0.002)
LOWER, UPPER, RATE = 0.2, 0.4, 0.2
TURBIDO, CHEMO, GROWTH = range(0, 4), range(4, 8), range(8, 12)
FLOOR_VIAL = 15

BARE_SUBSCRIBER = """
import json, sys, time
import paho.mqtt.client as mqtt
host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
client.on_message = lambda _c, _u, m: json.loads(m.payload)
client.connect(host, port)
client.loop_forever()
"""


def definition() -> dict:
    def group(name, vials, control):
        return {"name": name, "vials": list(vials), "control": control, "temp_c": 30.0, "stir": 8}
    return {"name": "day", "growth_window_h": 2.0, "groups": [
        group("turbido", TURBIDO, {"mode": "turbidostat", "lower_od": LOWER, "upper_od": UPPER,
                                   "od_values_to_average": 1}),
        group("chemo", CHEMO, {"mode": "chemostat", "dilution_rate_per_h": RATE, "od_values_to_average": 1}),
        group("growth", GROWTH, {"mode": "growth_curve"})]}


class Stack:
    def __init__(self, folder: Path):
        self.broker = MosquittoProcess()
        self.broker.start()
        self.device = f"bench{os.getpid()}"
        calibrations = json.loads(resources.files("benchbus_calibration")
                                  .joinpath("data/example-calibrations.json").read_text())
        rig = Rig(RigCalibration.from_evolver(calibrations), CultureParams(mu_max_per_h=0.3), temp_tau_s=300.0)
        self.rig = rig  # the emulator's cultures
        self.emu = SamdEmulator(LineTiming(stir_hold_s=0.004, **FAST), rig=rig, time_scale=TIME_SCALE)
        self.emu.start_tcp(0)
        common = dict(device=self.device, broker=self.broker.settings(), log_level="warning")
        conf = folder / "conf.yml"
        conf.write_text((SHARED / "conf.yml").read_text().replace("broadcast_timing: 20", "broadcast_timing: 0.05"))
        self.services = []
        makers: list[Callable[[], Service[Any]]] = [
            lambda: SamdService(SamdSettings(port=self.emu.url, hold_overrides={"stir": 0.004}, **FAST, **common)),
            lambda: CalibrationService(CalibrationSettings(data_dir=folder / "calibration", seed_example=True,
                                                           **common)),
            lambda: SchedulerService(SchedulerSettings(conf_path=conf, **common)),
        ]
        for make in makers:
            service = make()
            service.serve_in_background()
            self.services.append(service)
        env = dict(os.environ, BENCHBUS_DEVICE=self.device, BENCHBUS_BROKER_HOST=self.broker.host,
                   BENCHBUS_BROKER_PORT=str(self.broker.port), BENCHBUS_LOG_LEVEL="warning",
                   BENCHBUS_EXPERIMENT_DATA_DIR=str(folder / "experiment"),
                   BENCHBUS_EXPERIMENT_TIME_SCALE=str(TIME_SCALE))
        self.experiment = subprocess.Popen([sys.executable, "-m", "benchbus_experiment"], env=env)
        self.bare = subprocess.Popen([sys.executable, "-c", BARE_SUBSCRIBER, self.broker.host, str(self.broker.port),
                                      f"benchbus/{self.device}/scheduler/event/broadcast"])
        self.bus = BusClient(self.device, self.broker.settings(), name="bench")
        self.bus.start()
        self.bus.wait_for(f"benchbus/{self.device}/experiment/$state", lambda _t, d: d.get("state") == "ready", 30)
        self.samples: list[tuple[float, float, list[dict]]] = []

    def sample_until(self, model_h: float) -> None:
        while self.emu.model_time() / 3600 < model_h:
            self.samples.append((time.time(), self.emu.model_time(), self.emu.culture()))
            time.sleep(0.02)

    def cpu_s(self, process: subprocess.Popen) -> float:
        times = psutil.Process(process.pid).cpu_times()
        return times.user + times.system

    def close(self) -> None:
        self.bus.close()
        for process in (self.experiment, self.bare):
            process.terminate()
            process.wait(10)
        for service in reversed(self.services):
            service.stop()
        self.emu.close()
        self.broker.close()


def in_band(samples, vial: int) -> float:
    ods = [vials[vial]["od"] for _, _, vials in samples]
    first = next((i for i, od in enumerate(ods) if od >= LOWER), len(ods))
    after = ods[first:] or [0.0]
    return sum(LOWER <= od <= UPPER for od in after) / len(after)


def dilution_rate(samples, vial: int, from_h: float) -> float:
    start = next(s for s in samples if s[1] / 3600 >= from_h)
    end = samples[-1]
    return (end[2][vial]["influx_ml"] - start[2][vial]["influx_ml"]) / (25.0 * (end[1] - start[1]) / 3600)


def pump_frame_start(emu: SamdEmulator, vial: int, spec: str, after: float) -> float | None:
    for frame in emu.frames("pump", "i"):
        if frame.t >= after and len(frame.values) > vial and frame.values[vial] == spec:
            return frame.t - len(frame.text) * emu.timing.char_s
    return None


def decision_latencies(stack: Stack, decisions: list[dict], wall_minus_mono: float) -> list[float]:
    out = []
    for decision in decisions:
        if decision["action"] != "dilute" or decision.get("broadcast_timestamp") is None:
            continue
        stamp = decision["broadcast_timestamp"]
        start = pump_frame_start(stack.emu, decision["vial"], f"{decision['influx_s']:.2f}", stamp - wall_minus_mono)
        if start is not None:
            out.append((start + wall_minus_mono - stamp) * 1000)
    return out


def floor_latencies(stack: Stack, count: int, wall_minus_mono: float) -> list[float]:
    """A bare client: on each broadcast, at once, a fixed pump command for a vial no experiment owns."""
    out: list[float] = []
    done = threading.Event()
    pending: list[tuple[float, str]] = []

    def on_broadcast(_topic, data, _message) -> None:
        if len(pending) >= count:
            done.set()
            return
        spec = f"0.{len(pending) % 90 + 10:02d}"
        pump = ["--"] * 48
        pump[FLOOR_VIAL] = spec
        pending.append((data["timestamp"], spec))
        threading.Thread(target=stack.bus.call, args=("scheduler", "command", {"param": "pump", "value": pump,
                                                                                 "immediate": True}),
                         daemon=True).start()

    handle = stack.bus.subscribe(stack.bus.topic("scheduler", "event", "broadcast"), on_broadcast)
    done.wait(120)
    stack.bus.unsubscribe(stack.bus.topic("scheduler", "event", "broadcast"), handle)
    time.sleep(0.5)
    for stamp, spec in pending:
        start = pump_frame_start(stack.emu, FLOOR_VIAL, spec, stamp - wall_minus_mono)
        if start is not None:
            out.append((start + wall_minus_mono - stamp) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="emulated hours")
    parser.add_argument("--quick", action="store_true", help="6 emulated hours")
    args = parser.parse_args()
    hours = 6.0 if args.quick else args.hours
    wall_minus_mono = time.time() - time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        stack = Stack(Path(folder))
        try:
            decisions: list[dict] = []
            stack.bus.subscribe(stack.bus.topic("experiment", "event", "decision"),
                                lambda _t, d, _m: decisions.append(d))
            for vial in TURBIDO:
                stack.rig.vials[vial].od = 0.15
            broadcasts: list[float] = []
            stack.bus.subscribe(stack.bus.topic("scheduler", "event", "broadcast"),
                                lambda _t, d, _m: broadcasts.append(d["timestamp"]))
            cpu_before = stack.cpu_s(stack.experiment), stack.cpu_s(stack.bare)
            begin_h = stack.emu.model_time() / 3600
            stack.bus.call("experiment", "start", {"definition": definition()}, timeout=10)
            stack.sample_until(begin_h + hours)
            cpu_after = stack.cpu_s(stack.experiment), stack.cpu_s(stack.bare)
            cycles = len(broadcasts)
            stack.bus.call("experiment", "stop", {"name": "day"}, timeout=10)
            ours_latency = decision_latencies(stack, list(decisions), wall_minus_mono)
            floor_latency = floor_latencies(stack, 60, wall_minus_mono)
            overflowed = [v for v, s in enumerate(stack.emu.culture()[:12]) if s["overflowed"]]
        finally:
            stack.close()
    band = statistics.mean(in_band(stack.samples, v) for v in TURBIDO)
    rates = [dilution_rate(stack.samples, v, begin_h + 1.0) for v in CHEMO]
    rate_error = max(abs(r - RATE) / RATE for r in rates)
    per_day = 24.0 / hours
    cpu = (cpu_after[0] - cpu_before[0]) * per_day
    cpu_floor = (cpu_after[1] - cpu_before[1]) * per_day
    p99, floor_p99 = percentile(ours_latency, 0.99), percentile(floor_latency, 0.99)
    print(f"{hours:g} emulated hours, 4 vials per mode, time scale {TIME_SCALE:g}")
    print(f"turbidostat in band {band:.4f} (per vial {[round(in_band(stack.samples, v), 4) for v in TURBIDO]})")
    print(f"chemostat dilution rates {[round(r, 4) for r in rates]} /h, target {RATE}: worst error {rate_error:.4f}")
    print(f"decision latency (broadcast -> pump frame on the wire): p50 {statistics.median(ours_latency):.1f} ms, "
          f"p99 {p99:.1f} ms over {len(ours_latency)} doses; floor (bare client) p50 "
          f"{statistics.median(floor_latency):.1f} ms, p99 {floor_p99:.1f} ms; ratio p99 {p99 / floor_p99:.2f}")
    per_broadcast_ms = (cpu_after[0] - cpu_before[0]) / max(cycles, 1) * 1000
    print(f"experiment CPU {cpu:.2f} s per emulated day ({cycles} broadcasts, {per_broadcast_ms:.2f} ms each: "
          f"{per_broadcast_ms * 4.32:.1f} s per real day at 20 s broadcasts); floor (bare subscriber) "
          f"{cpu_floor:.2f} s; ratio {cpu / max(cpu_floor, 1e-3):.2f}; overflowed vials: {overflowed or 'none'}")
    print(json.dumps({"in_band_fraction": round(band, 4), "dilution_rate_error": round(rate_error, 4),
                      "decision_latency_p99_ms": round(p99, 2), "cpu_s_per_day": round(cpu, 2),
                      "floor_latency_p99_ms": round(floor_p99, 2), "latency_ratio": round(p99 / floor_p99, 3),
                      "floor_cpu_s_per_day": round(cpu_floor, 2), "hours": hours, "time_scale": TIME_SCALE,
                      "doses": len(ours_latency), "overflowed": len(overflowed), "broadcasts": cycles,
                      "cpu_ms_per_broadcast": round(per_broadcast_ms, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
