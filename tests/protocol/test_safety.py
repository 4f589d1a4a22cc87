"""A run on the bus backend is a well-behaved client of the shared robot: the door pauses it (closing the door and
pressing the button continues it, nothing lost), an alarm stops it with the protocol's line in the error, another
client's motion lease refuses it at once."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from benchbus_ot2 import LeaseLost, Robot

from .gcode import intake_strokes
from .test_execute import PLUNGER, execute
from benchbus.testing import wait_until

HERE = Path(__file__).resolve().parent


class Background:
    """A protocol run in a thread; its result (messages, expected intakes, bottoms) or its exception."""

    def __init__(self, stack, protocol: Path, **robot_options):
        self.result = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(stack, protocol), kwargs=robot_options, daemon=True)
        self.thread.start()

    def _run(self, stack, protocol, **robot_options):
        try:
            self.result = execute(stack, protocol, **robot_options)
        except BaseException as exc:  # handed to the test
            self.error = exc

    def join(self, timeout: float = 120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        return self


def motion_lines(lines: list[str]) -> int:
    return sum(1 for line in lines if re.search(r"\bG0 [XYZABC]|G28\.2", line))


@pytest.mark.parametrize("protocol", ["api_2_0_transfer_mix.py", "api_2_15_engine.py"])
def test_the_door_pauses_the_run_and_closing_it_plus_the_button_continues(stack, protocol):
    pauses, resumes = [], []
    run = Background(stack, HERE / "protocols" / protocol, on_pause=pauses.append,
                     on_resume=lambda: resumes.append(True))
    wait_until(lambda: intake_strokes(stack.emulator.lines, "B", -14.5), what="the first aspirate", timeout=60)
    stack.door(True)
    wait_until(lambda: pauses, what="the run to pause", timeout=60)
    assert "door" in pauses[0] and run.thread.is_alive()
    moved_before = motion_lines(stack.emulator.lines)
    stack.door(False)
    assert motion_lines(stack.emulator.lines) == moved_before and not resumes  # closed, still waiting the button
    stack.press_button()
    run.join()
    assert run.error is None and resumes
    _messages, expected, bottoms = run.result
    for mount, axis in PLUNGER.items():  # the refused move was sent again: every aspirate is on the board once
        assert len(intake_strokes(stack.emulator.lines, axis, bottoms.get(mount, 0.0))) == len(
            [e for e in expected if e[0] == mount])


@pytest.mark.parametrize("protocol", ["api_2_0_transfer_mix.py", "api_2_15_engine.py"])
def test_an_alarm_stops_the_run_with_the_protocols_line(stack, protocol):
    path = HERE / "protocols" / protocol
    run = Background(stack, path)
    wait_until(lambda: intake_strokes(stack.emulator.lines, "B", -14.5), what="the first aspirate", timeout=60)
    stack.emulator.inject("limit_alarm")
    run.join()
    assert run.error is not None, "the run went on after an alarm"
    text = str(run.error) + "".join(str(getattr(run.error, "detail", "")))
    line = re.search(r"\[line (\d+)\]", text)
    assert line, text
    assert re.search(r"p300\.|p20\.", path.read_text().splitlines()[int(line.group(1)) - 1]), text
    assert "ALARM" in text or "alarm" in text


def test_another_clients_lease_refuses_the_run_at_once(stack, client_named):
    other = client_named("dashboard-operator")
    other.call("smoothie", "acquire_motion", {"ttl_s": 60})
    started = time.monotonic()
    with pytest.raises(LeaseLost, match="dashboard-operator"):
        execute(stack, HERE / "protocols" / "api_2_0_transfer_mix.py")
    assert time.monotonic() - started < 30
    assert Robot  # the same error class the package exports
