"""Opentrons protocols on benchbus: simulation time against Opentrons' own, and a real run's bus overhead.

- sim: `benchbus-simulate` against `opentrons_simulate` on the same protocols (tests/protocol/protocols), each a
  fresh process as a user runs it, alternated (and who goes first alternates) so machine noise lands on both;
  sim_ratio = ours / theirs (median of the repeats, summed over the protocols). Target <= 1.0.
- execute: the same protocols run through benchbus-execute's session (RobotSession.run_file, in this process)
  against the emulated stack (broker, Smoothieboard emulator, smoothie-bridge, gpio-service, calibration-store,
  each its own process), with the emulator's motion sped up `--speedup` times. The floor is the motion itself:
  the seconds the emulator's axes spent moving (its `moved_s`), plus the protocol's own delays. Everything else
  (bus round trips, the bridge, 115200-baud serial, Opentrons' planning) is overhead. execute_overhead_ratio is
  (motion at the robot's real speed + overhead) / motion at real speed, i.e. the wall time a real robot would
  take against its bare motion time; the ratio at the bench's speedup and the overhead per bridge command are
  printed too. Pauses are resumed at once.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = sorted((ROOT / "tests" / "protocol" / "protocols").glob("*.py"))
LABWARE = ROOT / "tests" / "protocol" / "labware"
BIN = Path(sys.executable).parent
DELAY = re.compile(r"Delaying for (\d+) minutes and ([\d.]+) seconds")


def simulate_seconds(tool: str, protocol: Path, labware_args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / tool), "-L", str(LABWARE), *labware_args, str(protocol)], capture_output=True,
                          text=True, timeout=300)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{tool} {protocol.name} failed:\n{done.stderr[-1500:]}")
    return took


def bench_simulate(repeats: int) -> dict:
    from benchbus_shared_data import labware_dirs

    theirs_labware = [arg for folder in labware_dirs() for arg in ("-L", str(folder))]
    rows = {}
    for protocol in PROTOCOLS:
        ours: list[float] = []
        theirs: list[float] = []
        for repeat in range(repeats):  # who goes first alternates: the second of a pair finds warmer caches
            pair = [(ours, "benchbus-simulate", []), (theirs, "opentrons_simulate", theirs_labware)]
            for samples, tool, labware in pair if repeat % 2 == 0 else pair[::-1]:
                samples.append(simulate_seconds(tool, protocol, labware))
        rows[protocol.stem] = (statistics.median(ours), statistics.median(theirs))
        print(f"simulate {protocol.stem:34s} benchbus {rows[protocol.stem][0]:6.2f} s   "
              f"opentrons {rows[protocol.stem][1]:6.2f} s", flush=True)
    total_ours = sum(o for o, _t in rows.values())
    total_theirs = sum(t for _o, t in rows.values())
    return {"ours_s": total_ours, "theirs_s": total_theirs, "ratio": total_ours / total_theirs}


def bench_execute(speedup: float) -> dict:
    from benchbus_ot2 import Robot, RobotSession
    from benchbus_ot2.stack import EmulatedStack

    wall = floor = motion = 0.0
    commands = 0
    with EmulatedStack(speedup=speedup) as stack:
        for protocol in PROTOCOLS:
            lines: list[str] = []

            def keep(message: dict, lines: list[str] = lines) -> None:
                if message["$"] == "before":
                    lines.append(message["payload"]["text"])
            robot = Robot(stack.device, stack.broker)
            robot.on_pause = lambda _text, robot=robot: robot.request_resume()  # the operator is quick
            with RobotSession(robot) as session:
                before = stack.emulator_state()
                started = time.perf_counter()
                session.run_file(protocol, emit_runlog=keep, custom_labware_paths=[str(LABWARE)])
                took = time.perf_counter() - started
                after = stack.emulator_state()
            moved = after["moved_s"] - before["moved_s"]
            delays = sum(int(m) * 60 + float(s) for text in lines for m, s in DELAY.findall(text))
            sent = after["lines"] - before["lines"]
            wall, floor, motion, commands = wall + took, floor + moved + delays, motion + moved, commands + sent
            print(f"execute  {protocol.stem:34s} wall {took:6.2f} s   motion {moved:6.2f} s   delays "
                  f"{delays:4.1f} s   {sent} G-code lines", flush=True)
    overhead = wall - floor
    real_motion = motion * speedup
    return {"wall_s": wall, "floor_s": floor, "motion_s": motion, "overhead_s": overhead,
            "ratio_at_speedup": wall / floor, "ratio_real_speed": (real_motion + overhead) / real_motion,
            "overhead_per_line_ms": overhead / commands * 1000, "lines": commands}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one simulation per protocol and tool, motion at 20x")
    parser.add_argument("--repeats", type=int, default=2, help="simulation repeats per protocol and tool")
    parser.add_argument("--speedup", type=float, default=10.0, help="the emulator's motion speedup for execute")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    speedup = 20.0 if args.quick else args.speedup
    sim = bench_simulate(repeats)
    print(f"\nsimulate: benchbus-simulate {sim['ours_s']:.2f} s, opentrons_simulate {sim['theirs_s']:.2f} s, "
          f"ratio {sim['ratio']:.3f}\n", flush=True)
    run = bench_execute(speedup)
    print(f"\nexecute: wall {run['wall_s']:.2f} s against a floor of {run['floor_s']:.2f} s "
          f"(motion at {speedup:g}x + delays); ratio {run['ratio_at_speedup']:.2f} at {speedup:g}x, "
          f"{run['ratio_real_speed']:.3f} at the robot's real speed; overhead "
          f"{run['overhead_per_line_ms']:.1f} ms per G-code line ({run['lines']} lines)")
    print(json.dumps({"sim_ratio": round(sim["ratio"], 3), "execute_overhead_ratio": round(run["ratio_real_speed"], 3),
                      "execute_overhead_ratio_at_speedup": round(run["ratio_at_speedup"], 3),
                      "speedup": speedup, "overhead_per_gcode_line_ms": round(run["overhead_per_line_ms"], 2),
                      "protocols": [p.stem for p in PROTOCOLS]}))


if __name__ == "__main__":
    main()
