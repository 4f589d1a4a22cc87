"""Opentrons' protocol API on the bus backend: the pieces `benchbus-execute`, notebooks and a runner service share.

    robot = Robot(device, broker)                  # or Robot(device, bus=an_existing_BusClient)
    with RobotSession(robot) as session:           # lease taken, calibrations materialised, hardware built
        session.run_file("protocol.py", emit_runlog=print_it)        # like opentrons_execute
        protocol = session.context("2.13")                             # like opentrons.execute.get_protocol_api

`build_bus_hardware` is the builder Opentrons' `ThreadManager` runs: it returns Opentrons' own OT-2
`hardware_control.API` with `BusBackend` as its backend, as `API.build_hardware_controller` does with `Controller`.
Protocols below apiLevel 2.14 run on Opentrons' legacy context; 2.14 and newer on its protocol engine, which off the
robot needs the OT-2 deck configuration given explicitly (`OT2_DECK_CONFIGURATION`).

A `protocol.pause(msg)` waits for the robot's button (or `session.resume()`), as the door does.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .calibration import calibrated_since, materialise, private_config_dir
from .robot import Robot

log = logging.getLogger("benchbus.ot2")

# cutouts 1-11: standard slots; 12: the fixed trash (Opentrons' deck definition ot2_standard v5)
OT2_DECK_CONFIGURATION: list[tuple[str, str, str | None]] = [
    *((f"cutout{n}", "singleStandardSlot", None) for n in range(1, 12)), ("cutout12", "fixedTrashSlot", None)]

RunlogCallback = Callable[[Any], None]  # Opentrons' run log message (a TypedDict per command)


async def build_bus_hardware(robot: Robot, config: Any = None, loop: asyncio.AbstractEventLoop | None = None,
                             **_ignored: Any) -> Any:
    """Opentrons' OT-2 hardware API on the bus backend (the builder `ThreadManager` calls on its own loop)."""
    from opentrons.config import robot_configs
    from opentrons.hardware_control import API
    from opentrons.hardware_control.module_control import AttachedModulesControl

    from .backend import BusBackend

    loop = loop or asyncio.get_running_loop()
    config = config or robot_configs.load_ot2()
    backend = BusBackend(robot, config)
    await backend.connect()
    api = API(backend, loop=loop, config=config)  # type: ignore[arg-type, abstract]  # duck-typed like Controller
    await api.cache_instruments()
    if backend.is_homed(list("XYZABC")):
        # another client homed the robot before us: take its position as known (a fresh API knows none, and the
        # protocol engine refuses to move from an unknown position when the board says nothing needs homing)
        from opentrons.types import Mount

        await api.current_position(Mount.LEFT, refresh=True)
    backend.module_controls = await AttachedModulesControl.build(
        api, board_revision=backend.board_revision, event_callback=api._send_module_notification)
    backend.start_gpio_door_watcher(loop, api._update_door_state)
    # off the robot Opentrons listens for its own module emulator; modules are not on the bus (yet): stop that
    listener = getattr(backend.module_controls, "_emulation_listen_task", None)
    if listener is not None:
        listener.cancel()
        backend.module_controls._emulation_listen_task = None
    return api


def thread_managed_hardware(robot: Robot, config: Any = None) -> Any:
    """The bus hardware API in Opentrons' ThreadManager (its own thread and loop), as opentrons.execute keeps it."""
    from opentrons.hardware_control import ThreadManager

    return ThreadManager(build_bus_hardware, robot=robot, config=config)


class RobotSession:
    """One client's use of the robot: the lease, the private calibration folder, the hardware API, the contexts."""

    def __init__(self, robot: Robot, *, calibrations: bool = True):
        self.robot = robot
        self.calibrations = calibrations
        self.config_dir = private_config_dir()  # before opentrons is imported
        self.calibration_notes: list[str] = []
        self.hardware: Any = None
        self._paused_by_protocol = threading.Event()
        self._engine_contexts = contextlib.ExitStack()
        self._resume_action: Callable[[], object] | None = None
        self._stop_action: Callable[[], object] | None = None

    # -- life cycle --------------------------------------------------------------------------------------------------

    def open(self) -> RobotSession:
        self.robot.open()
        try:
            self.robot.acquire_lease()
            if self.calibrations:
                self._load_calibrations()
            self.hardware = thread_managed_hardware(self.robot)
        except BaseException:
            self.robot.close()
            raise
        return self

    def _load_calibrations(self) -> None:
        try:
            records = self.robot.read("calibration", "robot_list", {})["records"]
        except Exception as exc:  # no store on this bus: nominal geometry, said once
            log.warning("no robot calibrations (%s): running on nominal geometry", exc)
            self.calibration_notes.append(f"no calibrations: {exc}")
            return
        self.calibration_notes = materialise(records)

    def close(self) -> None:
        self._engine_contexts.close()
        if self.hardware is not None:
            with contextlib.suppress(Exception):
                self.hardware.clean_up()
            self.hardware = None
        if self.calibrations:
            self._write_back_calibrations()
        self.robot.close()

    def _write_back_calibrations(self) -> None:
        """What the run calibrated goes to calibration-store, the owner (one record per command, on disk there)."""
        for record in calibrated_since():
            try:
                self.robot.read("calibration", "robot_set", {"record": record})
                self.calibration_notes.append(f"stored {record['kind']} {record.get('pipette_id') or ''}".strip())
            except Exception as exc:  # the run is over; say what was not kept
                log.error("calibration-store refused %s: %s", record, exc)

    def __enter__(self) -> RobotSession:
        return self.open()

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    # -- pause and resume --------------------------------------------------------------------------------------------

    def stop_run(self) -> bool:
        """Stop the protocol-engine run in progress (safe from another thread or a signal handler): the engine
        halts what moves and ends the run. False when no engine run is going (a legacy run is stopped by raising
        in its thread)."""
        if self._stop_action is None:
            return False
        self._stop_action()
        return True

    def resume(self) -> None:
        """Continue after a protocol's pause or an open door (thread-safe), like the robot's button."""
        self.robot.request_resume()

    def _watch_pauses(self, message: Any) -> None:
        """A protocol's `pause()` step: wait, off the run's thread, for the button or resume(), then continue."""
        if message.get("name") != "command.PAUSE" or message.get("$") != "before":
            return
        text = (message.get("payload") or {}).get("text") or "paused by the protocol"
        threading.Thread(target=self._wait_then_resume, args=(text,), name="ot2-pause", daemon=True).start()

    def _wait_then_resume(self, text: str) -> None:
        self.robot.wait_for_resume(text)
        if self._resume_action is not None:
            self._resume_action()

    # -- contexts ----------------------------------------------------------------------------------------------------

    def context(self, version: str, extra_labware: dict[str, Any] | None = None,
                bundled_data: dict[str, bytes] | None = None) -> Any:
        """A live ProtocolContext on this robot (Opentrons' `get_protocol_api`)."""
        from opentrons.protocols import parse

        api_version = parse.version_from_string(version)
        labware = {**benchbus_labware(), **(extra_labware or {})}
        context = self._create_context(api_version, labware, bundled_data)
        self.hardware.sync.cache_instruments()
        return context

    def _create_context(self, api_version: Any, extra_labware: dict[str, Any],
                        bundled_data: dict[str, bytes] | None) -> Any:
        from opentrons import protocol_api
        from opentrons.hardware_control.types import PauseType
        from opentrons.protocol_api.core.engine import ENGINE_CORE_API_VERSION
        from opentrons.protocols.api_support.deck_type import guess_from_global_config

        if api_version < ENGINE_CORE_API_VERSION:
            context = protocol_api.create_protocol_context(
                api_version=api_version, deck_type=guess_from_global_config(), hardware_api=self.hardware,
                extra_labware=extra_labware, bundled_data=bundled_data)
            self._resume_action = lambda: self.hardware.sync.resume(PauseType.PAUSE)
        else:
            context = self._create_engine_context(api_version, extra_labware, bundled_data)
        context.broker.subscribe("command", self._watch_pauses)
        return context

    def _create_engine_context(self, api_version: Any, extra_labware: dict[str, Any],
                               bundled_data: dict[str, bytes] | None) -> Any:
        from opentrons import protocol_api
        from opentrons.protocol_engine import error_recovery_policy
        from opentrons.protocol_engine.create_protocol_engine import create_protocol_engine_in_thread
        from opentrons.protocol_engine.types import PostRunHardwareState
        from opentrons.protocols.api_support.deck_type import (guess_from_global_config,
                                                               should_load_fixed_trash_labware_for_python_protocol)
        from opentrons_shared_data.labware.labware_definition import labware_definition_type_adapter

        engine, loop = self._engine_contexts.enter_context(create_protocol_engine_in_thread(
            hardware_api=self.hardware.wrapped(), config=engine_config(),
            deck_configuration=OT2_DECK_CONFIGURATION, file_provider=None,
            error_recovery_policy=error_recovery_policy.never_recover, drop_tips_after_run=False,
            post_run_hardware_state=PostRunHardwareState.STAY_ENGAGED_IN_PLACE,
            load_fixed_trash=should_load_fixed_trash_labware_for_python_protocol(api_version),
            camera_provider=None))

        async def add_labware() -> None:
            for definition in extra_labware.values():
                engine.add_labware_definition(labware_definition_type_adapter.validate_python(definition))
        asyncio.run_coroutine_threadsafe(add_labware(), loop).result()
        self._resume_action = lambda: loop.call_soon_threadsafe(engine.play)
        return protocol_api.create_protocol_context(
            api_version=api_version, hardware_api=self.hardware, deck_type=guess_from_global_config(),
            protocol_engine=engine, protocol_engine_loop=loop, bundled_data=bundled_data)

    # -- whole files -------------------------------------------------------------------------------------------------

    def run_file(self, path: str | Path, emit_runlog: RunlogCallback | None = None,
                 custom_labware_paths: list[str] | None = None) -> None:
        """Run a protocol file as `opentrons_execute` does; raises what the protocol raised."""
        from opentrons.protocols import parse
        from opentrons.protocols.types import ApiDeprecationError
        from opentrons.protocols.api_support.types import APIVersion
        from opentrons.protocol_api.core.engine import ENGINE_CORE_API_VERSION
        from opentrons.util import entrypoint_util

        path = Path(path)
        labware = entrypoint_util.labware_from_paths(benchbus_labware_paths() + list(custom_labware_paths or []))
        protocol = parse.parse(path.read_bytes(), path.name,
                               extra_labware={uri: found.definition for uri, found in labware.items()})
        if protocol.api_level < APIVersion(2, 0):
            raise ApiDeprecationError(version=protocol.api_level)
        if protocol.robot_type != "OT-2 Standard":
            raise RuntimeError(f"this is an OT-2; the protocol is for {protocol.robot_type!r}")
        if protocol.api_level < ENGINE_CORE_API_VERSION:
            self._run_legacy(protocol, emit_runlog)
        else:
            self._run_engine(protocol, emit_runlog)

    def _run_legacy(self, protocol: Any, emit_runlog: RunlogCallback | None) -> None:
        from opentrons.protocols.execution import execute as execute_apiv2

        context = self._create_context(protocol.api_level, getattr(protocol, "extra_labware", None) or {},
                                       getattr(protocol, "bundled_data", None))
        if emit_runlog:
            context.broker.subscribe("command", emit_runlog)
        context.home()
        try:
            execute_apiv2.run_protocol(protocol, context, run_time_parameters_with_overrides=None)
        finally:
            context.cleanup()

    def _run_engine(self, protocol: Any, emit_runlog: RunlogCallback | None) -> None:
        from opentrons.util import entrypoint_util

        with entrypoint_util.adapt_protocol_source(protocol) as source:
            asyncio.run(self._engine_run(source, emit_runlog))

    async def _engine_run(self, source: Any, emit_runlog: RunlogCallback | None) -> None:
        from opentrons.protocol_engine import EngineStatus, error_recovery_policy
        from opentrons.protocol_engine.create_protocol_engine import create_protocol_engine
        from opentrons.protocol_runner import LiveRunner, RunOrchestrator, create_protocol_runner
        from opentrons.protocols.api_support.deck_type import should_load_fixed_trash
        from opentrons.util import entrypoint_util

        hardware = self.hardware.wrapped()
        engine = await create_protocol_engine(hardware_api=hardware, config=engine_config(),
                                              error_recovery_policy=error_recovery_policy.never_recover,
                                              load_fixed_trash=should_load_fixed_trash(source.config))
        runner = create_protocol_runner(protocol_config=source.config, protocol_engine=engine,
                                        hardware_api=hardware)
        orchestrator = RunOrchestrator(
            hardware_api=hardware, protocol_engine=engine, json_or_python_protocol_runner=runner,
            fixit_runner=LiveRunner(protocol_engine=engine, hardware_api=hardware),
            setup_runner=LiveRunner(protocol_engine=engine, hardware_api=hardware),
            protocol_live_runner=LiveRunner(protocol_engine=engine, hardware_api=hardware), camera_provider=None)
        loop = asyncio.get_running_loop()
        self._resume_action = lambda: loop.call_soon_threadsafe(orchestrator.play, OT2_DECK_CONFIGURATION)

        def on_command(message: Any) -> None:
            self._watch_pauses(message)
            if emit_runlog:
                emit_runlog(message)
        unsubscribe = runner.broker.subscribe("command", on_command)
        self._stop_action = lambda: loop.call_soon_threadsafe(lambda: loop.create_task(orchestrator.stop()))
        try:
            result = await orchestrator.run(deck_configuration=OT2_DECK_CONFIGURATION, protocol_source=source)
        finally:
            self._stop_action = None
            unsubscribe()
        if result.state_summary.status != EngineStatus.SUCCEEDED:
            raise entrypoint_util.ProtocolEngineExecuteError(result.state_summary.errors)


def benchbus_labware_paths() -> list[str]:
    """benchbus's own labware folders (shared-data/labware): loadable in every run without -L."""
    from benchbus_shared_data import labware_dirs

    return [str(path) for path in labware_dirs()]


def benchbus_labware() -> dict[str, Any]:
    from opentrons.util import entrypoint_util

    found = entrypoint_util.labware_from_paths(benchbus_labware_paths())
    return {uri: item.definition for uri, item in found.items()}


def engine_config() -> Any:
    from opentrons.protocol_engine import Config, DeckType

    return Config(robot_type="OT-2 Standard", deck_type=DeckType.OT2_STANDARD)
