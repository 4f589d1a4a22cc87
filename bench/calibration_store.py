"""calibration-store: what durability costs and what it buys, beside the original eVOLVER server's way of writing.

    .venv/bin/python bench/calibration_store.py [--kills 200] [--writes 200]

Floor: the original server's write (`open(path, 'w')` + `json.dump`: truncate, then write, no fsync, no rename).
Ours: benchbus_calibration.store (temp file, fsync, rename, directory fsync, history version).
Both write the same calibrations.json (the test rig's file) and both face the same kill -9 storm; after each kill
the file is read as the DPU or the next start would read it. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = ROOT / "services" / "calibration-store"
RIG_FILE = ROOT / "tests" / "calibration" / "data" / "rig-calibrations.json"

OURS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from benchbus_calibration.store import VersionedFile

def parse(data):
    value = json.loads(data)
    if not isinstance(value, list):
        raise ValueError("not a list")
    return value

store = VersionedFile(sys.argv[2], parse, keep=20)
store.open(b"[]")
print("ready", flush=True)
seq = int(sys.argv[3])
while True:
    store.write(json.dumps(store.value + [{"name": f"w{seq}", "calibrationType": "od"}]).encode())
    print(seq, flush=True)
    seq += 1
"""

FLOOR = r"""
import json, sys
path = sys.argv[2]
try:
    with open(path) as f:
        calibrations = json.load(f)
except FileNotFoundError:
    calibrations = []
except ValueError:
    calibrations = []  # the original server cannot read it either; every calibration event fails until hand-edited
print("ready", flush=True)
seq = int(sys.argv[3])
while True:
    calibrations.append({"name": f"w{seq}", "calibrationType": "od"})
    with open(path, "w") as f:
        json.dump(calibrations, f)
    print(seq, flush=True)
    seq += 1
"""


def storm(program: str, path: Path, kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    acknowledged: set[int] = set()
    unreadable = lost = 0
    next_seq = 0
    path.write_text(RIG_FILE.read_text())
    for _ in range(kills):
        writer = subprocess.Popen([sys.executable, "-S", "-c", program, str(PACKAGE_ROOT), str(path), str(next_seq)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert writer.stdout is not None  # stdout=PIPE
        writer.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.015))
        writer.kill()
        out, _ = writer.communicate()
        acknowledged.update(int(x) for x in out.split() if x.isdigit())
        next_seq = max(acknowledged, default=next_seq) + 1000
        try:
            names = {c["name"] for c in json.loads(path.read_bytes())}
        except ValueError:
            unreadable += 1
            names = set()
        lost = len({f"w{n}" for n in acknowledged} - names)
    return {"unreadable_after_kill": unreadable, "acknowledged": len(acknowledged), "lost_acknowledged": lost}


def write_latency(program_writes, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        program_writes(i)
    return (time.perf_counter() - started) / n * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(PACKAGE_ROOT))
    from benchbus_calibration.evolver import EvolverCalibrations
    from benchbus_schemas.calibration import Calibration

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "ours").mkdir()
        (directory / "ours" / "calibrations.json").write_text(RIG_FILE.read_text())
        ours = EvolverCalibrations(directory / "ours" / "calibrations.json", keep=20)
        ours.open()
        rig = json.loads(RIG_FILE.read_text())
        floor_path = directory / "floor.json"

        def our_write(i: int) -> None:
            ours.set_raw(Calibration(name=f"bench{i % 5}", calibrationType="od"))

        def floor_write(i: int) -> None:  # what evolver_server.py does on setrawcalibration
            name = f"bench{i % 5}"
            data = [c for c in rig if c["name"] != name] + [{"name": name, "calibrationType": "od"}]
            with open(floor_path, "w") as f:
                json.dump(data, f)

        ours_ms = write_latency(our_write, args.writes)
        floor_ms = write_latency(floor_write, args.writes)
        print(f"set_raw write of the rig's calibrations.json: ours {ours_ms:.2f} ms, floor {floor_ms:.2f} ms, "
              f"ratio {ours_ms / floor_ms:.1f}x")
        started = time.perf_counter()
        ours_storm = storm(OURS, directory / "storm-ours.json", args.kills, 1)
        storm_s = time.perf_counter() - started
        floor_storm = storm(FLOOR, directory / "storm-floor.json", args.kills, 1)
    print(f"{args.kills} kills: ours {ours_storm} in {storm_s:.1f} s")
    print(f"{args.kills} kills: floor {floor_storm}")
    print(json.dumps({
        "write_ms_ours": round(ours_ms, 3), "write_ms_floor": round(floor_ms, 3),
        "write_ratio": round(ours_ms / floor_ms, 2), "kills": args.kills,
        "unreadable_ours": ours_storm["unreadable_after_kill"],
        "unreadable_floor": floor_storm["unreadable_after_kill"],
        "lost_acknowledged_ours": ours_storm["lost_acknowledged"],
        "lost_acknowledged_floor": floor_storm["lost_acknowledged"],
        "storm_seconds_ours": round(storm_s, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
