"""`benchbus-simulate` is Opentrons' simulation: the same protocol gives the same run log as `opentrons_simulate`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchbus_shared_data import labware_dirs

HERE = Path(__file__).resolve().parent
PROTOCOLS = sorted((HERE / "protocols").glob("*.py"))
LABWARE = HERE / "labware"
BIN = Path(sys.executable).parent


def run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def run_log(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.stem)
def test_the_run_log_is_opentrons_simulates(protocol, tmp_path):
    ours = run_log(run("benchbus-simulate", "-L", str(LABWARE), str(protocol), cwd=tmp_path))
    ours_labware = [arg for folder in labware_dirs() for arg in ("-L", str(folder))]
    theirs = run_log(run("opentrons_simulate", "-L", str(LABWARE), *ours_labware, str(protocol), cwd=tmp_path))
    assert len(ours) > 10 and ours == theirs


def test_benchbus_labware_is_there_without_asking_and_a_bad_protocol_fails(tmp_path):
    protocol = tmp_path / "plate.py"
    protocol.write_text("metadata = {'apiLevel': '2.13'}\n\ndef run(protocol):\n"
                        "    protocol.load_labware('benchbus_96_wellplate_360ul_flat', 1)\n"
                        "    protocol.load_labware('no_such_labware', 2)\n")
    done = run("benchbus-simulate", str(protocol), cwd=tmp_path)
    assert done.returncode != 0
    assert "no_such_labware" in done.stderr and "benchbus_96_wellplate_360ul_flat" not in done.stderr
