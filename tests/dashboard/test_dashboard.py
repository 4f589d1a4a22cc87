"""The dashboard in a real browser (Debian's headless Chromium) against the whole stack on emulated hardware.

What a person at a tablet would see and do: the page loads clean, the vial curves grow as cycles run and survive a
reload, a failing board turns red, pump runs mark the time axis, the page is read-only until the token is given,
the lights toggle reaches gpio-service, the simulated door shows "door open" and the home button is refused while
it is open (and homes the robot once it is closed and motion resumed). A screenshot goes to the test's output
directory and to test-output/dashboard.png for a person to look at.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TABLET = (1024, 768)
VIAL_POINTS = "Math.min(...[...document.querySelectorAll('.vial')].map(v => Number(v.dataset.points || 0)))"


def broadcasts(bus, count: int) -> list[dict]:
    """Wait until `count` more scheduler broadcasts have gone by; their payloads."""
    seen: list[dict] = []
    bus.wait_for(bus.topic("scheduler", "event", "broadcast"), lambda _t, d: seen.append(d) or len(seen) >= count, 20)
    return seen


def wait_points_above(browser, points: int) -> int:
    return browser.wait(f"{VIAL_POINTS} > {points} && {VIAL_POINTS}")


@pytest.mark.slow
def test_dashboard_in_a_browser(stack, browser, bus, tmp_path):
    broadcasts(bus, 3)  # cycles ran before anyone looked: the page must show them from the gateway's history

    assert browser.open(stack.url, *TABLET)["status"] == 200
    assert browser.wait("document.querySelector('#link').dataset.state === 'live' && 'live'") == "live"
    assert browser.wait("document.querySelectorAll('.vial .uplot').length === 16 && 16") == 16
    from_history = wait_points_above(browser, 2)
    assert "calibrated: example_od_od90" in browser.text("#units")  # the shipped example calibration is active

    # the curves grow as cycles run, every vial
    grown = wait_points_above(browser, from_history + 2)
    assert grown > from_history + 2

    # read-only without the token, and it says so
    assert browser.text("#access-text") == "read-only"
    assert "Read-only" in browser.text("#readonly")
    assert browser.eval("[...document.querySelectorAll('button.write')].every(b => b.disabled)")
    browser.fill("#token", "not-the-token-at-all")
    browser.click("#token-save")
    assert browser.wait("document.querySelector('#access-text').dataset.state === 'refused' && 'refused'")
    browser.fill("#token", stack.token)
    browser.click("#token-save")
    browser.wait("document.querySelector('#access-text').dataset.state === 'writes'")
    assert not browser.eval("document.querySelector('#lights-toggle').disabled")

    # the lights toggle reaches gpio-service
    assert bus.call("gpio", "get_lights", {})["on"] is False
    browser.click("#lights-toggle")
    browser.wait("document.querySelector('#lights').textContent.startsWith('rail on')")
    assert bus.call("gpio", "get_lights", {})["on"] is True
    assert browser.text("#lights-toggle") == "Lights off"

    # a failing board shows red at once (the stir board's replies arrive garbled)
    stack.rig.inject("stir", "garbled", count=2)
    red = browser.wait("(document.querySelector('#param-status [data-param=\"stir\"].bad') || {}).textContent")
    assert red.startswith("stir: ")
    browser.wait("document.querySelector('#errors').textContent.includes('samd')")  # samd event/error listed

    # cycles longer than broadcast_timing are overruns: counted, and listed with the slowest step
    bus.call("scheduler", "load_conf",
             {"text": stack.conf_text.replace("broadcast_timing: 0.5", "broadcast_timing: 0.01")})
    overruns = browser.wait("document.querySelector('#overruns').textContent.includes('slowest step') && "
                            "document.querySelector('#overruns').textContent")
    assert "overrun(s); last: cycle" in overruns
    browser.wait("document.querySelector('#errors').textContent.includes('overran by')")
    bus.call("scheduler", "load_conf", {"text": stack.conf_text})

    # a pump run marks vial 2's time axis
    pumps = ["--"] * 48
    pumps[2] = "1"
    bus.call("scheduler", "command", {"param": "pump", "value": pumps, "immediate": True})
    assert browser.wait("document.querySelector('.vial[data-vial=\"2\"]').dataset.pumps === '1' && 'marked'")
    assert browser.eval("document.querySelector('.vial[data-vial=\"3\"]').dataset.pumps") == "0"

    # the door opens (a hand on the robot): the page says so, and the home button is refused
    bus.call("gpio", "sim_set_input", {"input": "door", "active": True})
    browser.wait("document.querySelector('#door').textContent === 'door open'")
    browser.click("#home")
    refusal = browser.wait("document.querySelector('#robot-result.refused') && "
                           "document.querySelector('#robot-result').textContent")
    assert "home refused (conflict)" in refusal and "door open" in refusal
    assert not any(bus.call("smoothie", "homed", {}).values())
    browser.wait("document.querySelector('#lease').textContent === 'free'")  # the page gave its lease back

    # closed again: motion stays paused until resumed; then the home button homes every axis
    bus.call("gpio", "sim_set_input", {"input": "door", "active": False})
    assert browser.wait("document.querySelector('#door').textContent === 'door closed' && "
                        "!document.querySelector('#resume').hidden && 'ok'")
    browser.click("#resume")
    browser.wait("document.querySelector('#robot-result').textContent === 'motion resumed'")
    browser.click("#home")
    browser.wait("document.querySelector('#robot-result').textContent === 'homed all axes'", timeout_s=60)
    assert all(bus.call("smoothie", "homed", {}).values())
    browser.wait("[...document.querySelectorAll('#axes td:nth-child(3)')].every(td => td.textContent === 'homed')")

    # every service's $state, with its since-time
    listed = browser.eval("[...document.querySelectorAll('#service-states tr')].map(r => r.dataset.service)")
    assert {"calibration", "gateway", "gpio", "samd", "scheduler", "smoothie"} <= set(listed)

    # without an active calibration the curves are raw, and labelled so; with it, calibrated again
    bus.call("calibration", "set_active", {"calibration_names": []})
    browser.wait("document.querySelector('#units').textContent.includes('OD raw (od_90')")
    assert "temperature raw" in browser.text("#units")
    bus.call("calibration", "set_active", {"calibration_names": ["example_od_od90", "example_temp", "example_pump"]})
    browser.wait("document.querySelector('#units').textContent.includes('calibrated: example_temp')")

    # a reload keeps the history (from the gateway's ring) and the token (kept in the browser)
    before_reload = browser.eval(VIAL_POINTS)
    browser.order("reload")
    browser.wait("document.querySelector('#access-text').dataset.state === 'writes'")
    browser.wait("document.querySelector('#overruns').textContent.includes('overrun(s)')")
    assert wait_points_above(browser, before_reload - 1) >= before_reload

    # for a person to look at: the tablet landscape, and portrait (two columns of vials)
    (REPO / "test-output").mkdir(exist_ok=True)
    for name, (width, height) in {"dashboard": TABLET, "dashboard-portrait": TABLET[::-1]}.items():
        browser.order("viewport", width=width, height=height)
        browser.eval("window.scrollTo(0, 0)")
        browser.wait("document.querySelector('.vial .uplot').offsetWidth"
                     " <= document.querySelector('.vial').clientWidth")
        shot = browser.screenshot(tmp_path / f"{name}.png")
        shutil.copyfile(shot, REPO / "test-output" / f"{name}.png")
    assert browser.problems() == []
