"""The dashboard's experiment and vial controls in a real browser: start an experiment from a JSON definition,
see it running with its vials, set one vial's stir and temperature and run its pump, see a vial the experiment runs
refuse that, edit the experiment (version 2), pause, resume and stop it; a bad definition is refused with the field
named. The experiment service runs beside the dashboard test stack."""
from __future__ import annotations

import json

import pytest

from benchbus.testing import wait_until
from benchbus_experiment.service import ExperimentService
from benchbus_experiment.settings import ExperimentSettings

from .conftest import missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")

ROW = "document.querySelector('#experiment-list tr[data-experiment=\"demo\"]')"


def definition(vials) -> str:
    return json.dumps({"name": "demo", "groups": [{"name": "g", "vials": vials, "temp_c": 30, "stir": 8,
                                                   "control": {"mode": "turbidostat", "lower_od": 0.2,
                                                               "upper_od": 0.4}}]})


def status_is(browser, status: str) -> str:
    return browser.wait(f"{ROW} && {ROW}.dataset.status === '{status}' && {ROW}.dataset.status")


@pytest.mark.slow
def test_experiments_from_the_dashboard(stack, browser, serve, make_settings, tmp_path, bus):
    serve(ExperimentService, make_settings(ExperimentSettings, data_dir=tmp_path / "experiment"))
    assert browser.open(stack.url, 1024, 768)["status"] == 200
    assert browser.eval("document.querySelector('#experiment-start').disabled") is True  # read-only
    browser.fill("#token", stack.token)
    browser.click("#token-save")
    browser.wait("!document.querySelector('#experiment-start').disabled")

    browser.fill("#experiment-definition", '{"name": "demo", "groups": []}')
    browser.click("#experiment-start")
    refused = browser.wait("document.querySelector('#experiment-result.refused')?.textContent")
    assert "invalid_request" in refused and "groups" in refused

    browser.fill("#experiment-definition", definition([4, 5]))
    browser.click("#experiment-start")
    assert status_is(browser, "running") == "running"
    assert browser.wait("document.querySelectorAll('#experiment-vials tr').length === 2 && 2") == 2

    # the vial controls: stir, temperature and a pump run reach the boards; a vial the experiment runs refuses them
    emulator = stack.rig
    browser.fill("#vc-vial", "2")
    browser.fill("#vc-stir", "10")
    browser.click("#vc-stir-set")
    wait_until(lambda: emulator.applied("stir")[2] == "10", 15, "stir of vial 2 applied")
    browser.fill("#vc-temp", "31")
    browser.click("#vc-temp-set")
    wait_until(lambda: emulator.applied("temp")[2] != "4095", 15, "temperature of vial 2 applied")
    browser.fill("#vc-vial", "3")
    browser.click("#vc-pump")
    wait_until(lambda: any(f.values[3] == "2" and f.values[19] == "7" for f in emulator.frames("pump", "i")),
               15, "the pump run of vial 3 on the wire")
    browser.fill("#vc-vial", "4")
    browser.click("#vc-stir-set")
    refused = browser.wait("document.querySelector('#vial-result.refused')?.textContent")
    assert "conflict" in refused and "vial 4" in refused and "'demo'" in refused

    # the calibration view: the active fits listed; one vial's raw points against its fit's curve
    assert browser.wait("document.querySelector('#calibration-active tr[data-type=\"od\"]')?.textContent") \
        .startswith("od")
    browser.fill("#cal-vial", "3")
    browser.click("#cal-show")
    assert browser.wait("Number(document.querySelector('#cal-chart').dataset.points || 0)") == 10
    assert "example_od_od90" in browser.text("#cal-summary")
    browser.screenshot(tmp_path / "experiments.png")

    browser.fill("#experiment-definition", definition([4, 5, 6]))
    browser.click("#experiment-edit")
    assert "v2" in browser.wait(f"{ROW}.textContent.includes('v2') && {ROW}.textContent")
    browser.click("#experiment-list tr[data-experiment='demo'] button[data-action='pause']")
    assert status_is(browser, "paused") == "paused"
    browser.click("#experiment-list tr[data-experiment='demo'] button[data-action='resume']")
    assert status_is(browser, "running") == "running"
    browser.click("#experiment-list tr[data-experiment='demo'] button[data-action='stop']")
    assert status_is(browser, "stopped") == "stopped"
    assert bus.call("experiment", "status", {"name": "demo"}, timeout=10)["status"] == "stopped"
    assert browser.problems() == []
