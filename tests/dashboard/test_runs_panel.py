"""The dashboard's Runs panel in a real browser (Debian's headless Chromium) against the stack on emulated hardware
with the protocol-runner: what a person does at the robot's tablet. A broken protocol is refused with its line; a
protocol with its custom labware is uploaded, its analysis shown, a run made and played, its steps followed as they
run, to `succeeded` (the emulator moved); a run that fails says why. A screenshot: test-output/dashboard-runs.png.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABWARE = REPO / "tests" / "protocol" / "labware" / "benchtest_6_tuberack_5ml.json"

BROKEN = '''requirements = {"robotType": "OT-2", "apiLevel": "2.13"}

def run(protocol)
    protocol.comment("never")
'''

WITH_LABWARE = (REPO / "tests" / "runner" / "protocols" / "custom_labware_transfer.py").read_text()

FAILS_ON_THE_ROBOT = '''requirements = {"robotType": "OT-2", "apiLevel": "2.13"}

def run(protocol):
    protocol.comment("checking the rack")
    if not protocol.is_simulating():
        raise RuntimeError("the tube rack is not on the deck")
'''


@pytest.fixture
def runner(stack, serve, make_settings, tmp_path):
    from benchbus_runner.service import Runner
    from benchbus_runner.settings import RunnerSettings

    return serve(Runner, make_settings(RunnerSettings, data_dir=tmp_path / "runner", http=False))


def upload(browser, folder: Path, name: str, source: str, labware: list[Path] = ()) -> None:
    protocol = folder / name
    protocol.write_text(source)
    browser.pick_files("#run-protocol", [protocol])
    browser.pick_files("#run-labware", list(labware))
    browser.click("#run-upload")


def play_to_the_end(browser) -> str:
    browser.click("#run-create")
    browser.wait("document.querySelector('#run-status').dataset.status === 'idle' && "
                 "!document.querySelector('#run-play').disabled")
    browser.click("#run-play")
    status = "document.querySelector('#run-status').dataset.status"
    return browser.wait(f"['succeeded', 'failed', 'stopped'].includes({status}) && {status}", timeout_s=120)


@pytest.mark.slow
def test_runs_panel_upload_analyse_play_follow(stack, runner, browser, bus, tmp_path):
    assert browser.open(stack.url, 1024, 768)["status"] == 200
    browser.wait("document.querySelector('#link').dataset.state === 'live'")
    assert browser.eval("document.querySelector('#run-upload').disabled")  # read-only without the token
    browser.fill("#token", stack.token)
    browser.click("#token-save")
    browser.wait("document.querySelector('#access-text').dataset.state === 'writes'")

    # a broken protocol: refused with its line and message, nothing kept
    upload(browser, tmp_path, "broken.py", BROKEN)
    refusal = browser.wait("document.querySelector('#run-analysis').dataset.result === 'refused' && "
                           "document.querySelector('#run-analysis').textContent")
    assert "line 3" in refusal and "SyntaxError" in refusal
    assert browser.eval("document.querySelector('#run-create').disabled")

    # a protocol with its custom labware: the analysis shows its pipette, labware and steps
    upload(browser, tmp_path, "tubes.py", WITH_LABWARE, [LABWARE])
    analysis = browser.wait("document.querySelector('#run-analysis').dataset.result === 'ok' && "
                            "document.querySelector('#run-analysis').textContent")
    assert "tubes.py" in analysis
    assert "p300_single_gen2 on left" in browser.text("#run-analysis [data-list='pipettes']")
    assert "slot 2" in browser.text("#run-analysis [data-list='labware']")
    steps = browser.eval("[...document.querySelectorAll('#run-analysis .analysis-steps li')].map(li => li.textContent)")
    assert any(step.startswith("aspirate volume=100.0") for step in steps), steps
    browser.wait("document.querySelector('#run-protocols tr[data-protocol]') && 'listed'")

    # make a run, play it, follow its steps to the end
    moved_before = len(stack.robot.lines)
    assert play_to_the_end(browser) == "succeeded"
    followed = browser.eval("[...document.querySelectorAll('#run-steps li')].map(li => [li.dataset.status, "
                            "li.textContent])")
    assert followed and all(status == "succeeded" for status, _text in followed), followed
    assert any(text.startswith("Aspirating 100.0 uL") for _status, text in followed)
    assert browser.text("#run-progress").startswith("100 %")
    assert any(line.startswith(("G0", "G1")) for line in stack.robot.lines[moved_before:])  # the robot moved
    _topic, run = bus.wait_for(bus.topic("runner", "state", "run"), lambda _t, d: d.get("status") == "succeeded")
    assert run["steps_done"] == len(followed)

    # a run that fails on the robot: the panel says why, with the step
    upload(browser, tmp_path, "fails.py", FAILS_ON_THE_ROBOT)
    browser.wait("document.querySelector('#run-analysis').dataset.result === 'ok' && "
                 "document.querySelector('#run-analysis').textContent.includes('fails.py')")
    assert play_to_the_end(browser) == "failed"
    why = browser.wait("document.querySelector('#run-errors li') && document.querySelector('#run-errors').textContent")
    assert "the tube rack is not on the deck" in why and "checking the rack" in why

    (REPO / "test-output").mkdir(exist_ok=True)
    browser.eval("window.scrollTo(0, document.querySelector('#runs').offsetTop - 60)")
    shot = browser.screenshot(tmp_path / "runs.png", full_page=False)
    shutil.copyfile(shot, REPO / "test-output" / "dashboard-runs.png")
    assert browser.problems() == []
