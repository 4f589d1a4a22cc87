"""gpio-service on the simulated chip, over the real broker: every command, the inputs, the status light."""
import pytest

from benchbus import BusError

from benchbus_gpio.sim import SimChip

from benchbus.testing import wait_until

RAIL, BLUE, GREEN, RED, HALT, AUDIO, ISP, RESET = 6, 13, 19, 26, 18, 21, 23, 24


def rgb(chip):
    return chip.level(RED), chip.level(GREEN), chip.level(BLUE)


def levels(chip, offset):
    return [level for _t, level in chip.history(offset)]


# -- lights ----------------------------------------------------------------------------------------------------------

def test_rail_lights_on_and_off(start_gpio, bus, record):
    _svc, chip = start_gpio()
    lights = record("gpio", "state", "lights")
    assert bus.call("gpio", "get_lights")["on"] is False
    assert bus.call("gpio", "set_rail_lights", {"on": True})["on"] is True
    assert chip.level(RAIL) == 1 and bus.call("gpio", "get_lights")["on"] is True
    lights.wait_for(lambda d: d["on"] is True)
    mark = lights.mark()
    bus.call("gpio", "set_rail_lights", {"on": False})
    assert chip.level(RAIL) == 0
    lights.wait_for(lambda d: d["on"] is False, since=mark)


def test_status_light_is_solid_blue_when_every_service_is_ready(start_gpio, bus, record):
    _svc, chip = start_gpio()
    lights = record("gpio", "state", "lights")
    lights.wait_for(lambda d: d["button"] == {"color": "blue", "pattern": "solid", "period_s": 1.0, "source": "status"})
    wait_until(lambda: rgb(chip) == (0, 0, 1), what="blue LED lit")


def test_button_light_color_blink_and_back_to_status(start_gpio, bus):
    _svc, chip = start_gpio()
    result = bus.call("gpio", "set_button_light", {"color": "yellow"})
    assert result["button"] == {"color": "yellow", "pattern": "solid", "period_s": 1.0, "source": "manual"}
    wait_until(lambda: rgb(chip) == (1, 1, 0), what="yellow = red + green")
    bus.call("gpio", "set_button_light", {"color": "green", "pattern": "blink", "period_s": 0.05})
    start = len(chip.history(GREEN))
    wait_until(lambda: len(chip.history(GREEN)) >= start + 4, what="green blinking")
    assert chip.level(RED) == 0 and chip.level(BLUE) == 0
    back = bus.call("gpio", "set_button_light", {"auto": True})
    assert back["button"]["source"] == "status" and back["button"]["color"] == "blue"
    wait_until(lambda: rgb(chip) == (0, 0, 1), what="status blue again")


def test_identify_blinks_then_returns_to_the_previous_light(start_gpio, bus, record):
    _svc, chip = start_gpio()
    bus.call("gpio", "set_button_light", {"color": "red"})
    lights = record("gpio", "state", "lights")
    lights.wait_for(lambda d: d["button"]["source"] == "manual")
    mark = lights.mark()
    reply = bus.call("gpio", "identify", {"seconds": 0.4, "period_s": 0.1})
    assert reply["message"] == "identifying" and reply["seconds"] == 0.4
    during = bus.call("gpio", "get_lights")["button"]
    assert during == {"color": "blue", "pattern": "blink", "period_s": 0.1, "source": "identify"}
    start = len(chip.history(BLUE))
    wait_until(lambda: len(chip.history(BLUE)) >= start + 3, what="blue toggling during identify")
    lights.wait_for(lambda d: d["button"]["source"] == "identify", since=mark)
    lights.wait_for(lambda d: d["button"] == {"color": "red", "pattern": "solid", "period_s": 1.0, "source": "manual"},
                    since=mark)
    wait_until(lambda: rgb(chip) == (1, 0, 0), what="red again after identify")


# -- board lines -----------------------------------------------------------------------------------------------------

def test_board_lines_idle_high_and_audio_on_at_start(start_gpio, bus):
    _svc, chip = start_gpio()
    assert [chip.level(o) for o in (RESET, HALT, ISP, AUDIO)] == [1, 1, 1, 1]
    board = bus.wait_for(bus.topic("gpio", "state", "board"))[1]
    assert board["backend"] == "sim" and board["revision"] == "2.1" and board["audio"] is True
    assert board["lines"]["reset"] == RESET and board["lines"]["door_sw_filt"] == 20


def test_smoothie_reset_and_halt_pulse_their_lines(start_gpio, bus):
    _svc, chip = start_gpio()
    reset = bus.call("gpio", "smoothie_reset", {"pulse_s": 0.01, "settle_s": 0})
    assert reset == {"lines": ["reset"], "pulse_s": 0.01, "settle_s": 0.0}
    history = chip.history(RESET)
    assert [lvl for _t, lvl in history] == [1, 0, 1]
    assert history[2][0] - history[1][0] >= 10_000_000  # held low for the whole pulse
    bus.call("gpio", "smoothie_halt", {"pulse_s": 0.01, "settle_s": 0})
    assert levels(chip, HALT) == [1, 0, 1] and levels(chip, RESET) == [1, 0, 1]


def test_enter_bootloader_holds_isp_low_through_the_reset(start_gpio, bus):
    _svc, chip = start_gpio()
    assert bus.call("gpio", "enter_bootloader", {"pulse_s": 0.005, "settle_s": 0})["lines"] == ["reset", "isp"]
    reset, isp = chip.history(RESET), chip.history(ISP)
    assert [lvl for _t, lvl in reset] == [1, 0, 1] and [lvl for _t, lvl in isp] == [1, 0, 1]
    assert isp[1][0] < reset[2][0] < isp[2][0]  # reset comes out of low while ISP is still low


def test_audio(start_gpio, bus, record):
    _svc, chip = start_gpio()
    board = record("gpio", "state", "board")
    assert bus.call("gpio", "audio", {"enabled": False}) == {"enabled": False}
    assert chip.level(AUDIO) == 0
    board.wait_for(lambda d: d["audio"] is False)
    bus.call("gpio", "audio", {"enabled": True})
    assert chip.level(AUDIO) == 1


# -- inputs ----------------------------------------------------------------------------------------------------------

def test_door_starts_closed(start_gpio, bus):
    start_gpio()
    door = bus.wait_for(bus.topic("gpio", "state", "door"))[1]
    assert door["door"] == "closed" and door["window"] is None and door["since"].endswith("Z")


def test_a_bounce_train_shorter_than_the_window_is_one_event(start_gpio, bus, record):
    start_gpio(debounce_ms=20)
    events = record("gpio", "event", "door")
    state = record("gpio", "state", "door")
    opened = bus.call("gpio", "sim_set_input", {"input": "door", "active": True, "bounces": 5, "bounce_gap_ms": 1})
    assert opened == {"line": "window_door_sw/door_sw_filt/window_sw_filt", "offset": 20, "level": 0, "edges": 11}
    state.wait_for(lambda d: d["door"] == "open")
    bus.call("gpio", "sim_set_input", {"input": "door", "active": False, "bounces": 5, "bounce_gap_ms": 1})
    state.wait_for(lambda d: d["door"] == "closed", since=state.payloads().index(
        next(p for p in state.payloads() if p["door"] == "open")))
    events.wait_for(lambda d: d["state"] == "closed")
    assert [(e["switch"], e["state"]) for e in events.payloads()] == [("door", "open"), ("door", "closed")]
    assert bus.call("gpio", "get_lights")  # the service is still fine


def test_changes_slower_than_the_window_are_each_an_event(start_gpio, bus, record):
    start_gpio(debounce_ms=20)
    events = record("gpio", "event", "door")
    # open, 60 ms later closed, 60 ms later open: three real changes, each longer than the window
    bus.call("gpio", "sim_set_input", {"input": "door", "active": True, "bounces": 1, "bounce_gap_ms": 60})
    events.wait_for(lambda _d: len(events.payloads()) >= 3)
    assert [e["state"] for e in events.payloads()] == ["open", "closed", "open"]
    assert bus.wait_for(bus.topic("gpio", "state", "door"), lambda _t, d: d["door"] == "open")


def test_button_pressed_released_and_long_press(start_gpio, bus, record):
    start_gpio(long_press_s=0.3)
    events = record("gpio", "event", "button")
    bus.call("gpio", "sim_set_input", {"input": "button", "active": True, "bounces": 3})
    events.wait_for(lambda d: d["action"] == "pressed")
    bus.call("gpio", "sim_set_input", {"input": "button", "active": False, "bounces": 3})
    events.wait_for(lambda d: d["action"] == "released")
    assert [e["action"] for e in events.payloads()] == ["pressed", "released"]
    bus.call("gpio", "sim_set_input", {"input": "button", "active": True})
    held = events.wait_for(lambda d: d["action"] == "long_press")
    assert held["held_s"] == 0.3
    mark = events.mark()
    bus.call("gpio", "sim_set_input", {"input": "button", "active": False})
    released = events.wait_for(lambda d: d["action"] == "released", since=mark)
    assert released["held_s"] >= 0.3
    assert [e["action"] for e in events.payloads()] == ["pressed", "released", "pressed", "long_press", "released"]


def test_refresh_board_reports_door_and_window_apart(start_gpio, bus, record):
    start_gpio(chip=SimChip(initial={17: 0, 27: 1}))  # revision bits of an "A" board
    board = bus.wait_for(bus.topic("gpio", "state", "board"))[1]
    assert board["revision"] == "A" and board["lines"]["door_sw_filt"] == 12 and board["lines"]["window_sw_filt"] == 16
    state = record("gpio", "state", "door")
    state.wait_for(lambda d: d["door"] == "closed" and d["window"] == "closed")
    events = record("gpio", "event", "door")
    assert bus.call("gpio", "sim_set_input", {"input": "window", "active": True})["offset"] == 16
    state.wait_for(lambda d: d["window"] == "open")
    assert state.payloads()[-1]["door"] == "closed"
    events.wait_for(lambda d: d["switch"] == "window")
    assert [(e["switch"], e["state"]) for e in events.payloads()] == [("window", "open")]


# -- the status light ------------------------------------------------------------------------------------------------

def publish_retained(bus, topic_name, payload: bytes):
    bus.connection.publish(topic_name, payload, kind="state", retain=True)


def test_status_light_follows_the_services_and_the_smoothie_alarm(start_gpio, bus, record, device):
    _svc, chip = start_gpio(status_blink_period_s=0.1)
    lights = record("gpio", "state", "lights")
    lights.wait_for(lambda d: d["button"]["color"] == "blue" and d["button"]["pattern"] == "solid")

    def shown(color, pattern):
        """The light changes to this look after what the test did last."""
        found = lights.wait_for(lambda d: d["button"]["color"] == color and d["button"]["pattern"] == pattern
                                and d["button"]["source"] == "status", since=mark[0])
        mark[0] = lights.mark()
        return found

    mark = [lights.mark()]

    publish_retained(bus, f"benchbus/{device}/smoothie/$state", b'{"state": "starting"}')
    shown("blue", "blink")
    start = len(chip.history(BLUE))
    wait_until(lambda: len(chip.history(BLUE)) >= start + 3, what="blue blinking while smoothie starts")
    publish_retained(bus, f"benchbus/{device}/smoothie/$state", b'{"state": "ready"}')
    shown("blue", "solid")
    publish_retained(bus, f"benchbus/{device}/smoothie/state/alarm",
                     b'{"active": true, "message": "ALARM: Hard limit +X", "since": null}')
    shown("red", "solid")
    wait_until(lambda: rgb(chip) == (1, 0, 0), what="red LED during the alarm")
    publish_retained(bus, f"benchbus/{device}/smoothie/state/alarm", b'{"active": false}')
    shown("blue", "solid")
    publish_retained(bus, f"benchbus/{device}/samd/$state", b'{"state": "degraded", "reason": "port gone"}')
    shown("blue", "blink")
    publish_retained(bus, f"benchbus/{device}/samd/$state", b"")  # its retained state cleared: gone for good
    shown("blue", "solid")
    wait_until(lambda: rgb(chip) == (0, 0, 1), what="solid blue")


def test_the_light_goes_off_and_the_lines_free_when_stopping(start_gpio, bus):
    svc, chip = start_gpio()
    bus.call("gpio", "identify", {"seconds": 60})
    svc.stop()
    assert rgb(chip) == (0, 0, 0)
    assert chip.consumer_of(BLUE) is None and chip.consumer_of(20) is None
    last = bus.wait_for(bus.topic("gpio", "state", "lights"))[1]
    assert last["button"]["color"] == "off"


# -- claiming and errors ---------------------------------------------------------------------------------------------

def test_a_line_held_by_another_process_degrades_then_recovers(start_gpio, bus, device):
    chip = SimChip()
    blinker = chip.request("ot-blinkenlights", {BLUE: 1}, [])
    start_gpio(chip=chip, claim_retry_s=0.2)
    state = bus.wait_for(f"benchbus/{device}/gpio/$state", lambda _t, d: d["state"] == "degraded")[1]
    assert "blue_button (line 13)" in state["reason"] and "ot-blinkenlights" in state["reason"]
    with pytest.raises(BusError) as caught:
        bus.call("gpio", "set_rail_lights", {"on": True})
    assert caught.value.code == "unavailable" and "ot-blinkenlights" in caught.value.message
    blinker.release()
    bus.wait_for(f"benchbus/{device}/gpio/$state", lambda _t, d: d["state"] == "ready")
    assert bus.call("gpio", "set_rail_lights", {"on": True})["on"] is True
    assert chip.consumer_of(BLUE) == "benchbus-gpio"


@pytest.mark.parametrize("command,payload,field", [
    ("set_button_light", {}, "color is required"),
    ("set_button_light", {"color": "purple"}, "color"),
    ("set_button_light", {"color": "red", "auto": True}, "not both"),
    ("set_rail_lights", {"on": "maybe"}, "on"),
    ("identify", {"seconds": -1}, "seconds"),
    ("identify", {}, "seconds"),
    ("smoothie_reset", {"pulse_s": 10}, "pulse_s"),
    ("sim_set_input", {"input": "lid", "active": True}, "input"),
    ("audio", {"enabled": True, "volume": 3}, "volume"),
])
def test_bad_requests_are_refused_naming_the_field(start_gpio, bus, command, payload, field):
    _svc, chip = start_gpio()
    with pytest.raises(BusError) as caught:
        bus.call("gpio", command, payload)
    assert caught.value.code == "invalid_request" and field in caught.value.message
    assert chip.level(RESET) == 1 and bus.call("gpio", "get_lights")["on"] is False  # nothing happened, still fine
