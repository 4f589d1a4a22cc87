import threading
import time
from functools import partial

import pytest

from benchbus_gpio.service import GpioService
from benchbus_gpio.settings import GpioSettings
from benchbus_gpio.sim import SimChip


class Recorder:
    """Collects every message on a topic filter, in arrival order."""

    def __init__(self, bus, topic_filter):
        self.messages: list[tuple[str, object]] = []
        self._changed = threading.Condition()
        self.bus, self.topic_filter = bus, topic_filter
        self._handle = bus.subscribe(topic_filter, self._add)

    def _add(self, topic_name, data, _message):
        with self._changed:
            self.messages.append((topic_name, data))
            self._changed.notify_all()

    def payloads(self):
        with self._changed:
            return [data for _t, data in self.messages]

    def mark(self) -> int:
        """A place in the record: wait_for(..., since=mark) looks only at what came after it."""
        with self._changed:
            return len(self.messages)

    def wait_for(self, predicate, timeout=10.0, since=0):
        """The first payload satisfying predicate (waiting for it); fails the test naming what was seen."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for _t, data in self.messages[since:]:
                    if predicate(data):
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"nothing matching on {self.topic_filter}; saw {self.payloads()}")
                self._changed.wait(remaining)

    def close(self):
        self.bus.unsubscribe(self.topic_filter, self._handle)


@pytest.fixture
def record(bus):
    made = []

    def start(service, kind, name):
        recorder = Recorder(bus, bus.topic(service, kind, name))
        made.append(recorder)
        return recorder

    yield start
    for recorder in made:
        recorder.close()


@pytest.fixture
def gpio_settings(make_settings):
    def make(**fields):
        fields.setdefault("backend", "sim")
        fields.setdefault("long_press_s", 0.3)
        fields.setdefault("claim_retry_s", 0.2)
        fields.setdefault("status_blink_period_s", 0.1)
        return make_settings(GpioSettings, **fields)
    return make


@pytest.fixture
def start_gpio(serve, gpio_settings):
    """gpio-service on a simulated chip the test also holds (to flip inputs and read outputs)."""
    chips = []

    def start(chip=None, **fields):
        chip = chip or SimChip()
        chips.append(chip)
        service = serve(partial(GpioService, chip=chip), gpio_settings(**fields))
        return service, chip

    yield start
    for chip in chips:
        chip.close()


