"""gpio-service: holds the robot's GPIO lines and lets every client use them through the bus.

The board lines (reset, halt, ISP: `smoothie_reset`, `smoothie_halt`, `enter_bootloader`) are meant for the
smoothie-bridge only; the deployment's Mosquitto ACL lets no other client publish to those command topics.
"""
from __future__ import annotations

import sys
import threading
import time
from datetime import datetime, UTC

from benchbus import BusError, RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler
from benchbus_schemas import topics
from benchbus_schemas.envelope import Empty
from benchbus_schemas.gpio import (
    Audio, AudioResult, Board, ButtonEvent, ButtonLight, DoorEvent, DoorState, Identify, IdentifyResult, Lights,
    Pulse, PulseResult, SetButtonLight, SetRailLights, SimSetInput, SimSetInputResult,
)

from .backend import Chip, GpioError, LineBusy
from .debounce import ButtonAction
from .driver import Driver, SwitchChange
from .lines import bits_of_revision
from .settings import GpioSettings
from .sim import SimChip
from .status_light import OFF, ButtonLightLayers, Health, Look, alarm_active

SIM_INPUTS = {"button": "button_input", "door": "door_sw_filt", "window": "window_sw_filt"}


def iso_at(monotonic_ns: int | None = None) -> str:
    """ISO 8601 UTC (ms) of a CLOCK_MONOTONIC time (an edge's timestamp), or of now."""
    wall = time.time()
    if monotonic_ns is not None:
        wall -= (time.monotonic_ns() - monotonic_ns) / 1e9
    stamp = datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def make_chip(settings: GpioSettings) -> Chip:
    if settings.backend == "sim":
        rev_0, rev_1 = bits_of_revision(settings.sim_board_revision)
        return SimChip(initial={settings.lines.rev_0: rev_0, settings.lines.rev_1: rev_1})
    from .gpiod_backend import GpiodChip  # noqa: PLC0415 - only the real backend needs gpiod
    return GpiodChip(settings.chip, settings.revision_bits_marker)


class GpioService(Service[GpioSettings]):
    segment = "gpio"

    def __init__(self, settings: GpioSettings, chip: Chip | None = None):
        super().__init__(settings)
        self.chip = chip
        self._own_chip = chip is None
        self.driver: Driver | None = None
        self.health = Health(tuple(settings.status_ignore), settings.status_blink_period_s)
        self.layers = ButtonLightLayers(self.health.look())
        self._light_lock = threading.RLock()
        self._published_lights: Lights | None = None
        self._door_lock = threading.Lock()
        self._door_since = iso_at()
        self._not_held_reason = "the GPIO lines are not claimed yet"
        self._claim_lock = threading.Lock()
        self.watch(f"{topics.ROOT}/{settings.device}/+/$state", self.on_service_state)
        self.watch(topics.topic(settings.device, settings.smoothie_segment, "state", "alarm"), self.on_smoothie_alarm)
        self.every(settings.claim_retry_s, self.retry_claim)

    def on_start(self) -> None:
        self.claim()

    # -- claiming the lines ----------------------------------------------------------------------------------------

    def claim(self) -> bool:
        """Hold the lines; on failure stay degraded with the reason (the periodic retry calls this again)."""
        with self._claim_lock:
            if self.driver is not None and self.driver.held:
                return True
            try:
                if self.chip is None:
                    self.chip = make_chip(self.settings)
                if self.driver is None:
                    self.driver = self._make_driver(self.chip)
                lines = self.driver.claim()
            except LineBusy as busy:
                return self._cannot_claim(f"cannot claim the GPIO lines: {busy}; retrying every "
                                          f"{self.settings.claim_retry_s:g} s")
            except (GpioError, ValueError) as error:
                return self._cannot_claim(f"cannot claim the GPIO lines: {error}; retrying every "
                                          f"{self.settings.claim_retry_s:g} s")
            self.log.info("holding %s lines of %s (board %s): %s", self.chip.kind, self.chip.name, lines.revision,
                          lines.offsets)
            self._publish_board()
            self._publish_door(iso_at())
            self.refresh_light()
            if self.state == "degraded":
                self.ready()
            return True

    def _cannot_claim(self, reason: str) -> bool:
        self._not_held_reason = reason
        if self.state != "stopping":
            self.degraded(reason)
        return False

    def _make_driver(self, chip: Chip) -> Driver:
        s = self.settings
        return Driver(chip, s.lines, s.consumer, s.debounce_ms / 1000, s.long_press_s, s.board_revision,
                      s.audio_at_start, on_door=self._on_door, on_button=self._on_button, on_lost=self._on_lost)

    def _on_lost(self, error: Exception) -> None:
        self.log.error("lost the GPIO lines: %s", error)
        if self.driver is not None:
            self.driver.release()
        self._cannot_claim(f"lost the GPIO lines ({error}); re-claiming every {self.settings.claim_retry_s:g} s")

    def retry_claim(self) -> None:
        if self.driver is None or not self.driver.held:
            self.claim()

    def held_driver(self) -> Driver:
        driver = self.driver
        if driver is None or not driver.held:
            raise BusError("unavailable", self._not_held_reason)
        return driver

    # -- publishing ------------------------------------------------------------------------------------------------

    def _publish_board(self) -> None:
        driver = self.held_driver()
        lines, chip = driver.held_lines(), driver.chip
        used = {name: offset for name, offset in lines.offsets.items()
                if name != "window_door_sw" or not lines.separate_window}
        self.set_state("board", Board(backend=chip.kind, chip=chip.name, revision=driver.revision,
                                      lines=used, audio=bool(driver.get_line("audio_enable")),
                                      debounce_ms=self.settings.debounce_ms))

    def _door_state(self, since: str) -> DoorState:
        door_open, window_open = self.held_driver().door()
        window = None if window_open is None else ("open" if window_open else "closed")
        return DoorState(door="open" if door_open else "closed", window=window, since=since)

    def _publish_door(self, since: str) -> None:
        with self._door_lock:
            self._door_since = since
            self.set_state("door", self._door_state(since))

    def lights(self) -> Lights:
        driver = self.held_driver()
        look, source = self.layers.current(time.monotonic())
        button = ButtonLight(color=look.color, pattern=look.pattern, period_s=look.period_s, source=source)
        return Lights(on=bool(driver.get_line("frame_leds")), button=button)

    def refresh_light(self) -> None:
        """Show what the layers say now, and publish state/lights when it changed."""
        with self._light_lock:
            self.layers.set_status(self.health.look())
            look, _source = self.layers.current(time.monotonic())
            driver = self.driver
            if driver is None or not driver.held:
                return
            driver.show(look)
            self._publish_lights()

    def _publish_lights(self) -> Lights:
        with self._light_lock:
            lights = self.lights()
            if lights != self._published_lights:
                self.set_state("lights", lights)
                self._published_lights = lights
            return lights

    # -- inputs (called on the driver's input thread) --------------------------------------------------------------

    def _on_door(self, change: SwitchChange) -> None:
        at = iso_at(change.at_ns)
        self._publish_door(at)
        self.emit("door", DoorEvent(switch=change.switch, state="open" if change.open else "closed", at=at))

    def _on_button(self, action: ButtonAction) -> None:
        self.emit("button", ButtonEvent(action=action.action, at=iso_at(action.at_ns), held_s=action.held_s))

    # -- what the status light follows (called on the watch thread) ------------------------------------------------

    def on_service_state(self, topic_name: str, data) -> None:
        parsed = topics.parse(topic_name)
        if parsed is None or parsed[2] != "$state":
            return
        state = data.get("state") if isinstance(data, dict) else None
        self.health.service_state(parsed[1], state if isinstance(state, str) else None)
        self.refresh_light()

    def on_smoothie_alarm(self, _topic_name: str, data) -> None:
        active = alarm_active(data)
        if active is None:
            self.log.warning("ignored a smoothie alarm state it cannot read: %r", data)
            return
        self.health.alarm = active
        self.refresh_light()

    # -- commands --------------------------------------------------------------------------------------------------

    @handler("get_lights")
    def get_lights(self, _request: Empty, _ctx: RequestContext) -> Lights:
        return self.lights()

    @handler("set_rail_lights")
    def set_rail_lights(self, request: SetRailLights, _ctx: RequestContext) -> Lights:
        self.held_driver().set_line("frame_leds", 1 if request.on else 0)
        return self._publish_lights()

    @handler("set_button_light")
    def set_button_light(self, request: SetButtonLight, _ctx: RequestContext) -> Lights:
        self.held_driver()
        color = None if request.auto else request.color  # SetButtonLight: a color exactly when not auto
        self.layers.set_manual(None if color is None else Look(color, request.pattern, request.period_s))
        self.refresh_light()
        return self._publish_lights()

    @handler("identify")
    def identify(self, request: Identify, _ctx: RequestContext) -> IdentifyResult:
        self.held_driver()
        until = time.monotonic() + request.seconds
        self.layers.start_identify(Look(request.color, "blink", request.period_s), until)
        self.refresh_light()
        timer = threading.Timer(request.seconds + 0.002, self.refresh_light)  # then back to what the layers say
        timer.daemon = True
        timer.start()
        return IdentifyResult(seconds=request.seconds, until=iso_at(time.monotonic_ns() + int(request.seconds * 1e9)))

    def _pulse(self, names: list[str], request: Pulse) -> PulseResult:
        driver = self.held_driver()
        try:
            driver.pulse_low(names, request.pulse_s, request.settle_s)
        except GpioError as error:
            raise BusError("hardware_error", f"pulsing {', '.join(names)} failed: {error}") from None
        return PulseResult(lines=names, pulse_s=request.pulse_s, settle_s=request.settle_s)

    @handler("smoothie_reset")
    def smoothie_reset(self, request: Pulse, _ctx: RequestContext) -> PulseResult:
        return self._pulse(["reset"], request)

    @handler("smoothie_halt")
    def smoothie_halt(self, request: Pulse, _ctx: RequestContext) -> PulseResult:
        return self._pulse(["halt"], request)

    @handler("enter_bootloader")
    def enter_bootloader(self, request: Pulse, _ctx: RequestContext) -> PulseResult:
        # reset and ISP low together; reset released first, so the board starts in its bootloader; then ISP
        return self._pulse(["reset", "isp"], request)

    @handler("audio")
    def audio(self, request: Audio, _ctx: RequestContext) -> AudioResult:
        self.held_driver().set_line("audio_enable", 1 if request.enabled else 0)
        self._publish_board()
        return AudioResult(enabled=request.enabled)

    @handler("sim_set_input")
    def sim_set_input(self, request: SimSetInput, _ctx: RequestContext) -> SimSetInputResult:
        driver = self.held_driver()
        chip, lines = driver.chip, driver.held_lines()
        if not isinstance(chip, SimChip):
            raise BusError("unavailable", f"sim_set_input works only with the simulated backend; this service "
                                          f"holds the real chip {chip.name}")
        name = SIM_INPUTS[request.input]
        offset = lines.offsets[name]
        level = 0 if request.active else 1  # pressed / open pull the line low
        edges = chip.drive(offset, level, request.bounces, request.bounce_gap_ms / 1000)
        return SimSetInputResult(line=lines.name_of(offset), offset=offset, level=level, edges=edges)

    # -- stopping --------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """The LED goes off while stopping (whatever layer chose it), then the lines are let go."""
        if self._stopped.is_set():
            return
        self.health.stopping = True
        with self._light_lock:
            self.layers.clear_overrides()
            self.layers.set_status(OFF)
            if self.driver is not None and self.driver.held:
                self.driver.show(OFF)
                try:
                    self._publish_lights()
                except Exception:
                    self.log.exception("could not publish the lights while stopping")
        super().stop()
        if self.driver is not None:
            self.driver.close()
        if self._own_chip and self.chip is not None:
            self.chip.close()


def main(argv: list[str] | None = None) -> int:
    return run_service(GpioService, argv)


if __name__ == "__main__":
    sys.exit(main())
