"""`benchbus-simulate`: the whole stack on emulators for one protocol, its steps printed with their timing."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "services" / "protocol-api" / "examples" / "transfer.py"
STEP = re.compile(r"^\s+(\d+)\s+(\d+\.\d\d) s\s+(\d+\.\d\d) s  (.+)$")


def simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchbus_protocol.simulate", *args], capture_output=True,
                          text=True, timeout=180)


def test_simulate_runs_a_protocol_on_the_emulators_and_prints_timed_steps():
    done = simulate(str(EXAMPLE), "--speedup", "50")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [STEP.match(line).groups() for line in done.stdout.splitlines() if STEP.match(line)]
    assert [text.split(":")[-1].split(" (")[0].strip() for *_n, text in steps][:4] == [
        "load 96 Tip Rack 300 µL", "load 96 Well Plate 360 µL Flat", "load P300 Single-Channel GEN2",
        "home all axes"]
    texts = [text for *_n, text in steps]
    assert any("aspirate 50 uL from A1" in t for t in texts) and any("drop tip in fixed trash" in t for t in texts)
    assert [int(n) for n, *_rest in steps] == list(range(1, 10))
    assert float(steps[3][2]) > 0  # the home took the emulator's (sped-up) motion time
    assert "9 steps" in done.stdout and "note: no deck calibration" in done.stdout


def test_simulate_reports_a_failing_protocol_and_exits_non_zero(tmp_path):
    protocol = tmp_path / "wrong.py"
    protocol.write_text("def run(protocol):\n    protocol.load_pipette('p1000_single_gen2', 'left')\n")
    done = simulate(str(protocol), "--speedup", "50")
    assert done.returncode == 1
    assert "protocol failed: PipetteError: the left mount carries a p300_single_v2.1" in done.stderr
    nothing = tmp_path / "empty.py"
    nothing.write_text("x = 1\n")
    refused = simulate(str(nothing))
    assert refused.returncode != 0 and "defines no run(protocol) function" in refused.stderr


def test_connect_with_simulate_starts_and_stops_a_private_stack():
    from benchbus_protocol import connect
    with connect(simulate=True, speedup=50, right="none") as protocol:
        stack = protocol._stack
        assert stack.device.startswith("simulate-")
        tips = protocol.load_labware("benchbus_96_tiprack_20ul", 3)
        p300 = protocol.load_pipette("p300_single_gen2", "left")
        p300.pick_up_tip(tips["A1"])
        assert p300.has_tip and protocol.position["X"] != protocol.home_position["X"]
        assert protocol._attached("right") is None  # the emulator was started with no right pipette
    assert stack._broker is None and not stack.data_dir.exists()
