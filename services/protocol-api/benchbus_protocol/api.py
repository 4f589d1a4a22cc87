"""The protocol API: a ProtocolContext (deck, labware, pipettes) and InstrumentContexts that pipette.

Coordinates. A location is a point in deck coordinates (mm). For the pipette on a mount, the gantry position that
puts its critical point (the tip's end, or the nozzle without a tip; channel 1 of a multi) there is

    gantry = attitude @ point - mount offset - model offset - pipette offset, then z + tip length

where `attitude` is the deck calibration (calibration-store, kind "deck"; identity when there is none), the mount
offset and model offset come from shared-data (deck `mounts`, pipette `modelOffset`), the pipette offset is the
calibration-store's `pipette_offset` of that mount and pipette id, and the tip length is the calibration-store's
`tip_length` of that pipette and tip rack URI, else the rack's tipLength minus the pipette's tipOverlap. Gantry x, y
are the X and Y axes; gantry z is the mount's axis (Z left, A right) in the frame the pipette's homePosition sets.

Plunger. Plunger positions (top, bottom, blowOut, dropTip) are the plunger axis (B left, C right) in mm. Holding
V uL, the plunger sits at bottom + V / ulPerMm(V); its speed is flow rate / ulPerMm.

Safety. Everything a call can check (volumes, wells, slots, tips, the attached pipette) is checked before it sends
anything. The motion lease is held from connect to close. A door opened mid-protocol pauses it (see robot.py).
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from benchbus.settings import BrokerSettings

from . import definitions
from .definitions import DefinitionError, DeckDefinition, PipetteDefinition
from .errors import LabwareError, MotionError, PipetteError, ProtocolError, RobotUnavailable, VolumeError
from .geometry import Labware, Location, Point, Well
from .robot import Robot

log = logging.getLogger("benchbus.protocol")
IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
MOUNTS = ("left", "right")
ASPIRATE_ABOVE_BOTTOM_MM = 1.0  # where a bare well sends aspirate and dispense
SAME = 1e-3  # mm: closer than this is "already there"


@dataclass
class Step:
    index: int
    name: str
    text: str
    started: float  # time.monotonic()
    duration: float | None = None
    error: str | None = None


@dataclass
class Calibration:
    attitude: tuple = IDENTITY
    pipette_offsets: dict = field(default_factory=dict)  # mount -> (x, y, z)
    tip_lengths: dict = field(default_factory=dict)  # (pipette_id, tiprack uri) -> mm
    notes: list = field(default_factory=list)  # what fell back to defaults, or is marked bad


def connect(device: str | None = None, broker: str | BrokerSettings | None = None, *, simulate: bool = False,
            deck: str = "ot2_standard", use_calibration: bool = True, pause_timeout_s: float | None = None,
            on_pause: Callable[[str], None] | None = None, on_resume: Callable[[], None] | None = None,
            lease_ttl_s: float = 30.0, **simulate_options) -> "ProtocolContext":
    """Connect to `device`'s bus (broker 'host:port') and take the motion lease; use as a context manager or
    call close(). device defaults to $BENCHBUS_DEVICE, else this host's name (on the robot itself).
    `simulate=True` starts the stack on emulators first (see simulate.py; options left=, right=, speedup=) and
    stops it at close."""
    device = device or os.environ.get("BENCHBUS_DEVICE") or socket.gethostname()
    stack = None
    if simulate:
        from .simulate import SimulatedStack
        stack = SimulatedStack(**simulate_options)
        stack.start()
        device, broker = stack.device, stack.broker
    robot = Robot(device, broker, lease_ttl_s=lease_ttl_s, pause_timeout_s=pause_timeout_s, on_pause=on_pause,
                  on_resume=on_resume)
    try:
        return ProtocolContext(robot, deck=deck, use_calibration=use_calibration, stack=stack)
    except BaseException:
        if stack is not None:
            stack.stop()
        raise


class ProtocolContext:
    def __init__(self, robot: Robot, deck: str = "ot2_standard", use_calibration: bool = True, stack=None):
        self.robot = robot
        self._stack = stack
        self.deck: DeckDefinition = _definition(lambda: definitions.load_deck(deck))
        self.labware: dict[str, Labware] = {}
        self.pipettes: dict[str, InstrumentContext] = {}
        self.steps: list[Step] = []
        self.step_listeners: list[Callable[[Step], None]] = []
        self.use_calibration = use_calibration
        self.position: dict[str, float] = {}
        self.home_position: dict[str, float] = {}
        self._needs_home = True  # every protocol homes before its first move (and after a pipette is configured)
        self._moved = False
        self._active_currents: dict[str, float] = {}
        self._depth = 0
        self._closed = False
        trash = self.deck.fixedTrash
        self.fixed_trash = Labware(_definition(lambda: definitions.load_labware(trash.labware)), trash.slot,
                                   Point(*trash.position), label="fixed trash")
        robot.open()
        atexit.register(self.close)  # a notebook that never calls close() still gives the lease back
        try:
            robot.acquire_lease()
            self.calibration = self._read_deck_calibration()
            self.position = robot.read("smoothie", "position")
        except BaseException:
            self.close()
            raise

    # -- lifetime ----------------------------------------------------------------------------------------------------

    def __enter__(self) -> "ProtocolContext":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the motion lease and disconnect (and stop a simulated stack). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            self.robot.close()
        finally:
            if self._stack is not None:
                self._stack.stop()

    # -- steps -------------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str, text: str) -> Iterator[Step | None]:
        """Record one user-visible step (nested calls belong to the outer step) and tell the listeners."""
        if self._depth:
            self._depth += 1
            try:
                yield None
            finally:
                self._depth -= 1
            return
        record = Step(len(self.steps) + 1, name, text, time.monotonic())
        self.steps.append(record)
        self._depth = 1
        try:
            yield record
        except BaseException as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._depth = 0
            record.duration = time.monotonic() - record.started
            for listener in list(self.step_listeners):
                listener(record)

    def comment(self, text: str) -> None:
        with self.step("comment", text):
            pass

    def delay(self, seconds: float) -> None:
        if not 0 <= seconds <= 86400:
            raise ProtocolError(f"delay of {seconds} s: give 0..86400 s")
        with self.step("delay", f"delay {seconds:g} s"):
            time.sleep(seconds)

    # -- loading -----------------------------------------------------------------------------------------------------

    def load_labware(self, load_name: str, slot: int | str, label: str | None = None,
                     version: int | None = None) -> Labware:
        slot_id = str(slot)
        try:
            slot_def = self.deck.slot(slot_id)
        except KeyError:
            ids = ", ".join(s.id for s in self.deck.slots)
            raise LabwareError(f"there is no slot {slot!r} on the {self.deck.otId} deck; slots: {ids}") from None
        if slot_id == self.deck.fixedTrash.slot:
            raise LabwareError(f"slot {slot_id} is taken by the fixed trash")
        if slot_id in self.labware:
            raise LabwareError(f"slot {slot_id} is already taken by {self.labware[slot_id].label} "
                               f"({self.labware[slot_id].load_name}); one labware per slot")
        definition = _definition(lambda: definitions.load_labware(load_name, version))
        labware = Labware(definition, slot_id, Point(*slot_def.position), label)
        with self.step("load_labware", f"load {labware.label} ({load_name}) in slot {slot_id}"):
            self.labware[slot_id] = labware
        return labware

    def load_pipette(self, name: str, mount: str, tip_racks: Sequence[Labware] = ()) -> "InstrumentContext":
        if mount not in MOUNTS:
            raise PipetteError(f"mount {mount!r}: give 'left' or 'right'")
        if mount in self.pipettes:
            raise PipetteError(f"the {mount} mount already has {self.pipettes[mount].name}")
        definition = _definition(lambda: definitions.load_pipette(name), PipetteError)
        for rack in tip_racks:
            if not isinstance(rack, Labware) or not rack.is_tiprack:
                raise PipetteError(f"tip_racks: {rack} is not a tip rack")
        attached = self._attached(mount)
        if attached is None or not attached.get("model"):
            raise PipetteError(f"no pipette is attached to the {mount} mount; {name} was asked for")
        if attached["model"] not in definition.models:
            found = definitions.pipette_for_model(attached["model"])
            found_name = found.name if found else "a pipette benchbus has no definition for"
            raise PipetteError(f"the {mount} mount carries a {attached['model']} ({found_name}), not a {name} "
                               f"(models {', '.join(definition.models)}); load {found_name if found else 'it'} "
                               "or change the pipette")
        pipette_id = attached.get("id") or ""
        instrument = InstrumentContext(self, name, mount, definition, pipette_id, attached["model"], list(tip_racks))
        with self.step("load_pipette", f"load {definition.displayName} ({attached['model']} {pipette_id}) "
                                       f"on the {mount} mount"):
            self._read_pipette_calibration(instrument)
            self._configure(instrument)
            self.pipettes[mount] = instrument
        return instrument

    def _attached(self, mount: str) -> dict | None:
        """What the board says is on the mount: read fresh before the robot moves (the read de-energises the
        motors), afterwards the bridge's last reading."""
        if not self._moved:
            return self.robot.read("smoothie", "read_pipette", {"mount": mount}).get(mount)
        _topic, state = self.robot.bus.wait_for(self.robot.bus.topic("smoothie", "state", "pipettes"), timeout=5)
        return (state or {}).get(mount)

    def _configure(self, pipette: "InstrumentContext") -> None:
        """Plunger steps/mm, the mount's home position and the plunger's travel (the bridge's typed
        `configure_pipette`, which sends M92, M365.0, M365.1; no raw G-code), then its currents."""
        d, geometry = pipette.definition, pipette.geometry
        config = d.smoothieConfig
        self.robot.motion("configure_pipette", {"mount": pipette.mount, "steps_per_mm": float(config.stepsPerMM),
                                                "home_position": float(config.homePosition),
                                                "travel_distance": float(config.travelDistance)}, timeout=30)
        currents: dict[str, Any] = {"active": {geometry.plungerAxis: d.plungerCurrent}}
        if d.idleCurrent is not None:
            currents["dwelling"] = {geometry.plungerAxis: d.idleCurrent}
        self._active_currents = dict(self.robot.motion("set_current", currents)["active"])
        self._needs_home = True

    # -- calibration -------------------------------------------------------------------------------------------------

    def _calibration_record(self, key: dict, what: str) -> dict | None:
        try:
            record = self.robot.read("calibration", "robot_get", key)["record"]
        except MotionError as exc:
            if exc.code == "not_found":
                return None
            raise
        except RobotUnavailable as exc:
            raise RobotUnavailable(f"{exc} (pass use_calibration=False to run with shared-data's nominal "
                                   "geometry)") from None
        if record.get("status", {}).get("marked_bad"):
            self.calibration.notes.append(f"{what} is marked bad; recalibrate")
        return record

    def _read_deck_calibration(self) -> Calibration:
        self.calibration = Calibration()
        if not self.use_calibration:
            self.calibration.notes.append("calibration not used: nominal geometry")
            return self.calibration
        record = self._calibration_record({"kind": "deck"}, "the deck calibration")
        if record is None:
            self.calibration.notes.append("no deck calibration: identity attitude")
        else:
            self.calibration.attitude = tuple(tuple(float(v) for v in row) for row in record["attitude"])
        return self.calibration

    def _read_pipette_calibration(self, pipette: "InstrumentContext") -> None:
        if not self.use_calibration:
            return
        record = self._calibration_record({"kind": "pipette_offset", "mount": pipette.mount,
                                           "pipette_id": pipette.pipette_id},
                                          f"the pipette offset of {pipette.pipette_id} on {pipette.mount}")
        if record is None:
            self.calibration.notes.append(f"no pipette offset for {pipette.pipette_id} on {pipette.mount}: 0, 0, 0")
        else:
            self.calibration.pipette_offsets[pipette.mount] = tuple(float(v) for v in record["offset"])

    def tip_length(self, pipette: "InstrumentContext", rack: Labware) -> float:
        """Calibrated for this pipette and rack, else the rack's tipLength minus the pipette's tipOverlap."""
        key = (pipette.pipette_id, rack.uri)
        if key not in self.calibration.tip_lengths:
            record = None
            if self.use_calibration:
                record = self._calibration_record({"kind": "tip_length", "pipette_id": pipette.pipette_id,
                                                   "tiprack": rack.uri}, f"the tip length of {rack.uri}")
            if record is not None:
                self.calibration.tip_lengths[key] = float(record["tip_length"])
            else:
                self.calibration.tip_lengths[key] = rack.tip_length - pipette.definition.tip_overlap(rack.uri)
        return self.calibration.tip_lengths[key]

    # -- geometry ----------------------------------------------------------------------------------------------------

    def gantry(self, pipette: "InstrumentContext", point: Point, tip_length: float) -> dict[str, float]:
        """The axis targets that put the pipette's critical point at `point` (see the module docstring)."""
        a = self.calibration.attitude
        q = [sum(a[row][col] * point[col] for col in range(3)) for row in range(3)]
        offsets = [pipette.geometry.offset, pipette.definition.modelOffset,
                   self.calibration.pipette_offsets.get(pipette.mount, (0.0, 0.0, 0.0))]
        x, y, z = (q[i] - sum(o[i] for o in offsets) for i in range(3))
        return {"X": round(x, 4), "Y": round(y, 4), pipette.geometry.mountAxis: round(z + tip_length, 4)}

    def travel_height(self) -> float:
        """Deck z the critical point travels at between locations: above everything on the deck."""
        tallest = max([lw.highest_z for lw in self.labware.values()] + [self.fixed_trash.highest_z])
        return tallest + self.deck.travelClearance

    def _arc_height(self, pipette: "InstrumentContext", location: Location) -> float:
        """Within one labware, clear that labware; between labware, clear everything on the deck."""
        last = pipette._last
        if last is not None and last.labware is not None and last.labware is location.labware:
            return location.labware.highest_z + self.deck.travelClearance
        return self.travel_height()

    # -- motion ------------------------------------------------------------------------------------------------------

    def home(self) -> None:
        with self.step("home", "home all axes"):
            self._home()

    def _home(self) -> None:
        self.position = self.robot.motion("home", {})
        self.home_position = dict(self.position)
        self._needs_home = False
        self._moved = True
        for pipette in self.pipettes.values():
            pipette._after_home()
            self._check_mount_frame(pipette)

    def _check_mount_frame(self, pipette: "InstrumentContext") -> None:
        """After homing, the mount must sit at the pipette's home position less the retract, or every height
        would be off: refuse to go on when the firmware did not take the configuration."""
        axis = pipette.geometry.mountAxis
        expected = pipette.definition.smoothieConfig.homePosition - self.deck.homeRetract.get(axis, 0.0)
        if abs(self.home_position[axis] - expected) > 0.05:
            raise MotionError(f"the {pipette.mount} mount homed at {axis}={self.home_position[axis]:g}, but a "
                              f"{pipette.name} needs {expected:g}: the firmware did not take the mount's home "
                              "position (M365.0); heights would be wrong, so nothing more moves")

    def _ensure_homed(self) -> None:
        if self._needs_home:
            self._home()

    def move_axes(self, targets: dict[str, float], speed: float | None = None) -> None:
        """Absolute machine targets through the bridge (after the first-move home)."""
        self._ensure_homed()
        wanted = {a: v for a, v in targets.items() if abs(self.position.get(a, math.inf) - v) > 1e-6}
        if not wanted:
            return
        payload: dict[str, Any] = {"target": wanted}
        if speed is not None:
            payload["speed"] = round(speed, 4)
        self.position = self.robot.motion("move", payload)
        self._moved = True

    def move_pipette(self, pipette: "InstrumentContext", location: Location) -> None:
        """Up to the travel height (the other mount out of the way), across, down: never through labware."""
        self._ensure_homed()
        axis = pipette.geometry.mountAxis
        target = self.gantry(pipette, location.point, pipette.current_tip_length)
        top = self.home_position[axis]
        if target[axis] > top + SAME:
            raise MotionError(f"{location} is {target[axis] - top:.1f} mm above what the {pipette.mount} mount "
                              "reaches with this tip")
        if target[axis] < 0:
            raise MotionError(f"{location} is {-target[axis]:.1f} mm below what the {pipette.mount} mount reaches")
        across = abs(self.position["X"] - target["X"]) > SAME or abs(self.position["Y"] - target["Y"]) > SAME
        if across:
            for other in ("Z", "A"):
                if other != axis and self.position[other] < self.home_position[other] - SAME:
                    self.move_axes({other: self.home_position[other]})
            safe = self.gantry(pipette, Point(location.point.x, location.point.y, self._arc_height(pipette, location)),
                               pipette.current_tip_length)[axis]
            up = max(min(safe, top), target[axis])
            if self.position[axis] < up - SAME:
                self.move_axes({axis: up})
            self.move_axes({"X": target["X"], "Y": target["Y"]})
        self.move_axes({axis: target[axis]})

    def set_active_current(self, axis: str, amps: float) -> None:
        self._active_currents = dict(self.robot.motion("set_current", {"active": {axis: amps}})["active"])

    def active_current(self, axis: str) -> float:
        return self._active_currents[axis]

    # -- pause -------------------------------------------------------------------------------------------------------

    def pause(self) -> None:
        """Pause the robot (the next motion waits until resume())."""
        self.robot.read("smoothie", "pause")

    def resume(self) -> None:
        """Continue after a door opening or a pause (thread-safe: call it from a widget or another thread)."""
        if self.robot.paused_reason is not None:
            self.robot.request_resume()
        else:
            self.robot.read("smoothie", "resume")

    @property
    def paused(self) -> bool:
        return self.robot.paused_reason is not None


class FlowRates:
    """uL/s for aspirate, dispense and blow_out; set them like `pipette.flow_rate.aspirate = 50`."""

    def __init__(self, pipette: "InstrumentContext"):
        self._pipette = pipette
        defaults = pipette.definition.defaultFlowRates
        self._rates = {"aspirate": defaults.aspirate, "dispense": defaults.dispense, "blow_out": defaults.blowOut}

    def _get(self, name: str) -> float:
        return self._rates[name]

    def _set(self, name: str, value: float) -> None:
        d = self._pipette.definition
        fastest = d.maxPlungerSpeed * d.ul_per_mm(d.maxVolume, "dispense")
        if not isinstance(value, (int, float)) or not 0 < value <= fastest:
            raise PipetteError(f"flow_rate.{name} = {value!r}: give 0 < rate <= {fastest:.1f} uL/s for a {d.name}")
        self._rates[name] = float(value)

    aspirate = property(lambda self: self._get("aspirate"), lambda self, v: self._set("aspirate", v))
    dispense = property(lambda self: self._get("dispense"), lambda self, v: self._set("dispense", v))
    blow_out = property(lambda self: self._get("blow_out"), lambda self, v: self._set("blow_out", v))

    def __repr__(self) -> str:
        return f"FlowRates(aspirate={self.aspirate}, dispense={self.dispense}, blow_out={self.blow_out})"


class InstrumentContext:
    def __init__(self, protocol: ProtocolContext, name: str, mount: str, definition: PipetteDefinition,
                 pipette_id: str, model: str, tip_racks: list[Labware]):
        self.protocol = protocol
        self.name = name
        self.mount = mount
        self.definition = definition
        self.pipette_id = pipette_id
        self.model = model
        self.tip_racks = tip_racks
        self.geometry = getattr(protocol.deck.mounts, mount)
        self.flow_rate = FlowRates(self)
        self.current_volume = 0.0
        self.tip_rack: Labware | None = None  # the rack the tip on the pipette came from
        self.current_tip_length = 0.0
        self._plunger_ready = False  # at `bottom` with nothing in the tip: ready to aspirate
        self._last: Location | None = None

    def __repr__(self) -> str:
        return f"{self.definition.displayName} on the {self.mount} mount"

    @property
    def has_tip(self) -> bool:
        return self.tip_rack is not None

    @property
    def min_volume(self) -> float:
        return self.definition.minVolume

    @property
    def max_volume(self) -> float:
        return self.definition.maxVolume

    @property
    def channels(self) -> int:
        return self.definition.channels

    def _after_home(self) -> None:
        self._plunger_ready = False  # homing took the plunger to its switch
        self._last = None  # and the mount up: it is over no labware now

    # -- checks (before anything moves) ----------------------------------------------------------------------------

    def _where(self, location: Location | Well | None, default: Callable[[Well], Location], what: str) -> Location:
        if isinstance(location, Well):
            location = default(location)
        if location is None:
            if self._last is None:
                raise PipetteError(f"{what}: give a location (the pipette has not been anywhere yet)")
            return self._last
        if not isinstance(location, Location):
            raise PipetteError(f"{what}: {location!r} is not a well or a location (use plate['A1'] or "
                               "plate['A1'].top())")
        self._check_channels(location, what)
        return location

    def _check_channels(self, location: Location, what: str) -> None:
        well, labware = location.well, location.labware
        if self.channels > 1 and well is not None and labware.definition.parameters.format in ("96Standard",
                                                                                               "384Standard"):
            if not well.name.startswith("A") or well.name[1:2].isalpha():
                raise PipetteError(f"{what}: an {self.channels}-channel pipette goes to row A (its first "
                                   f"channel), not {well.name}")

    def _check_volume(self, volume: float, what: str) -> float:
        d = self.definition
        if not isinstance(volume, (int, float)) or isinstance(volume, bool) or not math.isfinite(volume):
            raise VolumeError(f"{what}: volume {volume!r} is not a number of uL")
        if not d.minVolume <= volume <= d.maxVolume:
            raise VolumeError(f"{what} {volume:g} uL: a {d.name} handles {d.minVolume:g} to {d.maxVolume:g} uL")
        return float(volume)

    def _need_tip(self, what: str) -> None:
        if not self.has_tip:
            raise PipetteError(f"{what}: the {self.name} on the {self.mount} mount has no tip; pick_up_tip() first")

    # -- plunger -----------------------------------------------------------------------------------------------------

    def _plunger_to(self, position: float, speed: float | None = None) -> None:
        speed = None if speed is None else min(speed, self.definition.maxPlungerSpeed)
        self.protocol.move_axes({self.geometry.plungerAxis: round(position, 4)}, speed)

    def _plunger_at(self, volume: float, kind: str) -> float:
        return self.definition.plungerPositions.bottom + self.definition.plunger_mm(volume, kind)

    def _make_ready(self, above: Location) -> None:
        """Plunger to bottom, above the liquid (pushing air out inside the liquid would bubble)."""
        if self._plunger_ready:
            return
        self.protocol.move_pipette(self, above)
        self._plunger_to(self.definition.plungerPositions.bottom)
        self._plunger_ready = True

    # -- the API -----------------------------------------------------------------------------------------------------

    def move_to(self, location: Location | Well) -> "InstrumentContext":
        where = self._where(location, lambda w: w.top(), "move_to")
        with self.protocol.step("move_to", f"{self.name}: move to {where}"):
            self.protocol.move_pipette(self, where)
            self._last = where
        return self

    def pick_up_tip(self, location: Location | Well | None = None) -> "InstrumentContext":
        if self.has_tip:
            raise PipetteError(f"pick_up_tip: the {self.name} already has a tip; drop_tip() first")
        well = location.well if isinstance(location, Location) else location
        if well is None:
            well = self._next_tip()
        if not isinstance(well, Well) or not well.labware.is_tiprack:
            raise PipetteError(f"pick_up_tip: {well} is not in a tip rack")
        self._check_channels(well.top(), "pick_up_tip")
        rack = well.labware
        tip_length = self.protocol.tip_length(self, rack)
        pick = self.definition.pickUpTip
        axis = self.geometry.mountAxis
        with self.protocol.step("pick_up_tip", f"{self.name}: pick up tip {well.name} from {rack}"):
            self.protocol.move_pipette(self, well.top())
            self._plunger_ready = False
            self._make_ready(well.top())
            normal = self.protocol.active_current(axis)
            self.protocol.set_active_current(axis, pick.current)  # low current: the press stalls, not the rack
            try:
                above = self.protocol.position[axis]
                for _press in range(pick.presses):
                    self.protocol.move_axes({axis: round(above - pick.distance, 4)}, pick.speed)
                    self.protocol.move_axes({axis: above}, pick.speed)
            finally:
                self.protocol.set_active_current(axis, normal)
            rack.use_tips(well, self.channels)
            self.tip_rack, self.current_tip_length, self.current_volume = rack, tip_length, 0.0
            self.protocol.move_pipette(self, well.top())  # the tip's end at the rack's top
            self._last = well.top()
        return self

    def _next_tip(self) -> Well:
        if not self.tip_racks:
            raise PipetteError(f"pick_up_tip: the {self.name} has no tip racks; load_pipette(..., tip_racks=[rack]) "
                               "or pick_up_tip(rack['A1'])")
        for rack in self.tip_racks:
            well = rack.next_tip(self.channels)
            if well is not None:
                return well
        raise LabwareError(f"pick_up_tip: no tips left in {', '.join(map(str, self.tip_racks))}; "
                           "replace them and call reset_tipracks()")

    def reset_tipracks(self) -> None:
        for rack in self.tip_racks:
            rack.reset_tips()

    def aspirate(self, volume: float, location: Location | Well | None = None, rate: float = 1.0) -> "InstrumentContext":
        volume = self._check_volume(volume, "aspirate")
        self._need_tip("aspirate")
        where = self._where(location, lambda w: w.bottom(ASPIRATE_ABOVE_BOTTOM_MM), "aspirate")
        total = self.current_volume + volume
        if total > self.max_volume + 1e-9:
            raise VolumeError(f"aspirate {volume:g} uL: the tip holds {self.current_volume:g} uL already and the "
                              f"{self.name} takes at most {self.max_volume:g} uL")
        if not 0 < rate <= 10:
            raise PipetteError(f"aspirate: rate {rate} must be in (0, 10]")
        d = self.definition
        speed = self.flow_rate.aspirate * rate / d.ul_per_mm(volume, "aspirate")
        with self.protocol.step("aspirate", f"{self.name}: aspirate {volume:g} uL from {where}"):
            if not self._plunger_ready and self.current_volume == 0:
                self._make_ready(where.well.top() if where.well is not None else where.move((0, 0, 0)))
            self.protocol.move_pipette(self, where)
            self._plunger_to(self._plunger_at(total, "aspirate"), speed)
            self.current_volume = total
            self._last = where
        return self

    def dispense(self, volume: float | None = None, location: Location | Well | None = None,
                 rate: float = 1.0) -> "InstrumentContext":
        self._need_tip("dispense")
        if volume is None:
            volume = self.current_volume
        if not isinstance(volume, (int, float)) or isinstance(volume, bool) or not math.isfinite(volume) or volume <= 0:
            raise VolumeError(f"dispense: volume {volume!r} must be a positive number of uL "
                              f"(the tip holds {self.current_volume:g} uL)")
        if volume > self.current_volume + 1e-9:
            raise VolumeError(f"dispense {volume:g} uL: the tip holds only {self.current_volume:g} uL")
        if not 0 < rate <= 10:
            raise PipetteError(f"dispense: rate {rate} must be in (0, 10]")
        where = self._where(location, lambda w: w.bottom(ASPIRATE_ABOVE_BOTTOM_MM), "dispense")
        left = max(0.0, self.current_volume - volume)
        speed = self.flow_rate.dispense * rate / self.definition.ul_per_mm(volume, "dispense")
        with self.protocol.step("dispense", f"{self.name}: dispense {volume:g} uL into {where}"):
            self.protocol.move_pipette(self, where)
            self._plunger_to(self._plunger_at(left, "dispense"), speed)
            self.current_volume = left
            self._last = where
        return self

    def blow_out(self, location: Location | Well | None = None) -> "InstrumentContext":
        where = self._where(location, lambda w: w.top(), "blow_out") if location is not None else self._last
        speed = self.flow_rate.blow_out / self.definition.ul_per_mm(self.max_volume, "dispense")
        with self.protocol.step("blow_out", f"{self.name}: blow out" + (f" at {where}" if where else "")):
            if where is not None:
                self.protocol.move_pipette(self, where)
            self._plunger_to(self.definition.plungerPositions.blowOut, speed)
            self.current_volume, self._plunger_ready = 0.0, False
        return self

    def drop_tip(self, location: Location | Well | None = None) -> "InstrumentContext":
        self._need_tip("drop_tip")
        if location is None:
            where = self.protocol.fixed_trash["A1"].top()
        else:
            where = self._where(location, lambda w: w.top(), "drop_tip")
        d, plunger = self.definition, self.geometry.plungerAxis
        with self.protocol.step("drop_tip", f"{self.name}: drop tip in {where.labware or where}"):
            self.protocol.move_pipette(self, where)
            self._plunger_to(d.plungerPositions.bottom)
            normal = self.protocol.active_current(plunger)
            self.protocol.set_active_current(plunger, d.dropTipCurrent)
            try:
                self._plunger_to(d.plungerPositions.dropTip, d.dropTipSpeed)
            finally:
                self.protocol.set_active_current(plunger, normal)
            self._plunger_to(d.plungerPositions.bottom)
            self.tip_rack, self.current_tip_length, self.current_volume = None, 0.0, 0.0
            self.protocol.position = self.protocol.robot.motion("home", {"axes": [plunger]})
            self._plunger_ready = False
            self._last = where
        return self

    def home(self) -> "InstrumentContext":
        """Home this pipette's mount and plunger."""
        with self.protocol.step("home", f"{self.name}: home"):
            self.protocol._ensure_homed()
            axes = [self.geometry.mountAxis, self.geometry.plungerAxis]
            self.protocol.position = self.protocol.robot.motion("home", {"axes": axes})
            self._after_home()
        return self


def _definition(load: Callable[[], Any], error: type[ProtocolError] = LabwareError) -> Any:
    try:
        return load()
    except DefinitionError as exc:
        raise error(str(exc)) from None
