"""The pieces without the bus: the line map and board revisions, the simulated chip's edge events, the debouncer,
the button logic, the health light, and the driver on a simulated chip."""
import select
import time

import pytest

from benchbus.testing import wait_until
from benchbus_gpio.backend import Edge, GpioError, LineBusy
from benchbus_gpio.debounce import Button, Debouncer
from benchbus_gpio.driver import Driver
from benchbus_gpio.lines import LineMap, bits_of_revision, resolve, revision_from_bits
from benchbus_gpio.sim import SimChip
from benchbus_gpio.status_light import ButtonLightLayers, Health, Look, alarm_active

MS = 1_000_000


# -- line map --------------------------------------------------------------------------------------------------------

def test_og_board_senses_door_and_window_on_one_line():
    lines = resolve(LineMap(), "2.1")
    assert lines.offsets["door_sw_filt"] == lines.offsets["window_sw_filt"] == 20
    assert not lines.separate_window
    assert lines.outputs == {"frame_leds": 6, "blue_button": 13, "green_button": 19, "red_button": 26, "halt": 18,
                             "audio_enable": 21, "isp": 23, "reset": 24}


@pytest.mark.parametrize("revision", ["A", "B", "C"])
def test_refresh_boards_have_separate_door_and_window_switches(revision):
    lines = resolve(LineMap(), revision)
    assert (lines.offsets["door_sw_filt"], lines.offsets["window_sw_filt"]) == (12, 16)
    assert lines.separate_window


def test_unknown_revision_uses_og_numbers():
    assert resolve(LineMap(), "UNKNOWN").offsets["door_sw_filt"] == 20


def test_revision_bits():
    assert [revision_from_bits(*bits) for bits in [(1, 1), (0, 1), (1, 0), (0, 0)]] == ["2.1", "A", "B", "C"]
    assert all(revision_from_bits(*bits_of_revision(r)) == r for r in ["2.1", "A", "B", "C"])


def test_line_map_is_configuration_and_refuses_nonsense():
    moved = LineMap(frame_leds=7, revisions={"B": {"door_sw_filt": 22}})
    assert resolve(moved, "B").offsets["frame_leds"] == 7
    assert resolve(moved, "B").offsets["door_sw_filt"] == 22
    with pytest.raises(ValueError, match="unknown board revision"):
        LineMap(revisions={"Z": {}})
    with pytest.raises(ValueError, match="unknown line"):
        LineMap(revisions={"A": {"lid": 3}})
    with pytest.raises(ValueError, match="share one line"):
        resolve(LineMap(halt=24), "2.1")
    with pytest.raises(ValueError, match="both an input and an output"):
        resolve(LineMap(button_input=6), "2.1")


# -- simulated chip ------------------------------------------------------------------------------------------------

def test_sim_delivers_timestamped_edges_through_a_selectable_fd():
    chip = SimChip()
    request = chip.request("test", {}, [5])
    assert select.select([request], [], [], 0)[0] == []
    before = time.monotonic_ns()
    assert chip.drive(5, 0, bounces=2, gap_s=0.002) == 5  # 0 1 0 1 0
    ready, _, _ = select.select([request], [], [], 5)
    assert ready == [request]
    deadline = time.monotonic() + 5
    edges: list[Edge] = []
    while len(edges) < 5 and time.monotonic() < deadline:
        request.wait_edges(0.5)
        edges += request.read_edges()
    assert [e.rising for e in edges] == [False, True, False, True, False]
    assert all(e.offset == 5 for e in edges)
    stamps = [e.timestamp_ns for e in edges]
    assert stamps[0] >= before
    assert [b - a for a, b in zip(stamps, stamps[1:], strict=False)] == [2 * MS] * 4  # each edge carries its own time
    assert request.get(5) == 0 and not request.wait_edges(0)
    chip.close()


def test_sim_blip_train_ends_where_it_began():
    chip = SimChip()
    request = chip.request("test", {}, [20])
    assert chip.drive(20, 1, bounces=2, gap_s=0.001) == 4  # already 1: 0 1 0 1
    wait_until(chip.settled, 5, "the blip train to end")
    edges = request.read_edges()
    assert [e.level for e in edges] == [0, 1, 0, 1] and request.get(20) == 1
    assert chip.drive(20, 1) == 0
    chip.close()


def test_sim_lines_have_one_owner():
    chip = SimChip()
    blinker = chip.request("ot-blinkenlights", {13: 1}, [])
    with pytest.raises(LineBusy) as caught:
        chip.request("benchbus-gpio", {6: 0, 13: 0}, [5])
    assert caught.value.offset == 13 and caught.value.consumer == "ot-blinkenlights"
    assert "ot-blinkenlights" in str(caught.value.named("blue_button")) and "blue_button" in str(
        caught.value.named("blue_button"))
    assert chip.consumer_of(6) is None  # a refused request holds nothing
    blinker.release()
    request = chip.request("benchbus-gpio", {6: 0, 13: 0}, [5])
    request.set(6, 1)
    assert [level for _t, level in chip.history(6)] == [0, 1]
    with pytest.raises(GpioError):
        request.set(5, 0)  # an input
    with pytest.raises(GpioError):
        chip.request("x", {99: 0}, [])
    chip.close()


# -- debouncing ------------------------------------------------------------------------------------------------------

def edges(offset, levels, start_ns, gap_ns):
    return [Edge(offset, level == 1, start_ns + i * gap_ns) for i, level in enumerate(levels)]


def test_bounce_train_shorter_than_the_window_is_one_change():
    debouncer = Debouncer(0.020, {20: 1})
    for edge in edges(20, [0, 1, 0, 1, 0], 1000 * MS, 2 * MS):
        debouncer.feed(edge)
    assert debouncer.due(1000 * MS + 25 * MS) == []  # last edge at +8 ms: not quiet for 20 ms yet
    changes = debouncer.due(1000 * MS + 28 * MS)
    assert [(c.offset, c.level, c.started_ns) for c in changes] == [(20, 0, 1000 * MS)]
    assert debouncer.due(2000 * MS) == [] and debouncer.stable[20] == 0


def test_changes_slower_than_the_window_each_count():
    debouncer = Debouncer(0.020, {5: 1})
    seen = []
    for edge in edges(5, [0, 1, 0], 0, 50 * MS):
        debouncer.feed(edge)
        seen += debouncer.due(edge.timestamp_ns + 20 * MS)
    assert [c.level for c in seen] == [0, 1, 0]


def test_changes_read_late_still_each_count():
    """A reader that wakes late finds several changes in the buffer at once; their timestamps decide, not the clock."""
    debouncer = Debouncer(0.020, {20: 1})
    for edge in edges(20, [0, 1, 0], 1000 * MS, 60 * MS) + edges(20, [1, 0], 1200 * MS, 2 * MS):
        debouncer.feed(edge)
    changes = debouncer.due(1300 * MS)
    assert [(c.level, c.started_ns) for c in changes] == [(0, 1000 * MS), (1, 1060 * MS), (0, 1120 * MS)]


def test_a_blip_that_comes_back_is_no_change():
    debouncer = Debouncer(0.020, {5: 1})
    for edge in edges(5, [0, 1], 0, 3 * MS):
        debouncer.feed(edge)
    assert debouncer.next_deadline() == 23 * MS
    assert debouncer.due(100 * MS) == [] and debouncer.next_deadline() is None


def test_zero_window_takes_every_change():
    debouncer = Debouncer(0, {5: 1})
    debouncer.feed(Edge(5, False, 10))
    assert [c.level for c in debouncer.due(10)] == [0]


def test_button_press_long_press_release():
    button = Button(long_press_s=2.0)
    assert [a.action for a in button.change(True, 0)] == ["pressed"]
    assert button.due(1_999 * MS) == []
    long = button.due(2_000 * MS)
    assert [(a.action, a.held_s) for a in long] == [("long_press", 2.0)]
    assert button.due(3_000 * MS) == []  # once per hold
    released = button.change(False, 3_500 * MS)
    assert [(a.action, a.held_s) for a in released] == [("released", 3.5)]
    assert button.next_deadline() is None


# -- the health light ------------------------------------------------------------------------------------------------

def test_health_look():
    health = Health(blink_period_s=1.0)
    assert health.look() == Look("blue", "blink", 1.0)  # nothing seen yet: still starting
    health.service_state("gpio", "ready")
    health.service_state("smoothie", "starting")
    assert health.look().pattern == "blink"
    health.service_state("smoothie", "ready")
    assert health.look() == Look("blue")
    health.service_state("samd", "degraded")
    assert health.look().pattern == "blink" and health.not_ready() == {"samd": "degraded"}
    health.service_state("samd", None)
    health.alarm = True
    assert health.look() == Look("red")
    health.stopping = True
    assert health.look().color == "off"


def test_alarm_reading_is_defensive():
    assert alarm_active({"active": True, "message": "ALARM: Hard limit +X"}) is True
    assert alarm_active({"active": False}) is False
    assert alarm_active(None) is False
    assert alarm_active({"alarm": "ALARM: Homing fail"}) is True
    assert alarm_active({"something": 1}) is None and alarm_active([1]) is None


def test_layers_identify_then_manual_then_status():
    layers = ButtonLightLayers(Look("blue"))
    layers.set_manual(Look("red"))
    layers.start_identify(Look("blue", "blink", 0.5), until=10.0)
    assert layers.current(9.9) == (Look("blue", "blink", 0.5), "identify")
    assert layers.current(10.0) == (Look("red"), "manual")
    layers.set_manual(None)
    assert layers.current(11.0) == (Look("blue"), "status")


def test_blink_phase():
    look = Look("green", "blink", 1.0)
    assert [look.lit(t) for t in (0.0, 0.49, 0.5, 0.99, 1.0)] == [True, True, False, False, True]
    assert not Look("off").lit(0) and Look("red").lit(123)


# -- the driver on a simulated chip ----------------------------------------------------------------------------------

@pytest.fixture
def chip():
    chip = SimChip()
    yield chip
    chip.close()


def test_driver_claims_with_board_lines_idle_high(chip):
    driver = Driver(chip, LineMap())
    lines = driver.claim()
    assert lines.revision == "2.1"
    assert {o: chip.level(o) for o in (24, 18, 23, 21, 6, 13, 19, 26)} == {24: 1, 18: 1, 23: 1, 21: 1, 6: 0, 13: 0,
                                                                          19: 0, 26: 0}
    assert chip.consumer_of(20) == "benchbus-gpio" and chip.consumer_of(5) == "benchbus-gpio"
    assert driver.door() == (False, None)
    driver.close()
    assert chip.consumer_of(20) is None


def test_driver_reads_the_revision_bits():
    chip = SimChip(initial={17: 1, 27: 0})
    driver = Driver(chip, LineMap())
    assert driver.claim().revision == "B" and driver.door() == (False, False)
    assert chip.consumer_of(12) == chip.consumer_of(16) == "benchbus-gpio"
    driver.close()
    chip.close()
    unwired = SimChip(initial={17: 0, 27: 0}, revision_bits_wired=False)
    driver = Driver(unwired, LineMap())
    assert driver.claim().revision == "2.1"  # no device-tree marker: an OG board
    driver.close()
    unwired.close()


def test_bootloader_sequence_releases_reset_before_isp(chip):
    driver = Driver(chip, LineMap())
    driver.claim()
    driver.pulse_low(["reset", "isp"], pulse_s=0.005, settle_s=0)
    reset, isp = chip.history(24), chip.history(23)
    assert [lvl for _t, lvl in reset] == [1, 0, 1] and [lvl for _t, lvl in isp] == [1, 0, 1]
    assert reset[1][0] <= isp[1][0] < reset[2][0] < isp[2][0]  # both low, reset up first, then ISP
    assert reset[2][0] - reset[1][0] >= 5 * MS
    driver.close()


def test_driver_blinks_the_led(chip):
    driver = Driver(chip, LineMap())
    driver.claim()
    driver.show(Look("magenta", "blink", 0.05))
    wait_until(lambda: len(chip.history(26)) >= 6, 10, "three red blinks")
    red = [lvl for _t, lvl in chip.history(26)]
    assert red[:4] == [0, 1, 0, 1] and len(red) >= 6
    assert [lvl for _t, lvl in chip.history(19)] == [0]  # green never lit for magenta
    driver.show(Look("off"))
    wait_until(lambda: chip.level(26) == 0 and chip.level(13) == 0, 5, "the LED off")
    driver.close()
