"""kill -9 at random moments during a write storm: the file always parses, and every acknowledged write is in it.

The writer is the real store (benchbus_calibration.store) in a bare interpreter (`-S`, standard library only), so
500 kills take seconds: it opens the file (repairing it as the service does at start), then appends one number per
write and prints the number only after `write` returned, which is when the service would reply `ok`.
"""
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import benchbus_calibration

PACKAGE_ROOT = str(Path(benchbus_calibration.__file__).resolve().parent.parent)

WRITER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from benchbus_calibration.store import VersionedFile

def parse(data):
    value = json.loads(data)
    if not isinstance(value, list):
        raise ValueError("not a list")
    return value

store = VersionedFile(sys.argv[2], parse, keep=5)
store.open(b"[]")
sys.stdout.write("ready\n")
sys.stdout.flush()
seq = int(sys.argv[3])
while True:
    store.write(json.dumps(store.value + [seq]).encode())
    sys.stdout.write(f"{seq}\n")
    sys.stdout.flush()
    seq += 1
"""


def storm(path: Path, kills: int, seed: int) -> tuple[set[int], int]:
    rng = random.Random(seed)
    acknowledged: set[int] = set()
    next_seq = 0
    for _ in range(kills):
        writer = subprocess.Popen([sys.executable, "-S", "-c", WRITER, PACKAGE_ROOT, str(path), str(next_seq)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.04))  # anywhere, start and recovery included
        else:
            writer.stdout.readline()  # "ready": the file is open, writes follow back to back
            time.sleep(rng.uniform(0.0, 0.015))  # the point: the kill lands at a random moment of the writes
        writer.kill()  # SIGKILL
        out, err = writer.communicate(timeout=10)
        assert writer.returncode == -9, f"the writer died on its own: {err.decode()[-2000:]}"
        acknowledged.update(int(line) for line in out.split() if line.isdigit())
        next_seq = max(acknowledged, default=next_seq - 1) + 1 + 1000  # fresh numbers, never reused
        # what any reader (the DPU, a person, the next start) would see right now:
        on_disk = json.loads(path.read_bytes()) if path.exists() else []
        missing = acknowledged - set(on_disk)
        assert not missing, f"acknowledged writes lost: {sorted(missing)[:10]}"
    return acknowledged, len(json.loads(path.read_bytes()))


@pytest.mark.slow
def test_500_kills_lose_no_acknowledged_write(tmp_path):
    path = tmp_path / "calibrations.json"
    acknowledged, stored = storm(path, kills=500, seed=1)
    assert len(acknowledged) > 100, "the storm must actually write (kills landed mid-write, not only at start)"
    assert stored >= len(acknowledged)
    assert not list(tmp_path.glob("*.corrupt-*")), "an atomic write never leaves a corrupt current file"


@pytest.mark.slow
def test_killing_the_service_mid_storm_loses_no_acknowledged_write(spawn, bus, tmp_path):
    """The real service, over the real broker: writers keep calling set_raw; kill -9; start again; every name that
    was replied ok is listed, and calibrations.json parses."""
    from benchbus import BusError

    env = {"BENCHBUS_CALIBRATION_DATA_DIR": str(tmp_path / "calibration")}
    argv = ["python", "-m", "benchbus_calibration.service"]
    rng = random.Random(4)
    acknowledged: set[str] = set()
    lock = threading.Lock()
    for round_number in range(3):
        service = spawn(argv, "calibration", env=env)
        stop = threading.Event()

        def writer(k: int, stop: threading.Event, round_number: int) -> None:
            n = 0
            while not stop.is_set():
                name = f"r{round_number}-w{k}-{n}"
                n += 1
                try:
                    bus.call("calibration", "set_raw", {"name": name, "calibrationType": "od"}, timeout=1.5)
                except BusError:
                    continue  # no reply (killed): not acknowledged
                with lock:
                    acknowledged.add(name)

        writers = [threading.Thread(target=writer, args=(k, stop, round_number)) for k in range(4)]
        for t in writers:
            t.start()
        time.sleep(rng.uniform(0.3, 0.8))  # the point: the kill lands at a random moment of the storm
        service.kill9()
        stop.set()
        for t in writers:
            t.join()
        json.loads((tmp_path / "calibration" / "calibrations.json").read_bytes())  # parses, whatever the moment
    spawn(argv, "calibration", env=env)
    listed = {c["name"] for c in bus.call("calibration", "list_calibrations")["calibrations"]}
    assert len(acknowledged) > 20
    assert acknowledged <= listed, f"lost: {sorted(acknowledged - listed)[:10]}"
