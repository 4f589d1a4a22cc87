"""The default eVOLVER cycle through samd-bridge, beside its physical limit on the 9600 baud line.

ours:  the five recurring params of the default conf (od_90, od_135, od_led, temp, stir), one after the other, each
       a `samd/cmd/transact` through Mosquitto to the bridge (its own process, as on the rig), which talks to the
       SAMD21 line emulator over socket:// at the real 9600 baud with the real turnarounds (100 ms; stir 300 ms).
floor: the bytes those transactions put on the wire (frame, reply, `a`) at the baud rate, plus each board's
       turnaround delays (before and after its reply), computed from the same emulator's settings and wire log.
The original server takes ~1.2-1.4 s per param (readline waits out its 1 s timeout): ~6-7 s for this cycle.
Then the boards release the line 20 ms after their nominal hold (emulator knob `late_release_s`) while every cycle
changes stir, temp and od_led and runs a pump: `applied_fraction` is the share of those commands the boards applied.
Prints each cycle, the mean, the ratio; the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchbus import BusClient
from benchbus.testing.broker import MosquittoProcess
from benchbus_samd.emulator.boards import DEFAULT_PARAMS
from benchbus_samd.emulator.line import SamdEmulator
from benchbus_samd.emulator.wire import LineTiming

RECURRING = ["od_90", "od_135", "od_led", "temp", "stir"]
LATE_RELEASE_S = 0.020


def start_bridge(broker, device: str, url: str, timing: LineTiming) -> subprocess.Popen:
    env = dict(os.environ, BENCHBUS_DEVICE=device, BENCHBUS_BROKER_HOST=broker.host,
               BENCHBUS_BROKER_PORT=str(broker.port), BENCHBUS_SAMD_PORT=url,
               BENCHBUS_SAMD_BAUDRATE=str(timing.baudrate), BENCHBUS_SAMD_REPLY_DELAY_S=str(timing.reply_delay_s),
               BENCHBUS_SAMD_HOLD_S=str(timing.hold_s),
               BENCHBUS_SAMD_HOLD_OVERRIDES=json.dumps({"stir": timing.stir_hold_s}), BENCHBUS_LOG_LEVEL="warning")
    return subprocess.Popen([sys.executable, "-m", "benchbus_samd"], env=env)


def one_cycle(client: BusClient, overrides: dict[str, list[str]] | None = None,
              emulator: SamdEmulator | None = None) -> tuple[int, int]:
    """One default cycle (values from `overrides` where given); with `emulator`: (commands applied, commands)."""
    applied = 0
    for param in RECURRING:
        values, fields_out, fields_in = DEFAULT_PARAMS[param]
        values = (overrides or {}).get(param, values)
        client.call("samd", "transact", {"param": param, "type": "r", "values": values, "fields_out": fields_out,
                                         "fields_in": fields_in}, timeout=10)
        if emulator is not None and emulator.applied(param) == [str(v) for v in values]:
            applied += 1
    return applied, len(RECURRING)


def late_release_cycles(client: BusClient, emulator: SamdEmulator, cycles: int) -> tuple[float, float, float]:
    """Boards release the line 20 ms late; every cycle changes stir, temp and od_led (so every `a` matters), and
    a pump run is commanded. Returns (applied fraction, mean cycle s, mean limit s)."""
    emulator.late_release_s = LATE_RELEASE_S
    applied = total = 0
    measured: list[float] = []
    limits: list[float] = []
    for cycle in range(cycles):
        level = str(8 + cycle % 2)
        overrides = {"stir": [level] * 16, "temp": [str(4000 - cycle % 2)] * 16,
                     "od_led": [str(4095 - cycle % 2)] * 16}
        first_event = len(emulator.wire)
        started = time.perf_counter()
        done, count = one_cycle(client, overrides, emulator)
        measured.append(time.perf_counter() - started)
        limits.append(emulator.physical_limit_s(emulator.wire[first_event:]))
        applied, total = applied + done, total + count
        pump = ["--"] * 48
        pump[cycle % 16] = f"{1 + cycle % 3}"
        client.call("samd", "transact", {"param": "pump", "type": "i", "values": pump, "fields_out": 49,
                                         "fields_in": 49}, timeout=10)
        total += 1
        applied += emulator.applied("pump") == pump
    emulator.late_release_s = 0.0
    return applied / total, statistics.mean(measured), statistics.mean(limits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--late-cycles", type=int, default=4, help="cycles with boards releasing 20 ms late")
    args = parser.parse_args()
    timing = LineTiming(baudrate=args.baud)
    broker = MosquittoProcess()
    broker.start()
    emulator = SamdEmulator(timing)
    port = emulator.start_tcp(0)
    device = f"bench{os.getpid()}"
    bridge = start_bridge(broker.settings(), device, f"socket://127.0.0.1:{port}", timing)
    measured: list[float] = []
    limits: list[float] = []
    try:
        with BusClient(device, broker.settings(), name="bench-samd") as client:
            client.wait_for(f"benchbus/{device}/samd/$state", lambda _t, d: d.get("state") == "ready", 20)
            one_cycle(client)  # warm-up: connections, imports, the first OD sweep
            for cycle in range(args.cycles):
                first_event = len(emulator.wire)
                started = time.perf_counter()
                one_cycle(client)
                measured.append(time.perf_counter() - started)
                limits.append(emulator.physical_limit_s(emulator.wire[first_event:]))
                print(f"cycle {cycle + 1}: measured {measured[-1]:.4f} s, limit {limits[-1]:.4f} s, "
                      f"ratio {measured[-1] / limits[-1]:.4f}")
            applied_fraction, late_s, late_limit_s = late_release_cycles(client, emulator, args.late_cycles)
            print(f"boards releasing {LATE_RELEASE_S * 1000:.0f} ms late, changed values every cycle: applied "
                  f"{applied_fraction:.4f} of commands; cycle {late_s:.4f} s, limit {late_limit_s:.4f} s")
    finally:
        bridge.terminate()
        bridge.wait(10)
        emulator.close()
        broker.close()
    measured_s = statistics.mean(measured)
    limit_s = statistics.mean(limits)
    ratio = measured_s / limit_s
    print(f"\n{len(RECURRING)} params at {timing.baudrate} baud: measured {measured_s:.4f} s per cycle, "
          f"physical limit {limit_s:.4f} s, ratio {ratio:.4f} (target <= 1.10; the original ~6-7 s)")
    print(json.dumps({"measured_s": round(measured_s, 4), "limit_s": round(limit_s, 4), "ratio": round(ratio, 4),
                      "cycles": len(measured), "baud": timing.baudrate,
                      "worst_ratio": round(max(m / limit for m, limit in zip(measured, limits, strict=True)), 4),
                      "applied_fraction": round(applied_fraction, 4), "late_release_ms": LATE_RELEASE_S * 1000,
                      "late_cycle_ratio": round(late_s / late_limit_s, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
