"""`benchbus-smoothie`: the smoothie-bridge, the only process that opens the Smoothieboard UART.

Every motion command passes, in this order: the travel check (invalid_request, nothing sent), the lease, then,
holding the driver's lock (so a door opened while it waited still counts), the gate (door, pause, alarm), the lease
again, and only then the board. Reads never need the lease. The retained state is published after every motion.
"""
from __future__ import annotations

import copy
import logging
import sys
import threading
from typing import Any
from collections.abc import Callable

from benchbus import BusError, CallTimeout, RequestContext, Service
from benchbus.runner import run_service
from benchbus.service import handler
from benchbus_schemas import topics
from benchbus_schemas.gpio import DoorState
from benchbus_schemas.limits import AXIS_SPEED_MAX_MM_S, MOTOR_CURRENT_MAX_A
from benchbus_schemas.smoothie import AXES
from pydantic import ValidationError

from .driver import SmoothieDriver
from .gcode import (AlarmLock, AlarmResponse, ErrorResponse, Halted, MotionAlarm, NoResponse, ParseError,
                    SmoothieError, strip_response, travel_check)
from .robot import (MOUNT_AXIS, MOUNT_RETRACT_MM, PLUNGER_AXIS, PLUNGER_HOMING_POSITION_MM, DriverConfig,
                    expand_home_axes)
from .safety import MotionGate, MotionLease
from .serial_link import SerialLink
from .settings import SmoothieSettings, by_name

log = logging.getLogger("benchbus.smoothie")


def door_from(data: Any) -> tuple[str, str]:
    """(open | closed | unknown, why) from gpio's state/door; anything that is not a valid DoorState is unknown."""
    try:
        state = DoorState.model_validate(data)
    except ValidationError:
        return "unknown", "gpio's door state is missing or not valid"
    if state.door == "open" or state.window == "open":
        return "open", "gpio"
    return "closed", "gpio"


class SmoothieService(Service[SmoothieSettings]):
    segment = "smoothie"

    def __init__(self, settings: SmoothieSettings):
        super().__init__(settings)
        config = DriverConfig(ack_timeout_s=settings.ack_timeout_s, retries=settings.retries,
                              execute_timeout_s=settings.execute_timeout_s, boot_timeout_s=settings.boot_timeout_s,
                              probe_timeout_s=settings.probe_timeout_s, current_table=settings.current_table,
                              steps_per_mm=by_name(settings.steps_per_mm), max_speeds=by_name(settings.max_speeds),
                              acceleration=by_name(settings.acceleration), default_speed=settings.default_speed,
                              recovery_pause_s=settings.recovery_pause_s,
                              home_ack_timeout_cap_s=settings.home_ack_timeout_cap_s)
        self.driver = SmoothieDriver(SerialLink(settings.port, settings.baudrate), config)
        self.lease = MotionLease()
        self.gate = MotionGate(settings.door_safety)
        self.booted = False
        self.gpio_ready = False
        self.halt_generation = 0
        self.pipettes: dict[str, Any] = {"left": None, "right": None}
        self.travel: dict[str, tuple[float, float]] = by_name(settings.travel)  # narrowed by configure_pipette
        self.mount_config: dict[str, dict | None] = {"left": None, "right": None}
        self._halt_lock = threading.Lock()
        self._published: dict[str, Any] = {}  # state name -> the value last published (retained at the broker)
        self._publish_lock = threading.Lock()
        if settings.use_gpio:
            self.watch(topics.lifecycle_topic(self.device, "gpio"), self._on_gpio_lifecycle)
            self.watch(self.topic("state", "door", service="gpio"), self._on_door)
        self.every(1.0, self._housekeeping)

    def on_start(self) -> None:
        """Boot the board; when it does not answer, stay degraded and keep trying (the bus stays served)."""
        self.publish_all()
        self._try_boot()

    def _try_boot(self) -> None:
        try:
            with self.driver.lock:
                self._boot()
        except SmoothieError as exc:
            self.booted = False
            self.driver.link.close()
            self.degraded(f"Smoothieboard at {self.settings.port} not ready: {exc.message}")

    def _boot(self) -> None:
        self._reset_board("boot")
        self.driver.link.open()
        try:
            self.driver.ping()
        except NoResponse:
            log.warning("no answer to the boot ping; resetting the board and trying once more")
            self._reset_board("no answer to the boot ping")
            self.driver.ping()
        self.driver.setup()
        self._reapply_mount_config()
        log.info("Smoothieboard firmware %s", self.driver.firmware_version)
        self.publish_if_changed("firmware", {"version": self.driver.firmware_version, "raw": self.driver.firmware_raw})
        if self.settings.read_pipettes_at_boot:
            self._read_pipettes(["left", "right"], quiet_motors=True)
        self.booted = True
        self.publish_all()
        if self.state != "starting":
            self.ready()

    def _reset_board(self, why: str) -> None:
        if not (self.settings.use_gpio and self.gpio_ready):
            log.info("reset pulse skipped (%s): gpio-service is not running", why)
            return
        try:
            self.call("gpio", "smoothie_reset", {}, timeout=self.settings.gpio_timeout_s)
        except BusError as exc:
            log.warning("reset pulse through gpio-service failed (%s): %s", why, exc)

    def _housekeeping(self) -> None:
        if self.lease.expire():
            self.publish_if_changed("lease", self.lease.info())
        if not self.booted and self.driver.lock.acquire(blocking=False):
            try:
                self._try_boot()
            finally:
                self.driver.lock.release()

    def _on_gpio_lifecycle(self, _topic: str, data: Any) -> None:
        self.gpio_ready = isinstance(data, dict) and data.get("state") == "ready"
        if isinstance(data, dict) and data.get("state") == "offline":
            self._door_is("unknown", "gpio-service is offline")  # its retained door state may be stale now

    def _on_door(self, _topic: str, data: Any) -> None:
        self._door_is(*door_from(data))

    def _door_is(self, door: str, why: str) -> None:
        log.info("door %s (%s)", door, why)
        for name, payload in self.gate.door_changed(door):
            self.emit(name, payload)
        self.publish_if_changed("paused", self.gate.pause_info())

    # -- publishing --------------------------------------------------------------------------------------------------

    def publish_if_changed(self, name: str, value: Any) -> None:
        """Publish retained `state/<name>` unless the broker already holds this very value.

        Every motion republished position, homed, engaged and alarm before its reply; on a plain move only the
        position changes, so three of the four validations and publishes were repeats of what the broker retains
        (and the Connection re-publishes every retained value on reconnect anyway)."""
        with self._publish_lock:
            if name in self._published and self._published[name] == value:
                return
            self.set_state(name, value)
            self._published[name] = copy.deepcopy(value)

    def publish_motion_state(self) -> None:
        d = self.driver
        self.publish_if_changed("position", d.position)
        self.publish_if_changed("homed", d.homed)
        self.publish_if_changed("engaged", d.engaged)
        self.publish_if_changed("alarm", self.gate.alarm_info())

    def publish_all(self) -> None:
        self.publish_motion_state()
        self.publish_if_changed("paused", self.gate.pause_info())
        self.publish_if_changed("lease", self.lease.info())
        self.publish_if_changed("pipettes", self.pipettes)
        self.publish_if_changed("mount_config", self.mount_config)

    # -- the two paths every command takes ---------------------------------------------------------------------------

    def _require_board(self) -> None:
        if not self.booted:
            raise BusError("unavailable", f"the Smoothieboard at {self.settings.port} is not ready; retrying")

    def motion(self, ctx: RequestContext, fn: Callable[[], Any], allow_alarm: bool = False,
               gate: bool = True) -> Any:
        """Run a motion command under the lease, the gate and the driver lock, with errors turned into replies."""
        self._require_board()
        self.lease.check(ctx.client, renew=False)
        with self.driver.lock:
            self._require_board()
            if gate:
                self.gate.check(ctx.command, allow_alarm)
            self.lease.check(ctx.client)
            generation = self.halt_generation
            try:
                result = self._guarded(ctx, fn)
            finally:
                self.publish_motion_state()
            if generation != self.halt_generation:
                raise BusError("conflict", f"{ctx.command} was interrupted by a halt")
            return result

    def read(self, ctx: RequestContext, fn: Callable[[], Any]) -> Any:
        self._require_board()
        with self.driver.lock:
            return self._guarded(ctx, fn)

    def _guarded(self, ctx: RequestContext, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except MotionAlarm as alarm:
            self._enter_alarm(alarm.message)
            self.emit("alarm", {"message": alarm.message, "axis": alarm.axis, "command": ctx.command,
                                    "recovered_by_homing": alarm.homed_axes})
            raise BusError("hardware_error", f"{ctx.command} failed: {alarm.message}; the robot is in alarm until "
                           "homed", {"raw": alarm.raw, "axis": alarm.axis, "homed": alarm.homed_axes}) from None
        except Halted as exc:
            raise BusError("conflict", f"{ctx.command} was interrupted by a halt", {"raw": exc.raw}) from None
        except (AlarmLock, AlarmResponse) as exc:
            # the board halted outside a move we sent (kill input, a raw command): clear it, refuse motion till homed
            self._recover_unexpected_halt(exc)
            raise BusError("hardware_error", f"{ctx.command} failed: the board is halted ({exc.raw}); the robot is "
                           "in alarm until homed", {"raw": exc.raw, "command": exc.command}) from None
        except NoResponse as exc:
            self.degraded(f"Smoothieboard not answering: {exc.message}")
            raise BusError("timeout", f"{ctx.command}: the Smoothieboard did not answer: {exc.message}",
                           {"raw": exc.raw, "command": exc.command}) from None
        except ParseError as exc:
            raise BusError("hardware_error", f"{ctx.command}: reply did not parse: {exc.message}",
                           {"raw": exc.raw, "command": exc.command}) from None
        except (ErrorResponse, SmoothieError) as exc:
            raise BusError("hardware_error", f"{ctx.command}: the board answered {exc.raw or exc.message!r}",
                           {"raw": exc.raw, "command": exc.command}) from None
        if self.state == "degraded" and self.booted:
            self.ready()
        return result

    def _enter_alarm(self, message: str) -> None:
        self.gate.raise_alarm(message)
        self.publish_if_changed("alarm", self.gate.alarm_info())

    def _recover_unexpected_halt(self, exc: SmoothieError) -> None:
        self._enter_alarm(exc.raw or exc.message)
        self.emit("alarm", {"message": exc.raw or exc.message, "axis": None, "command": exc.command or "",
                                "recovered_by_homing": []})
        d = self.driver
        d.current_now = None
        d.tolerate_alarm_lock = True
        try:
            d.clear_halt()
            d.read_homed()
            d.read_position()
        except SmoothieError as again:
            log.warning("clearing the halt failed too: %s", again)
        finally:
            d.tolerate_alarm_lock = False

    # -- checks before anything is sent ------------------------------------------------------------------------------

    def _check_travel(self, targets: dict[str, float]) -> None:
        problems = travel_check(targets, self.travel)
        if problems:
            raise BusError("invalid_request", "target outside travel: " + "; ".join(problems),
                           {"travel": {a: list(self.travel[a]) for a in targets}})

    def _check_homed(self, axes) -> None:
        if not self.settings.require_homed:
            return
        missing = [a for a in AXES if a in set(axes) and not self.driver.homed.get(a)]
        if missing:
            raise BusError("conflict", f"axes {', '.join(missing)} are not homed; home them first",
                           {"not_homed": missing})

    # -- motion commands ---------------------------------------------------------------------------------------------

    @handler("home")
    def home(self, request, ctx: RequestContext):
        wanted = list(request.axes) if request.axes else list(AXES)
        everything = set(expand_home_axes(wanted)) == set(AXES)

        def run():
            if self.gate.alarm_active:
                self._clear_board_halt()
            self.driver.home(wanted)
            if everything and all(self.driver.homed.values()):
                self.gate.clear_alarm()
            return self.driver.position
        return self.motion(ctx, run, allow_alarm=True)

    def _clear_board_halt(self) -> None:
        d = self.driver
        d.current_now = None
        d.tolerate_alarm_lock = True
        try:
            d.clear_halt()
        finally:
            d.tolerate_alarm_lock = False

    @handler("move")
    def move(self, request, ctx: RequestContext):
        self._check_travel(request.target)

        def run():
            self._check_homed(request.target)
            return self.driver.move(dict(request.target), request.speed)
        return self.motion(ctx, run)

    @handler("move_relative")
    def move_relative(self, request, ctx: RequestContext):
        # the travel check needs the position, so it runs under the lock; still before anything is sent
        def run():
            self._check_homed(request.delta)
            targets = {axis: self.driver.position[axis] + delta for axis, delta in request.delta.items()}
            self._check_travel(targets)
            return self.driver.move(targets, request.speed)
        return self.motion(ctx, run)

    @handler("probe")
    def probe(self, request, ctx: RequestContext):
        def run():
            self._check_homed([request.axis])
            target = self.driver.position[request.axis] + request.distance
            self._check_travel({request.axis: target})
            return {"position": self.driver.probe(request.axis, target, request.speed)}
        return self.motion(ctx, run)

    @handler("set_current")
    def set_current(self, request, ctx: RequestContext):
        for name, table in (("active", request.active), ("dwelling", request.dwelling)):
            for axis, amps in (table or {}).items():
                if not 0 <= amps <= MOTOR_CURRENT_MAX_A:  # the request model bounds it too; kept for callers in code
                    raise BusError("invalid_request",
                                   f"field '{name}.{axis}': {amps} A is outside 0..{MOTOR_CURRENT_MAX_A}")
        if not request.active and not request.dwelling:
            raise BusError("invalid_request", "field 'active': give active and/or dwelling currents")

        def run():
            self.driver.set_currents(request.active, request.dwelling)
            return {"active": self.driver.active, "dwelling": self.driver.dwelling}
        return self.motion(ctx, run, allow_alarm=True)

    @handler("set_max_speed")
    def set_max_speed(self, request, ctx: RequestContext):
        for axis, speed in request.speeds.items():
            if not 0 < speed <= AXIS_SPEED_MAX_MM_S:
                raise BusError("invalid_request",
                               f"field 'speeds.{axis}': {speed} mm/s is outside 0..{AXIS_SPEED_MAX_MM_S}")

        def run():
            self.driver.set_max_speeds(dict(request.speeds))
            return {"speeds": self.driver.max_speeds}
        return self.motion(ctx, run, allow_alarm=True)

    @handler("disengage")
    def disengage(self, request, ctx: RequestContext):
        axes = list(request.axes) if request.axes else list(AXES)
        # de-energising never drives a motor: allowed with the door open, paused or in alarm (not against the lease)
        return self.motion(ctx, lambda: self.driver.disengage(axes), gate=False)

    @handler("dwell")
    def dwell(self, request, ctx: RequestContext):
        def run():
            self.driver.dwell(request.seconds)
            return {}
        return self.motion(ctx, run)

    @handler("configure_pipette")
    def configure_pipette(self, request, ctx: RequestContext):
        """The typed way to set a mount up for its pipette (no raw G-code needed); the travel follows it."""
        def run():
            self.driver.configure_pipette(request.mount, request.steps_per_mm, request.home_position,
                                          request.travel_distance)
            config = {"steps_per_mm": request.steps_per_mm, "home_position": request.home_position,
                      "travel_distance": request.travel_distance}
            self.mount_config[request.mount] = {**config, "travel": self._narrow_travel(request.mount, config)}
            self.publish_if_changed("mount_config", self.mount_config)
            return self.mount_config[request.mount]
        # changing settings moves nothing: allowed while the door is open, paused or in alarm (not against the lease)
        return self.motion(ctx, run, gate=False)

    def _narrow_travel(self, mount: str, config: dict) -> dict[str, list[float]]:
        """After homing, the mount sits at its homing position less the retract (its new top); the plunger must
        stay within its homing travel of the switch, or the next home stops short of it (reference 1.9, 5.3)."""
        mount_axis, plunger = MOUNT_AXIS[mount], PLUNGER_AXIS[mount]
        configured = by_name(self.settings.travel)
        low, high = configured[mount_axis]
        self.travel[mount_axis] = (low, min(high, config["home_position"] - MOUNT_RETRACT_MM))
        low, high = configured[plunger]
        self.travel[plunger] = (max(low, PLUNGER_HOMING_POSITION_MM - config["travel_distance"]), high)
        return {axis: list(self.travel[axis]) for axis in (mount_axis, plunger)}

    def _reapply_mount_config(self) -> None:
        """A board that was reset forgot the mounts' settings: send the configured ones again."""
        for mount, config in self.mount_config.items():
            if config is not None:
                self.driver.configure_pipette(mount, config["steps_per_mm"], config["home_position"],
                                              config["travel_distance"])

    @handler("gcode")
    def gcode(self, request, ctx: RequestContext):
        if not self.caller_has_role(ctx, "admin"):
            raise BusError("unauthorized", f"raw G-code is for admins only; {ctx.principal!r} is not one",
                           {"principal": ctx.principal})
        for index, line in enumerate(request.lines):
            for bad, name in (("?", "'?' (real-time status query)"), ("\x18", "Ctrl-X (immediate halt)"),
                              ("\r", "a carriage return"), ("\n", "a line feed")):
                if bad in line:
                    raise BusError("invalid_request", f"field 'lines.{index}': {name} is never sent in-band")

        def run():
            replies = []
            for line in request.lines:
                raw = self.driver.link.exchange(line.strip(), request.timeout_s, 0)  # raw: never resent
                replies.append(strip_response(raw, line.strip()))
            raw = self.driver.link.exchange("M400", self.settings.execute_timeout_s, 0)
            tail = strip_response(raw, "M400")
            if tail:
                replies[-1] = (replies[-1] + " " + tail).strip()
            if any("alarm" in reply.lower() for reply in replies):
                self._enter_alarm(next(r for r in replies if "alarm" in r.lower()))
            self._refresh_after_raw()
            return {"replies": replies}
        return self.motion(ctx, run, allow_alarm=True)

    def _refresh_after_raw(self) -> None:
        d = self.driver
        d.current_now = None  # a raw M907 may have changed them
        d.tolerate_alarm_lock = True
        try:
            d.read_homed()
            d.read_position()
        except SmoothieError as exc:
            log.info("could not refresh after raw G-code: %s", exc)
        finally:
            d.tolerate_alarm_lock = False

    # -- reads -------------------------------------------------------------------------------------------------------

    @handler("position")
    def position(self, _request, ctx: RequestContext):
        self._require_board()
        return dict(self.driver.position)

    @handler("switches")
    def switches(self, _request, ctx: RequestContext):
        found = self.read(ctx, self.driver.read_switches)
        return {**{axis: found[axis] for axis in AXES}, "probe": found["Probe"]}

    @handler("homed")
    def homed(self, _request, ctx: RequestContext):
        flags = self.read(ctx, self.driver.read_homed)
        self.publish_if_changed("homed", flags)
        return flags

    @handler("engaged")
    def engaged(self, _request, ctx: RequestContext):
        return dict(self.driver.engaged)

    @handler("read_pipette")
    def read_pipette(self, request, ctx: RequestContext):
        mounts = [request.mount] if request.mount else ["left", "right"]
        # de-energising the motors under someone else's lease could drop a mount mid-run: read without it then
        quiet = not self.lease.held_by_other(ctx.client)
        self.read(ctx, lambda: self._read_pipettes(mounts, quiet))
        self.publish_motion_state()
        return dict(self.pipettes)  # the mounts not asked for: as last read

    def _read_pipettes(self, mounts: list[str], quiet_motors: bool) -> None:
        for index, mount in enumerate(mounts):
            self.pipettes[mount] = self.driver.read_pipette(mount, quiet_motors=quiet_motors and index == 0)
        self.publish_if_changed("pipettes", self.pipettes)

    # -- halt, pause, resume -----------------------------------------------------------------------------------------

    @handler("halt")
    def halt(self, _request, ctx: RequestContext):
        """Stop now (any client, lease or not), clear the halt, set the board up again; alarm until homed."""
        self._require_board()
        with self._halt_lock:
            self.halt_generation += 1
            self.driver.begin_halt()
            self._pull_halt_line()
            with self.driver.lock:
                try:
                    self.driver.recover_after_halt()
                    self.driver.read_homed()
                except SmoothieError as exc:
                    self.driver._halting.clear()
                    self._enter_alarm(f"halted by {ctx.client}")
                    self.publish_motion_state()
                    raise BusError("hardware_error", f"halt: the board did not come back: {exc.message}",
                                   {"raw": exc.raw}) from None
                self._enter_alarm(f"halted by {ctx.client}")
                self.publish_motion_state()
        self.emit("halted", {"by": ctx.client})
        return {"position": self.driver.position, "homed": self.driver.homed}

    def _pull_halt_line(self) -> None:
        via = self.settings.halt_via
        use_line = via in ("gpio", "both") or (via == "auto" and self.settings.use_gpio and self.gpio_ready)
        line_worked = False
        if use_line:
            try:
                self.call("gpio", "smoothie_halt", {}, timeout=self.settings.gpio_timeout_s)
                line_worked = True
            except (BusError, CallTimeout) as exc:
                log.warning("halt line through gpio-service failed: %s; stopping with M112 instead", exc)
        if via in ("serial", "both") or not line_worked:
            try:
                self.driver.emergency_stop_in_band()
            except (SmoothieError, OSError) as exc:
                log.error("could not write M112: %s", exc)

    @handler("pause")
    def pause(self, _request, ctx: RequestContext):
        self.lease.check(ctx.client)
        for name, payload in self.gate.pause():
            self.emit(name, payload)
        info = self.gate.pause_info()
        self.publish_if_changed("paused", info)
        return info

    @handler("resume")
    def resume(self, _request, ctx: RequestContext):
        self.lease.check(ctx.client)
        for name, payload in self.gate.resume(ctx.client):
            self.emit(name, payload)
        info = self.gate.pause_info()
        self.publish_if_changed("paused", info)
        return info

    # -- lease -------------------------------------------------------------------------------------------------------

    @handler("acquire_motion")
    def acquire_motion(self, request, ctx: RequestContext):
        lease = self.lease.acquire(ctx.client, request.ttl_s)
        self.publish_if_changed("lease", self.lease.info())
        return lease

    @handler("release_motion")
    def release_motion(self, request, ctx: RequestContext):
        self.lease.release(ctx.client, request.lease_id)
        info = self.lease.info()
        self.publish_if_changed("lease", info)
        return info


def main(argv: list[str] | None = None) -> int:
    return run_service(SmoothieService, argv)


if __name__ == "__main__":
    sys.exit(main())
