"""gpio-service as its own process, as `benchbus up`, compose and systemd start it."""
import sys
from importlib import metadata

import pytest

from benchbus import BusError

from benchbus.settings import BrokerSettings
from benchbus.up import UpContext


def test_the_service_process_on_the_simulated_chip(spawn, bus):
    spawn(["python", "-m", "benchbus_gpio.service"], segment="gpio", env={"BENCHBUS_GPIO_BACKEND": "sim"})
    assert bus.wait_for(bus.topic("gpio", "state", "door"))[1]["door"] == "closed"
    bus.call("gpio", "sim_set_input", {"input": "door", "active": True, "bounces": 3})
    assert bus.wait_for(bus.topic("gpio", "event", "door"))[1]["state"] == "open"
    assert bus.call("gpio", "set_rail_lights", {"on": True}) ["on"] is True
    assert bus.call("gpio", "smoothie_reset", {"pulse_s": 0.001, "settle_s": 0})["lines"] == ["reset"]


def test_without_a_gpio_chip_the_real_backend_stays_degraded_and_says_why(spawn, bus, device, tmp_path):
    missing = tmp_path / "gpiochip9"
    handle = spawn(["python", "-m", "benchbus_gpio.service"], env={"BENCHBUS_GPIO_BACKEND": "gpiod",
                                                                    "BENCHBUS_GPIO_CHIP": str(missing)})
    state = bus.wait_for(f"benchbus/{device}/gpio/$state", lambda _t, d: d.get("state") == "degraded", 20)[1]
    # either the bindings are missing or the chip is: both are named, and the process keeps running
    assert "gpiod" in state["reason"] or str(missing) in state["reason"]
    assert "retrying" in state["reason"]
    assert handle.process.poll() is None
    with pytest.raises(BusError) as caught:
        bus.call("gpio", "get_lights")
    assert caught.value.code == "unavailable" and caught.value.message == state["reason"]


def test_benchbus_up_finds_the_service(tmp_path):
    entry = [e for e in metadata.entry_points(group="benchbus.up") if e.name == "gpio"]
    assert entry, "benchbus_gpio is not installed with its benchbus.up entry point"
    ctx = UpContext(broker=BrokerSettings(), device="d", data_dir=tmp_path, http_port=0)
    (unit,) = entry[0].load()(ctx)
    assert unit.segment == "gpio" and unit.env == {"BENCHBUS_GPIO_BACKEND": "sim"}
    assert unit.argv[:3] == [sys.executable, "-m", "benchbus_gpio.service"]
