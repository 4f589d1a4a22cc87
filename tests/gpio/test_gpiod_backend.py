"""The real backend (gpiod 2.x on a GPIO character device).

Where the kernel offers gpio-sim (configfs), a simulated chip is created and the backend's line requests, edge
reading and busy-line errors run against the kernel's own GPIO character device; elsewhere those tests are
skipped with the reason (a kernel fact, not an install one). The error paths that need no chip run everywhere.
"""
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import gpiod
import pytest

from benchbus.testing import wait_until
from benchbus_gpio.backend import GpioError, LineBusy
from benchbus_gpio.driver import Driver
from benchbus_gpio.gpiod_backend import GpiodChip
from benchbus_gpio.lines import LineMap

CONFIGFS = Path("/sys/kernel/config/gpio-sim")


def test_a_missing_chip_is_named(tmp_path):
    with pytest.raises(GpioError, match="no GPIO chip at .*gpiochip7"):
        GpiodChip(str(tmp_path / "gpiochip7"))


def test_a_device_that_is_not_a_gpio_chip_is_refused_clearly():
    chip = GpiodChip("/dev/null")
    with pytest.raises(GpioError, match="cannot open /dev/null"):
        chip.request("benchbus-test", {6: 0}, [5])


def test_revision_bits_follow_the_device_tree_marker(tmp_path):
    marker = tmp_path / "gpio_rev_bit_pins"
    chip = GpiodChip("/dev/null", revision_bits_marker=str(marker))
    assert not chip.revision_bits_wired()
    marker.write_bytes(b"")
    assert chip.revision_bits_wired()


# -- against the kernel's gpio-sim -------------------------------------------------------------------------------------

def _gpio_sim_available() -> str | None:
    """None when a gpio-sim chip can be made here, else why not."""
    if os.geteuid() != 0:
        return "gpio-sim needs root to create chips in configfs"
    if not CONFIGFS.is_dir() and shutil.which("modprobe"):
        subprocess.run(["modprobe", "gpio-sim"], capture_output=True, check=False)
    if not CONFIGFS.is_dir() and Path("/sys/kernel/config").is_dir() and not any(Path("/sys/kernel/config").iterdir()):
        subprocess.run(["mount", "-t", "configfs", "none", "/sys/kernel/config"], capture_output=True, check=False)
    if not CONFIGFS.is_dir():
        return (f"this machine's kernel offers no gpio-sim ({CONFIGFS} is missing: CONFIG_GPIO_SIM, "
                "CONFIG_CONFIGFS_FS or the module is absent), so the gpiod backend cannot meet a kernel GPIO chip")
    return None


class SimulatedKernelChip:
    """A gpio-sim device with one bank of 54 lines, and its sysfs knobs (pull an input, read an output)."""

    def __init__(self):
        self.device = CONFIGFS / f"benchbus-{uuid.uuid4().hex[:8]}"
        self.bank = self.device / "gpio-bank0"
        self.bank.mkdir(parents=True)
        (self.bank / "num_lines").write_text("54")
        (self.device / "live").write_text("1")
        self.chip_name = (self.bank / "chip_name").read_text().strip()
        self.path = f"/dev/{self.chip_name}"
        self.sysfs = Path("/sys/devices/platform") / (self.device / "dev_name").read_text().strip() / self.chip_name

    def pull(self, offset: int, level: int) -> None:
        (self.sysfs / f"sim_gpio{offset}" / "pull").write_text("pull-up" if level else "pull-down")

    def output(self, offset: int) -> int:
        return int((self.sysfs / f"sim_gpio{offset}" / "value").read_text())

    def remove(self) -> None:
        (self.device / "live").write_text("0")
        self.bank.rmdir()
        self.device.rmdir()


@pytest.fixture
def kernel_chip():
    reason = _gpio_sim_available()
    if reason:
        pytest.skip(reason)
    chip = SimulatedKernelChip()
    for offset in (5, 12, 16, 20):  # the inputs rest high, as on the robot (pull-ups)
        chip.pull(offset, 1)
    yield chip
    chip.remove()


def test_outputs_and_inputs_through_the_kernel(kernel_chip):
    chip = GpiodChip(kernel_chip.path)
    request = chip.request("benchbus-test", {6: 0, 24: 1}, [5, 20])
    try:
        assert kernel_chip.output(24) == 1 and kernel_chip.output(6) == 0
        request.set(6, 1)
        assert kernel_chip.output(6) == 1
        assert request.get(20) == 1
        kernel_chip.pull(20, 0)
        assert request.wait_edges(5)
        edges = request.read_edges()
        assert [(e.offset, e.rising) for e in edges] == [(20, False)]
        assert abs(edges[0].timestamp_ns - time.monotonic_ns()) < 5e9  # CLOCK_MONOTONIC, like ours
        assert request.read_edges() == []  # nothing left, and it did not block
    finally:
        request.release()


def test_a_held_line_names_its_consumer(kernel_chip):
    holder = gpiod.request_lines(kernel_chip.path, consumer="ot-blinkenlights",
                                 config={13: gpiod.LineSettings(direction=gpiod.line.Direction.OUTPUT)})
    try:
        with pytest.raises(LineBusy) as caught:
            GpiodChip(kernel_chip.path).request("benchbus-gpio", {6: 0, 13: 0}, [5])
        assert caught.value.offset == 13 and caught.value.consumer == "ot-blinkenlights"
    finally:
        holder.release()


def test_the_driver_debounces_kernel_edges(kernel_chip):
    seen = []
    driver = Driver(GpiodChip(kernel_chip.path, revision_bits_marker="/nonexistent"), LineMap(), debounce_s=0.02,
                    on_door=seen.append)
    driver.claim()
    try:
        for level in (0, 1, 0):  # a fast bounce train: one change
            kernel_chip.pull(20, level)
        wait_until(lambda: seen, 5, "the door change")
        time.sleep(0.1)  # the point: five debounce times more, and still that one change (no late bounce comes through)
        assert [(c.switch, c.open) for c in seen] == [("door", True)]
        assert driver.door() == (True, None)
    finally:
        driver.close()


def test_the_service_on_the_kernel_chip(kernel_chip, serve, make_settings, bus, device):
    from benchbus_gpio.service import GpioService
    from benchbus_gpio.settings import GpioSettings

    holder = gpiod.request_lines(kernel_chip.path, consumer="ot-blinkenlights",
                                 config={13: gpiod.LineSettings(direction=gpiod.line.Direction.OUTPUT)})
    settings = make_settings(GpioSettings, backend="gpiod", chip=kernel_chip.path, claim_retry_s=0.2,
                             revision_bits_marker="/nonexistent")
    serve(GpioService, settings)
    state = bus.wait_for(f"benchbus/{device}/gpio/$state", lambda _t, d: d["state"] == "degraded")[1]
    assert "blue_button (line 13)" in state["reason"] and "ot-blinkenlights" in state["reason"]
    holder.release()
    bus.wait_for(f"benchbus/{device}/gpio/$state", lambda _t, d: d["state"] == "ready")
    bus.call("gpio", "set_rail_lights", {"on": True})
    assert kernel_chip.output(6) == 1
    kernel_chip.pull(20, 0)
    assert bus.wait_for(bus.topic("gpio", "event", "door"))[1]["state"] == "open"
