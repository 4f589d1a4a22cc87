"""The seam between benchbus and Opentrons: what an `opentrons` upgrade could break, checked here so that an
upgrade fails this file first (and says where), not a robot run.

benchbus_ot2 uses, besides Opentrons' public protocol API: the OT-2 hardware controller's backend interface
(`backends.controller.Controller`, duck-typed by `BusBackend`), `hardware_control.API(backend, loop, config)`,
two of its private hooks (`_update_door_state`, `_send_module_notification`), the module control's emulator
listener (`_emulation_listen_task`), `opentrons.config.CONFIG` (a notebook that imported opentrons first), and the
functions `opentrons.execute` itself runs a file with."""
from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import opentrons
import opentrons_shared_data

from benchbus_ot2.backend import BusBackend

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER_ONLY = {"build", "_build_event_watcher", "_handle_watch_event", "_query_mount"}  # G-code/GPIO plumbing


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_opentrons_is_the_pinned_release_everywhere():
    assert opentrons.__version__ == "8.8.2" and opentrons_shared_data.__version__ == "8.8.2"
    ours = tomllib.loads((ROOT / "services/protocol-api/pyproject.toml").read_text())["project"]["dependencies"]
    shared = tomllib.loads((ROOT / "shared-data/pyproject.toml").read_text())["project"]["dependencies"]
    assert "opentrons==8.8.2" in ours and "opentrons-shared-data==8.8.2" in ours
    assert "opentrons-shared-data==8.8.2" in shared


def test_the_bus_backend_has_every_method_of_opentrons_controller_with_its_parameters():
    from opentrons.hardware_control.backends.controller import Controller

    theirs = {name for name in dir(Controller) if not name.startswith("__")} - CONTROLLER_ONLY
    ours = {name for name in dir(BusBackend) if not name.startswith("__")}
    assert theirs - ours == set(), "Opentrons' Controller grew methods the bus backend lacks"
    for name in sorted(theirs):
        mine, original = inspect.getattr_static(BusBackend, name), inspect.getattr_static(Controller, name)
        assert isinstance(mine, property) == isinstance(original, property), name
        if callable(original) and not isinstance(original, property):
            assert parameters(getattr(BusBackend, name)) == parameters(getattr(Controller, name)), name
            assert inspect.iscoroutinefunction(getattr(BusBackend, name)) == inspect.iscoroutinefunction(
                getattr(Controller, name)), name


def test_the_hardware_api_takes_its_backend_and_has_the_hooks_the_builder_uses():
    from opentrons.hardware_control import API, ThreadManager
    from opentrons.hardware_control.module_control import AttachedModulesControl

    assert parameters(API.__init__)[:4] == ["self", "backend", "loop", "config"]
    assert callable(API._update_door_state) and callable(API._send_module_notification)
    assert parameters(AttachedModulesControl.build) == ["api_instance", "board_revision", "event_callback"]
    assert "_emulation_listen_task" in inspect.getsource(AttachedModulesControl.__init__)
    assert "builder" in parameters(ThreadManager.__init__)


def test_the_run_machinery_benchbus_execute_uses_is_where_it_was():
    import opentrons.config
    from opentrons.protocol_api import MAX_SUPPORTED_VERSION
    from opentrons.protocol_api.core.engine import ENGINE_CORE_API_VERSION
    from opentrons.protocol_engine.create_protocol_engine import (create_protocol_engine,
                                                                  create_protocol_engine_in_thread)
    from opentrons.protocol_runner import RunOrchestrator
    from opentrons.util import entrypoint_util

    assert str(ENGINE_CORE_API_VERSION) == "2.14"
    assert str(MAX_SUPPORTED_VERSION) == "2.27", "a new apiLevel: add a protocol for it to tests/protocol/protocols"
    assert {"hardware_api", "config", "deck_configuration", "load_fixed_trash"} <= set(
        parameters(create_protocol_engine_in_thread))
    assert {"hardware_api", "config", "error_recovery_policy", "load_fixed_trash"} <= set(
        parameters(create_protocol_engine))
    assert parameters(RunOrchestrator.play) == ["self", "deck_configuration"]
    assert callable(entrypoint_util.labware_from_paths) and callable(entrypoint_util.adapt_protocol_source)
    assert isinstance(opentrons.config.CONFIG, dict) and "robot_calibration_dir" in opentrons.config.CONFIG
