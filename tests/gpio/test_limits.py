"""Strict values at gpio-service (issue 15): numbers given as strings, NaN, infinity and `"yes"` for a boolean are
refused naming the field, and no line changes."""
import pytest

from benchbus import BusError
from benchbus.testing import wait_until

RAIL, BLUE, HALT, RESET, AUDIO = 6, 13, 18, 24, 21


@pytest.mark.parametrize("command,payload,field", [
    ("set_rail_lights", {"on": "true"}, "on"),
    ("set_rail_lights", {"on": 1}, "on"),
    ("identify", {"seconds": "5"}, "seconds"),
    ("identify", {"seconds": float("inf")}, "seconds"),
    ("identify", {"seconds": float("nan")}, "seconds"),
    ("set_button_light", {"color": "red", "pattern": "blink", "period_s": "1"}, "period_s"),
    ("smoothie_reset", {"pulse_s": float("nan")}, "pulse_s"),
    ("smoothie_halt", {"pulse_s": "0.1"}, "pulse_s"),
    ("enter_bootloader", {"settle_s": float("inf")}, "settle_s"),
    ("audio", {"enabled": "yes"}, "enabled"),
    ("sim_set_input", {"input": "door", "active": "false"}, "active"),
])
def test_strings_nan_and_infinity_never_drive_a_line(start_gpio, bus, command, payload, field):
    _svc, chip = start_gpio()
    # the status light blinks until the device's services are ready: compare the lines once it is solid and the
    # LED's thread shows it (get_lights says solid a moment before the line is lit: seen under load, 13 went 0 -> 1)
    wait_until(lambda: bus.call("gpio", "get_lights")["button"]["pattern"] == "solid" and chip.level(BLUE) == 1,
               what="a solid status light, shown")
    before = {offset: chip.level(offset) for offset in (RAIL, BLUE, HALT, RESET, AUDIO)}
    with pytest.raises(BusError) as caught:
        bus.call("gpio", command, payload)
    assert caught.value.code == "invalid_request" and f"'{field}" in caught.value.message, caught.value.message
    assert {offset: chip.level(offset) for offset in before} == before
    assert bus.call("gpio", "set_rail_lights", {"on": True})["on"] is True  # real values still work
