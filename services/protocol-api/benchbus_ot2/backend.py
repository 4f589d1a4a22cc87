"""The bus backend of Opentrons' OT-2 hardware controller.

Opentrons' `hardware_control.API(backend, loop, config)` drives the robot through a backend object: on the robot
that is `backends.controller.Controller` (G-code to the Smoothieboard through Opentrons' SmoothieDriver, the GPIO
lines through libgpiod), in simulation `backends.simulator.Simulator`. `BusBackend` has the same methods and does
them over the bus: motion through the smoothie-bridge (segment `smoothie`), lights and the door through
gpio-service (`gpio`). Opentrons' own API above it keeps everything it does (deck calibration, pipette handling,
liquid-handling plans, the protocol engine); only the last step, the board, goes through the bus.

Being a well-behaved client of the shared robot:
- the motion lease is held for the run by the `Robot` this backend is given (robot.py), renewed in the background;
- a motion refused because the door is open (or the robot paused) waits for a resume and is sent again, so the
  door pauses a run and closing it + the robot's button continues it;
- travel limits and alarms come back as `MotionError`/`RobotAlarm` (Opentrons' `MotionFailedError`), never a hang;
- the attached pipettes are read from the board (M369/M371 through `smoothie/cmd/read_pipette`) and returned as
  Opentrons pipette configurations, checked against what the protocol asks for, as `Controller` does;
- `configure_mount` goes through the bridge's typed `configure_pipette` (no raw G-code: a protocol is not an admin).

The bus calls are blocking, so every one runs in a worker thread (`asyncio.to_thread`): the hardware loop stays
free for pause requests and door notifications while a move is on its way.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from collections.abc import Callable

from opentrons.config import get_opentrons_path
from opentrons.config.types import RobotConfig
from opentrons.hardware_control.types import Axis, BoardRevision, DoorState
from opentrons.hardware_control.util import ot2_axis_to_string
from opentrons.types import Mount
from opentrons_shared_data.pipette import mutable_configurations
from opentrons_shared_data.pipette import pipette_load_name_conversions as pipette_load_name

from .errors import MotionError, RobotAlarm
from .robot import Robot

log = logging.getLogger("benchbus.ot2.backend")

# Where each axis sits after homing until the board says otherwise (Opentrons' driver constants, the OT-2's frame)
HOMED_POSITION = {"X": 418.0, "Y": 353.0, "Z": 218.0, "A": 218.0, "B": 19.0, "C": 19.0}
Y_BOUND = 370.0
MOUNT_NAME = {Mount.LEFT: "left", Mount.RIGHT: "right"}


class BusBackend:
    """Opentrons' OT-2 backend interface (the methods `hardware_control.API` calls), over the bus."""

    def __init__(self, robot: Robot, config: RobotConfig):
        self.robot = robot
        self.config = config
        self._position: dict[str, float] = dict(HOMED_POSITION)
        self._homed_position: dict[str, float] = dict(HOMED_POSITION)
        self._homed: dict[str, bool] = {axis: False for axis in "XYZABC"}
        self._engaged: dict[str, bool] = {axis: False for axis in "XYZABC"}
        self._active_wanted: dict[str, float] = {}
        self._active_sent: dict[str, float] = {}
        self._saved_currents: list[dict[str, float]] = []
        self._fw_version: str | None = None
        self._module_controls: Any = None
        self._run_flag = threading.Event()
        self._run_flag.set()
        self._unsubscribe: list[Callable[[], None]] = []
        self._in_flight = 0  # motion commands on their way through the bridge

    # -- the bus -----------------------------------------------------------------------------------------------------

    async def _motion(self, command: str, payload: dict | None = None) -> Any:
        await self._wait_run_flag()
        self._in_flight += 1
        try:
            return await asyncio.to_thread(self.robot.motion, command, payload or {})
        finally:
            self._in_flight -= 1

    async def _read(self, service: str, command: str, payload: dict | None = None) -> Any:
        return await asyncio.to_thread(self.robot.read, service, command, payload or {})

    async def _wait_run_flag(self) -> None:
        while not self._run_flag.is_set():  # Opentrons' pause(): motion waits until resume()
            await asyncio.sleep(0.05)

    def _took(self, position: dict[str, float]) -> dict[str, float]:
        self._position.update({axis: float(position[axis]) for axis in "XYZABC" if axis in position})
        return dict(self._position)

    # -- identity ----------------------------------------------------------------------------------------------------

    async def get_serial_number(self) -> str | None:
        return self.robot.device

    @property
    def gpio_chardev(self) -> None:
        return None  # the GPIO lines belong to gpio-service

    @property
    def board_revision(self) -> BoardRevision:
        return BoardRevision.OG  # the bridge's current table defaults to the OG ("2.1") board's

    @property
    def module_controls(self) -> Any:
        if not self._module_controls:
            raise AttributeError("Module controls not found.")
        return self._module_controls

    @module_controls.setter
    def module_controls(self, module_controls: Any) -> None:
        self._module_controls = module_controls

    @property
    def fw_version(self) -> str | None:
        return self._fw_version

    async def update_fw_version(self) -> None:
        _topic, firmware = await asyncio.to_thread(
            self.robot.bus.wait_for, self.robot.bus.topic("smoothie", "state", "firmware"), lambda _t, d: True, 5.0)
        self._fw_version = (firmware or {}).get("version")

    async def update_firmware(self, filename: str, loop: asyncio.AbstractEventLoop, modeset: bool) -> str:
        raise NotImplementedError("the Smoothieboard's firmware is updated by the update-agent, not from a protocol")

    # -- position and homing -----------------------------------------------------------------------------------------

    async def connect(self, port: str | None = None) -> None:
        """Read what the bridge knows: position, homed flags, engaged motors, firmware (`port` is the bridge's)."""
        self._took(await self._read("smoothie", "position"))
        self._homed.update(await self._read("smoothie", "homed"))
        if await self._alarm_active():  # the bridge refuses motion until everything is homed: make Opentrons home
            self._homed = dict.fromkeys(self._homed, False)
        self._engaged.update(await self._read("smoothie", "engaged"))
        with contextlib.suppress(Exception):
            await self.update_fw_version()

    async def _alarm_active(self) -> bool:
        bus = self.robot.bus
        _topic, alarm = await asyncio.to_thread(bus.wait_for, bus.topic("smoothie", "state", "alarm"),
                                                lambda _t, _d: True, 5.0)
        return bool((alarm or {}).get("active"))

    async def update_position(self) -> dict[str, float]:
        return self._took(await self._read("smoothie", "position"))

    def _unhomed_axes(self, axes: Sequence[str]) -> list[str]:
        return [axis for axis in axes if not self._homed.get(axis, False)]

    def is_homed(self, axes: Sequence[str]) -> bool:
        return not self._unhomed_axes(axes)

    @property
    def axis_bounds(self) -> dict[Axis, tuple[float, float]]:
        bounds = {axis: (0.0, self._homed_position[axis]) for axis in "XYZA"}
        bounds["Y"] = (0.0, Y_BOUND)
        return {Axis[axis]: bound for axis, bound in bounds.items()}

    async def home(self, axes: list[str] | None = None) -> dict[str, float]:
        request = {"axes": list(axes)} if axes else {}
        position = self._took(await self._motion("home", request))
        self._homed.update(await self._read("smoothie", "homed"))
        homed_now = [axis for axis in "XYZABC" if not axes or axis in axes]
        for axis in homed_now:
            self._homed_position[axis] = position[axis]  # the mounts' tops depend on the pipette (M365.0)
            self._engaged[axis] = True
        return position

    async def fast_home(self, axes: Sequence[str], margin: float) -> dict[str, float]:
        """Move to just short of the switches, then home those axes (Opentrons' retract)."""
        near = {axis: self._homed_position[axis] - abs(margin) for axis in axes}
        try:
            await self._move(near)
        except MotionError as exc:
            if isinstance(exc, RobotAlarm):
                raise
            log.info("fast home: the approach was refused (%s); homing from where the axes are", exc)
        return await self.home(list(axes))

    # -- motion ------------------------------------------------------------------------------------------------------

    async def move(self, target_position: dict[str, float], home_flagged_axes: bool = True,
                   speed: float | None = None, axis_max_speeds: dict[str, float] | None = None) -> None:
        unhomed = self._unhomed_axes(list(target_position))
        if home_flagged_axes and unhomed:
            await self.home(unhomed)
        if axis_max_speeds:
            await self._motion("set_max_speed", {"speeds": dict(axis_max_speeds)})
        try:
            await self._move(target_position, speed)
        finally:
            if axis_max_speeds:
                configured: dict[str, float] = {**self.config.default_max_speed}  # type: ignore[dict-item]
                defaults = {axis: configured[axis] for axis in axis_max_speeds}
                await self._motion("set_max_speed", {"speeds": defaults})

    async def _move(self, target: dict[str, float], speed: float | None = None) -> None:
        await self._send_active_currents()
        request: dict[str, Any] = {"target": {axis: float(value) for axis, value in target.items()}}
        if speed is not None:
            request["speed"] = float(speed)
        self._took(await self._motion("move", request))
        for axis in target:
            self._engaged[axis] = True

    async def probe(self, axis: str, distance: float) -> dict[str, float]:
        """Opentrons' probe target is absolute (G38.2 in G90); the bridge's is a signed distance."""
        axis = axis.upper()
        found = await self._motion("probe", {"axis": axis, "distance": distance - self._position[axis]})
        return self._took(found["position"])

    # -- currents ----------------------------------------------------------------------------------------------------

    def set_active_current(self, axis_currents: dict[Axis, float]) -> None:
        """Opentrons sets the current right before a move; it reaches the bridge with that move."""
        self._active_wanted.update({ot2_axis_to_string(axis): float(amps) for axis, amps in axis_currents.items()})

    async def _send_active_currents(self) -> None:
        changed = {axis: amps for axis, amps in self._active_wanted.items() if self._active_sent.get(axis) != amps}
        if changed:
            await self._motion("set_current", {"active": changed})
            self._active_sent.update(changed)

    @contextlib.contextmanager
    def save_current(self) -> Iterator[None]:
        self._saved_currents.append(dict(self._active_wanted))
        try:
            yield
        finally:
            self._active_wanted = self._saved_currents.pop()

    # -- motors ------------------------------------------------------------------------------------------------------

    def engaged_axes(self) -> dict[str, bool]:
        return dict(self._engaged)

    async def disengage_axes(self, axes: list[str]) -> None:
        self._engaged.update(await self._motion("disengage", {"axes": list(axes)}))

    # -- pipettes ----------------------------------------------------------------------------------------------------

    async def get_attached_instruments(self, expected: dict[Mount, str]) -> dict[Mount, dict[str, Any]]:
        found = await self._read("smoothie", "read_pipette")
        return {mount: self._pipette_config(mount, found.get(MOUNT_NAME[mount]), expected.get(mount))
                for mount in Mount.ot2_mounts()}

    def _pipette_config(self, mount: Mount, on_board: dict | None, expected: str | None) -> dict[str, Any]:
        """The board's model string as Opentrons' pipette configuration (with the robot's overrides)."""
        model = (on_board or {}).get("model")
        pipette_id = (on_board or {}).get("id")
        if model and not pipette_load_name.supported_pipette(model):
            log.error("the %s mount reports %r, which Opentrons does not know", MOUNT_NAME[mount], model)
            model = None
        if not model:
            if expected:
                raise RuntimeError(f"mount {mount}: instrument {expected} was requested, but no instrument is "
                                   "present")
            return {"config": None, "id": None}
        config = mutable_configurations.load_with_mutable_configurations(
            pipette_load_name.convert_pipette_model(model), get_opentrons_path("pipette_config_overrides_dir"),
            pipette_id)
        if expected:
            acceptable = [str(pipette_load_name.convert_to_pipette_name_type(model))] + list(
                config.pipette_backcompat_names)
            if expected not in acceptable:
                raise RuntimeError(f"mount {mount}: instrument {expected} was requested but {model} is present")
        return {"config": config, "id": pipette_id}

    async def configure_mount(self, mount: Mount, config: dict[str, Any]) -> None:
        """Plunger steps/mm, the mount's homing position and the plunger's travel through the bridge's typed
        command; the plunger's idle current as its dwelling current. Opentrons' move splits (GEN2 plungers
        starting at low current) have no bridge command and are left out."""
        name = MOUNT_NAME[mount]
        await self._motion("configure_pipette", {"mount": name, "steps_per_mm": float(config["steps_per_mm"]),
                                                 "home_position": float(config["home_pos"]),
                                                 "travel_distance": float(config["max_travel"])})
        plunger = ot2_axis_to_string(Axis.of_plunger(mount))
        await self._motion("set_current", {"dwelling": {plunger: float(config["idle_current"])}})
        mount_axis = ot2_axis_to_string(Axis.by_mount(mount))
        self._homed_position[mount_axis] = min(self._homed_position[mount_axis], float(config["home_pos"]))

    # -- lights, door, pause -----------------------------------------------------------------------------------------

    def set_lights(self, button: bool | None, rails: bool | None) -> None:
        if rails is not None:
            self.robot.read("gpio", "set_rail_lights", {"on": bool(rails)})
        if button is not None:
            request = {"color": "blue", "pattern": "solid"} if button else {"auto": True}
            self.robot.read("gpio", "set_button_light", request)

    def get_lights(self) -> dict[str, bool]:
        lights = self.robot.read("gpio", "get_lights")
        return {"button": lights.get("button", {}).get("color") not in (None, "off"), "rails": bool(lights["on"])}

    def start_gpio_door_watcher(self, loop: asyncio.AbstractEventLoop,
                                update_door_state: Callable[[DoorState], None]) -> None:
        """gpio-service's retained door state, handed to Opentrons on its own loop."""
        def on_door(_topic: str, data: Any, _message: Any) -> None:
            if isinstance(data, dict):
                is_open = data.get("door") == "open" or data.get("window") == "open"
                loop.call_soon_threadsafe(update_door_state, DoorState.OPEN if is_open else DoorState.CLOSED)
        topic = self.robot.bus.topic("gpio", "state", "door")
        handle = self.robot.bus.subscribe(topic, on_door)
        self._unsubscribe.append(lambda: self.robot.bus.unsubscribe(topic, handle))

    def pause(self) -> None:
        self._run_flag.clear()

    def resume(self) -> None:
        self._run_flag.set()

    async def halt(self) -> None:
        """Stop the motion in flight through the bridge's halt (any client may halt: no lease, no gate). Opentrons
        also calls this at the end of every engine run to be sure nothing moves; with no bus motion in flight the
        board holds nothing queued, and halting it would only leave the robot in alarm for the next client."""
        if self._in_flight:
            await self._read("smoothie", "halt")

    async def hard_halt(self) -> None:
        await self.halt()

    async def watch(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        return None  # no USB modules on the bus yet

    async def clean_up(self) -> None:
        for unsubscribe in self._unsubscribe:
            with contextlib.suppress(Exception):
                unsubscribe()
        self._unsubscribe.clear()
        if self._module_controls is not None:
            await self._module_controls.clean_up()
