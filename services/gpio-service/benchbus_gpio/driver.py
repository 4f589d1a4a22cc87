"""The robot's GPIO, as the hardware sees it (no MQTT here): claiming the lines, the board revision, the button
LED's colors and blinking, the rail lights, the board-line pulses, and the input loop that turns timestamped edge
events into debounced door and button changes.
"""
from __future__ import annotations

import logging
import os
import select
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable

from .backend import Chip, GpioError, LineBusy, LineRequest
from .debounce import Button, ButtonAction, Debouncer
from .lines import OG, UNKNOWN, BoardLines, LineMap, resolve, revision_from_bits
from .status_light import OFF, Look

log = logging.getLogger("benchbus.gpio.driver")

# which of (red, green, blue) each color lights
RGB = {
    "off": (0, 0, 0), "red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1),
    "yellow": (1, 1, 0), "cyan": (0, 1, 1), "magenta": (1, 0, 1), "white": (1, 1, 1),
}
LED_LINES = ("red_button", "green_button", "blue_button")
BOARD_LINES_IDLE = {"halt": 1, "isp": 1, "reset": 1}  # active-low lines of the Smoothieboard, released
INPUT_WAKE_S = 5.0  # the input loop sleeps at most this long with nothing to do (release() wakes it at once)


@dataclass(frozen=True)
class SwitchChange:
    switch: str  # door | window
    open: bool
    at_ns: int


class Driver:
    def __init__(self, chip: Chip, line_map: LineMap, consumer: str = "benchbus-gpio", debounce_s: float = 0.02,
                 long_press_s: float = 2.0, board_revision: str = "auto", audio_at_start: bool = True,
                 on_door: Callable[[SwitchChange], None] = lambda _c: None,
                 on_button: Callable[[ButtonAction], None] = lambda _a: None,
                 on_lost: Callable[[Exception], None] = lambda _e: None):
        self.chip = chip
        self.line_map = line_map
        self.consumer = consumer
        self.debounce_s = debounce_s
        self.long_press_s = long_press_s
        self.board_revision = board_revision
        self.audio_at_start = audio_at_start
        self.on_door, self.on_button, self.on_lost = on_door, on_button, on_lost
        self.lines: BoardLines | None = None
        self.revision: str | None = None
        self._request: LineRequest | None = None
        self._io = threading.Lock()  # one call into the request at a time (gpiod requests are not thread-safe)
        self._board = threading.Lock()  # one board-line sequence at a time
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # release() wakes the input loop through this
        os.set_blocking(self._wake_r, False)
        self._debouncer: Debouncer | None = None
        self._button: Button | None = None
        self._input_thread: threading.Thread | None = None
        self._led = threading.Condition()
        self._look: Look = OFF
        self._look_since = time.monotonic()
        self._led_stopped = False
        self._led_thread = threading.Thread(target=self._led_loop, name="gpio-led", daemon=True)
        self._led_thread.start()

    # -- claiming --------------------------------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        return self._request is not None

    def claim(self) -> BoardLines:
        """Find the board revision, hold every line, read the inputs, start the input loop. Raises LineBusy."""
        revision = self._find_revision()
        lines = resolve(self.line_map, revision)
        outputs = {offset: 0 for offset in lines.outputs.values()}
        for name, level in BOARD_LINES_IDLE.items():
            outputs[lines.offsets[name]] = level
        outputs[lines.offsets["audio_enable"]] = 1 if self.audio_at_start else 0
        inputs = sorted({lines.offsets[name] for name in ("button_input", "door_sw_filt", "window_sw_filt")})
        try:
            request = self.chip.request(self.consumer, outputs, inputs)
        except LineBusy as busy:
            raise busy.named(lines.name_of(busy.offset)) from None
        levels = {offset: request.get(offset) for offset in inputs}
        self.revision, self.lines, self._request = revision, lines, request
        debouncer, button = Debouncer(self.debounce_s, levels), Button(self.long_press_s)
        self._debouncer, self._button = debouncer, button
        if self.button_pressed():
            button.change(True, time.monotonic_ns())
        self._stop.clear()
        self._drain_wake()
        self._input_thread = threading.Thread(target=self._input_loop, args=(request, debouncer, button),
                                              name="gpio-input", daemon=True)
        self._input_thread.start()
        with self._led:
            self._led.notify_all()
        return lines

    def _find_revision(self) -> str:
        if self.board_revision != "auto":
            return self.board_revision
        if not self.chip.revision_bits_wired():
            return OG
        bits = (self.line_map.rev_0, self.line_map.rev_1)
        try:
            levels = self.chip.read_levels(self.consumer, list(bits))
        except LineBusy as busy:
            raise busy.named("rev_0" if busy.offset == bits[0] else "rev_1") from None
        except GpioError as error:
            log.warning("could not read the board-revision bits (%s); using the OG line numbers", error)
            return UNKNOWN
        return revision_from_bits(levels[bits[0]], levels[bits[1]])

    def release(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        request, self._request = self._request, None
        thread = self._input_thread
        if request is not None and thread is not None and thread is not threading.current_thread():
            thread.join(INPUT_WAKE_S * 4)
        if request is not None:
            with self._io:
                try:
                    request.release()
                except Exception:
                    log.exception("releasing the lines failed")

    def close(self) -> None:
        self.release()
        with self._led:
            self._led_stopped = True
            self._led.notify_all()

    # -- outputs ---------------------------------------------------------------------------------------------------

    def held_lines(self) -> BoardLines:
        """The lines of the board held now; GpioError when none are held."""
        return self._require()[1]

    def _require(self) -> tuple[LineRequest, BoardLines]:
        request, lines = self._request, self.lines
        if request is None or lines is None:
            raise GpioError("the GPIO lines are not held")
        return request, lines

    def set_line(self, name: str, level: int) -> None:
        request, lines = self._require()
        with self._io:
            request.set(lines.offsets[name], level)

    def get_line(self, name: str) -> int:
        request, lines = self._require()
        with self._io:
            return request.get(lines.offsets[name])

    def pulse_low(self, names: list[str], pulse_s: float, settle_s: float,
                  release_order: list[str] | None = None) -> None:
        """Drive `names` low together, then release them high one at a time, `pulse_s` apart, then wait `settle_s`.

        One line: the reset or halt pulse. ISP + reset released reset first: the Smoothieboard's bootloader entry."""
        order = release_order or names
        with self._board:
            for name in names:
                self.set_line(name, 0)
            for name in order:
                time.sleep(pulse_s)
                self.set_line(name, 1)
            time.sleep(settle_s)

    def show(self, look: Look) -> None:
        """Show a look on the button LED (a blink starts with the LED on)."""
        with self._led:
            if look != self._look:
                self._look, self._look_since = look, time.monotonic()
                self._led.notify_all()

    def _led_loop(self) -> None:
        shown: tuple[LineRequest, str] | None = None  # what this request's lines show now
        with self._led:
            while not self._led_stopped:
                request = self._request
                if request is None:
                    self._led.wait()
                    continue
                look, elapsed = self._look, time.monotonic() - self._look_since
                color = look.color if look.lit(elapsed) else "off"
                if shown != (request, color):
                    try:
                        for name, level in zip(LED_LINES, RGB[color], strict=True):
                            self.set_line(name, level)
                        shown = (request, color)
                    except GpioError:
                        shown = None
                if look.pattern == "blink" and look.color != "off":
                    half = look.period_s / 2
                    self._led.wait(half - (elapsed % half) + 0.0005)
                else:
                    self._led.wait()

    # -- inputs ----------------------------------------------------------------------------------------------------

    def button_pressed(self) -> bool:
        debouncer, lines = self._debouncer, self.lines
        if debouncer is None or lines is None:
            return False
        return debouncer.stable[lines.offsets["button_input"]] == 0  # normally high: low is pressed

    def door(self) -> tuple[bool, bool | None]:
        """(door open, window open or None where one switch senses both), debounced; 1 is closed."""
        _request, lines = self._require()
        if self._debouncer is None:
            raise GpioError("the GPIO lines are not held")
        stable = self._debouncer.stable
        door_open = stable[lines.offsets["door_sw_filt"]] == 0
        window_open = stable[lines.offsets["window_sw_filt"]] == 0 if lines.separate_window else None
        return door_open, window_open

    def _input_loop(self, request: LineRequest, debouncer: Debouncer, button: Button) -> None:
        while not self._stop.is_set():
            deadlines = [d for d in (debouncer.next_deadline(), button.next_deadline()) if d is not None]
            timeout = INPUT_WAKE_S
            if deadlines:
                timeout = min(timeout, max(0.0, (min(deadlines) - time.monotonic_ns()) / 1e9))
            try:
                select.select([request.fileno(), self._wake_r], [], [], timeout)
                if self._stop.is_set():
                    return
                now = time.monotonic_ns()  # every edge up to now is in the buffer once we read it below
                with self._io:
                    edges = request.read_edges()
            except Exception as error:
                if self._stop.is_set():
                    return
                log.error("reading edge events failed: %s", error)
                self.on_lost(error)
                return
            for edge in edges:
                debouncer.feed(edge)
            for change in debouncer.due(now):
                self._dispatch(change.offset, change.level, change.started_ns)
            for action in button.due(now):
                self._safely(self.on_button, action)

    def _dispatch(self, offset: int, level: int, at_ns: int) -> None:
        lines, button = self.lines, self._button
        if lines is None or button is None:  # released meanwhile
            return
        if offset == lines.offsets["button_input"]:
            for action in button.due(at_ns) + button.change(level == 0, at_ns):
                self._safely(self.on_button, action)
            return
        if offset == lines.offsets["door_sw_filt"]:
            self._safely(self.on_door, SwitchChange("door", level == 0, at_ns))
        if lines.separate_window and offset == lines.offsets["window_sw_filt"]:
            self._safely(self.on_door, SwitchChange("window", level == 0, at_ns))

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 64):
                pass
        except BlockingIOError:
            pass

    @staticmethod
    def _safely(callback, value) -> None:
        try:
            callback(value)
        except Exception:  # a publishing problem must not end the input loop
            log.exception("input callback failed")
