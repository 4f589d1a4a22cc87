"""gpio-service settings (/etc/benchbus/gpio.yaml; every field also from BENCHBUS_GPIO_<FIELD>)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from benchbus import ServiceSettings

from .lines import LineMap


class GpioSettings(ServiceSettings):
    backend: Literal["gpiod", "sim"] = Field("gpiod", description="gpiod: the real chip (the robot); sim: a "
                                                                 "simulated chip (laptops, CI, compose)")
    chip: str = Field("/dev/gpiochip0", description="the GPIO character device (gpiod backend)")
    consumer: str = Field("benchbus-gpio", description="the name the kernel shows as the lines' holder")
    lines: LineMap = LineMap()
    board_revision: Literal["auto", "2.1", "A", "B", "C"] = Field(
        "auto", description="auto: read the revision bits where the device tree says they are wired")
    revision_bits_marker: str = Field("/proc/device-tree/soc/gpio@7e200000/gpio_rev_bit_pins",
                                      description="present when the board has revision bits (gpiod backend)")
    debounce_ms: float = Field(20.0, ge=0, le=1000)
    long_press_s: float = Field(2.0, gt=0, le=60)
    audio_at_start: bool = Field(True, description="enable the speaker amplifier when the lines are claimed")
    claim_retry_s: float = Field(2.0, gt=0, le=600, description="how often to retry lines another process holds")
    status_blink_period_s: float = Field(1.0, ge=0.05, le=10, description="blink period while services start")
    status_ignore: list[str] = Field(default_factory=list,
                                     description="services the status light does not wait for")
    smoothie_segment: str = Field("smoothie", description="whose retained state/alarm turns the light red")
    sim_board_revision: Literal["2.1", "A", "B", "C"] = Field(
        "2.1", description="the board the simulated chip pretends to be (its revision bits)")
