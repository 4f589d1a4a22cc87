"""The Linux GPIO character device (/dev/gpiochipN) through the gpiod 2.x Python bindings: the real robot.

`gpiod` is imported only when this backend is opened, so the package works (simulated backend) where the
bindings are not installed; install them with the `gpiod` extra (`pip install benchbus-gpio[gpiod]`).

Inputs are requested with both-edge detection on CLOCK_MONOTONIC, so edge timestamps compare with
time.monotonic_ns(); debouncing is ours (debounce.py), the kernel's is left off so both backends behave alike.
A request the kernel refuses with EBUSY is reported naming the line and, where the kernel knows it, its consumer.
"""
from __future__ import annotations

import contextlib
import errno
import os
from typing import Any

from .backend import Chip, Edge, GpioError, LineBusy, LineRequest

REVISION_BITS_MARKER = "/proc/device-tree/soc/gpio@7e200000/gpio_rev_bit_pins"
EVENT_BATCH = 64


def import_gpiod() -> Any:
    try:
        import gpiod  # noqa: PLC0415 - optional dependency, imported when the real backend is chosen
    except ImportError:
        raise GpioError("the gpiod Python bindings (2.x) are not installed: pip install 'benchbus-gpio[gpiod]' "
                        "(or choose backend: sim)") from None
    if not hasattr(gpiod, "request_lines"):
        raise GpioError(f"gpiod {getattr(gpiod, '__version__', '?')} is the 1.x API; benchbus needs gpiod >= 2")
    return gpiod


class GpiodChip(Chip):
    kind = "gpiod"

    def __init__(self, path: str = "/dev/gpiochip0", revision_bits_marker: str = REVISION_BITS_MARKER):
        self.gpiod = import_gpiod()
        self.name = path
        self.revision_bits_marker = revision_bits_marker
        if not os.path.exists(path):
            raise GpioError(f"no GPIO chip at {path}")

    def _open(self):
        try:
            return self.gpiod.Chip(self.name)
        except OSError as error:
            raise GpioError(f"cannot open {self.name}: {error.strerror or error}") from None

    def request(self, consumer: str, outputs: dict[int, int], inputs: list[int]) -> GpiodRequest:
        line = self.gpiod.line
        config: dict = {}
        for offset, level in outputs.items():
            config[offset] = self.gpiod.LineSettings(direction=line.Direction.OUTPUT, output_value=_value(line, level))
        edge_inputs = tuple(o for o in inputs if o not in outputs)
        if edge_inputs:
            config[edge_inputs] = self.gpiod.LineSettings(direction=line.Direction.INPUT, edge_detection=line.Edge.BOTH,
                                                          event_clock=line.Clock.MONOTONIC)
        return GpiodRequest(self, self._request(consumer, config, list(outputs) + list(edge_inputs)))

    def read_levels(self, consumer: str, offsets: list[int]) -> dict[int, int]:
        settings = self.gpiod.LineSettings(direction=self.gpiod.line.Direction.INPUT)
        request = self._request(consumer, {tuple(offsets): settings}, offsets)
        try:
            return {offset: _level(request.get_value(offset)) for offset in offsets}
        finally:
            request.release()

    def revision_bits_wired(self) -> bool:
        return os.path.exists(self.revision_bits_marker)

    def _request(self, consumer: str, config: dict, offsets: list[int]):
        chip = self._open()
        try:
            return chip.request_lines(config=config, consumer=consumer)
        except OSError as error:
            if error.errno == errno.EBUSY:
                raise self._who_holds(chip, offsets) from None
            raise GpioError(f"requesting lines {sorted(offsets)} of {self.name} failed: {error}") from None
        except ValueError as error:  # an offset the chip does not have
            raise GpioError(f"{self.name} refused lines {sorted(offsets)}: {error}") from None
        finally:
            chip.close()

    def _who_holds(self, chip, offsets: list[int]) -> LineBusy:
        """The first of `offsets` the kernel says is used, with its consumer when it is known."""
        for offset in offsets:
            try:
                info = chip.get_line_info(offset)
            except (OSError, ValueError):
                continue
            if info.used:
                return LineBusy(offset, info.consumer or None)
        return LineBusy(offsets[0] if offsets else -1, None)


class GpiodRequest(LineRequest):
    def __init__(self, chip: GpiodChip, request):
        self.chip = chip
        self.request = request
        self._line = chip.gpiod.line
        self._rising = chip.gpiod.EdgeEvent.Type.RISING_EDGE

    def get(self, offset: int) -> int:
        return _level(self._call(self.request.get_value, offset))

    def set(self, offset: int, level: int) -> None:
        self._call(self.request.set_value, offset, _value(self._line, level))

    def fileno(self) -> int:
        return self.request.fd

    def wait_edges(self, timeout: float) -> bool:
        return bool(self._call(self.request.wait_edge_events, max(0.0, timeout)))

    def read_edges(self) -> list[Edge]:
        """Everything in the kernel's buffer now (read_edge_events blocks when it is empty, so ask first)."""
        edges: list[Edge] = []
        while self._call(self.request.wait_edge_events, 0):
            for event in self._call(self.request.read_edge_events, EVENT_BATCH):
                edges.append(Edge(event.line_offset, event.event_type == self._rising, event.timestamp_ns))
        return edges

    def release(self) -> None:
        with contextlib.suppress(Exception):  # already released (RequestReleasedError) or the chip is gone
            self.request.release()

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except OSError as error:
            raise GpioError(f"{self.chip.name}: {error.strerror or error}") from None
        except Exception as error:
            if type(error).__name__ in ("RequestReleasedError", "ChipClosedError"):
                raise GpioError(f"{self.chip.name}: the line request was released") from None
            raise


def _value(line, level: int):
    return line.Value.ACTIVE if level else line.Value.INACTIVE


def _level(value) -> int:
    """gpiod.line.Value.ACTIVE (1) or INACTIVE (0); the lines are not active-low, so active is high."""
    return 1 if int(getattr(value, "value", value)) == 1 else 0
