"""`benchbus-calibration-store`: the bus wiring of calibrations.json and the robot calibration file.

Writes are serialized per file (each store's lock) and replied only after the new version is on disk. At start each
file is loaded and repaired (store.VersionedFile.open); what was repaired is announced as event/recovered.
"""
from __future__ import annotations

import sys
import threading
import time
from importlib import resources
from typing import Any

from benchbus import BusError
from benchbus.runner import run_service
from benchbus.service import RequestContext, Service
from benchbus_schemas.calibration import (
    ActiveCalibrations, ByName, Calibration, CalibrationNames, CalibrationResult, FitNames, FitRequest, FitResult,
    History, HistoryRequest, RestoreRequest, Restored, RobotKey, RobotListRequest, RobotRecordResult, RobotRecords,
    RobotSetRequest, SetActiveRequest, SetFitRequest, Written,
)

from . import fits
from .evolver import EvolverCalibrations
from .robot import RobotCalibrations
from .settings import CalibrationSettings
from .store import Recovery

SEGMENT = "calibration"


def example_calibrations() -> bytes:
    """The small example shipped with the package (our own data in the eVOLVER format)."""
    return resources.files("benchbus_calibration").joinpath("data/example-calibrations.json").read_bytes()


class CalibrationStore:
    """The two files and the operations the handlers need; knows nothing of MQTT."""

    def __init__(self, settings: CalibrationSettings):
        self.settings = settings
        directory = settings.data_dir
        self.evolver = EvolverCalibrations(directory / settings.evolver_file, settings.keep_versions)
        self.robot = RobotCalibrations(directory / settings.robot_file, settings.keep_versions)

    def open(self) -> list[tuple[str, Recovery]]:
        seed = example_calibrations() if self.settings.seed_example else None
        repaired = [("evolver", self.evolver.open(seed)), ("robot", self.robot.open())]
        return [(name, recovery) for name, recovery in repaired if recovery is not None]

    def file_of(self, store: str):
        return self.evolver if store == "evolver" else self.robot


def _on_disk(action):
    """Map what a store raises to the bus's error codes; nothing is changed when any of these is raised."""
    try:
        return action()
    except KeyError as exc:
        raise BusError("not_found", str(exc.args[0]) if exc.args else "not found") from None
    except fits.FitError as exc:
        raise BusError("invalid_request", str(exc), {"vials": {str(k): v for k, v in exc.vials.items()}}) from None
    except OSError as exc:
        raise BusError("unavailable", f"the calibration file could not be written: {exc}") from None


def build(settings: CalibrationSettings) -> tuple[Service, Any]:
    service = Service(SEGMENT, settings)
    store = CalibrationStore(settings)
    recoveries = store.open()
    evolver, robot = store.evolver, store.robot

    publishing = threading.Lock()

    def publish_states() -> None:
        # computed and published under one lock, so retained states never go back to an older version
        with publishing:
            _publish_states()

    def _publish_states() -> None:
        service.set_state("active", evolver.active_state())
        service.set_state("store", {
            "evolver": {"version": evolver.version, "path": str(evolver.file.path),
                        "entries": len(evolver.calibrations), "keep": settings.keep_versions},
            "robot": {"version": robot.version, "path": str(robot.file.path), "entries": len(robot.records),
                      "keep": settings.keep_versions},
        })

    def changed(store_name: str, command: str, version: int, name: str | None = None) -> None:
        publish_states()
        service.emit("changed", {"store": store_name, "command": command, "name": name, "version": version})

    # -- eVOLVER -------------------------------------------------------------------------------------------------------

    @service.handles("list_calibrations")
    def list_calibrations(_request, _ctx: RequestContext) -> CalibrationNames:
        return CalibrationNames(calibrations=evolver.names())

    @service.handles("list_fits")
    def list_fits(_request, _ctx: RequestContext) -> FitNames:
        return FitNames(fits=evolver.fit_names())

    @service.handles("get_calibration")
    def get_calibration(request: ByName, _ctx: RequestContext) -> CalibrationResult:
        return CalibrationResult(calibration=_on_disk(lambda: evolver.get(request.name)))

    @service.handles("set_raw")
    def set_raw(request: Calibration, _ctx: RequestContext) -> Written:
        version, replaced = _on_disk(lambda: evolver.set_raw(request))
        changed("evolver", "set_raw", version, request.name)
        return Written(version=version, name=request.name, replaced=replaced)

    @service.handles("set_fit")
    def set_fit(request: SetFitRequest, _ctx: RequestContext) -> Written:
        version, replaced = _on_disk(lambda: evolver.set_fit(request.name, request.fit))
        changed("evolver", "set_fit", version, request.name)
        return Written(version=version, name=request.fit.name, replaced=replaced)

    @service.handles("set_active")
    def set_active(request: SetActiveRequest, _ctx: RequestContext) -> ActiveCalibrations:
        with evolver.lock:
            version = _on_disk(lambda: evolver.set_active(request.calibration_names))
            active = evolver.active_calibrations()
        changed("evolver", "set_active", version)
        return ActiveCalibrations(activecalibrations=active)

    @service.handles("get_active")
    def get_active(_request, _ctx: RequestContext) -> ActiveCalibrations:
        return ActiveCalibrations(activecalibrations=evolver.active_calibrations())

    @service.handles("delete")
    def delete(request: ByName, _ctx: RequestContext) -> Written:
        version = _on_disk(lambda: evolver.delete(request.name))
        changed("evolver", "delete", version, request.name)
        return Written(version=version, name=request.name)

    @service.handles("fit")
    def fit(request: FitRequest, _ctx: RequestContext) -> FitResult:
        source = _on_disk(lambda: evolver.fit_source(request.name))
        params = request.params or fits.DEFAULT_PARAMS[request.type]
        coefficients, quality = _on_disk(lambda: fits.fit_calibration(source, request.type, params))
        new_fit = {"name": request.fit_name, "type": request.type, "coefficients": coefficients, "params": params,
                   "active": request.active, "timeFit": round(time.time(), 3)}
        request_fit = SetFitRequest.model_validate({"name": request.name, "fit": new_fit}).fit
        with evolver.lock:
            exists = any(f.name == request.fit_name for f in _on_disk(lambda: evolver.get(request.name)).fits)
            if exists and not request.replace:
                raise BusError("conflict", f"calibration {request.name!r} already has a fit named {request.fit_name!r}")
            version, _ = _on_disk(lambda: evolver.set_fit(request.name, request_fit))
        changed("evolver", "fit", version, request.name)
        return FitResult(name=request.name, fit=request_fit, version=version, quality=quality)

    # -- durability ----------------------------------------------------------------------------------------------------

    @service.handles("history")
    def history(request: HistoryRequest, _ctx: RequestContext) -> History:
        return History(store=request.store, keep=settings.keep_versions,
                       versions=store.file_of(request.store).file.history())

    @service.handles("restore")
    def restore(request: RestoreRequest, _ctx: RequestContext) -> Restored:
        version = _on_disk(lambda: store.file_of(request.store).restore(request.version))
        changed(request.store, "restore", version)
        return Restored(store=request.store, restored_from=request.version, version=version)

    # -- robot ---------------------------------------------------------------------------------------------------------

    @service.handles("robot_list")
    def robot_list(request: RobotListRequest, _ctx: RequestContext) -> RobotRecords:
        return RobotRecords(records=robot.list(request.kind))

    @service.handles("robot_get")
    def robot_get(request: RobotKey, _ctx: RequestContext) -> RobotRecordResult:
        return RobotRecordResult(record=_on_disk(lambda: robot.get(request)))

    @service.handles("robot_set")
    def robot_set(request: RobotSetRequest, _ctx: RequestContext) -> Written:
        version, replaced, key = _on_disk(lambda: robot.set(request.record))
        changed("robot", "robot_set", version, key)
        return Written(store="robot", version=version, name=key, replaced=replaced)

    @service.handles("robot_delete")
    def robot_delete(request: RobotKey, _ctx: RequestContext) -> Written:
        version, key = _on_disk(lambda: robot.delete(request))
        changed("robot", "robot_delete", version, key)
        return Written(store="robot", version=version, name=key)

    def setup() -> None:
        for store_name, recovery in recoveries:
            started = "started empty" if recovery.started_empty else f"loaded version {recovery.loaded_version}"
            service.log.warning("%s: %s; moved aside %s; %s", store_name, recovery.reason,
                                recovery.moved_aside or "nothing", started)
            service.emit("recovered", {"store": store_name, "path": recovery.path, "reason": recovery.reason,
                                       "moved_aside": recovery.moved_aside, "loaded_version": recovery.loaded_version,
                                       "started_empty": recovery.started_empty})
        publish_states()

    return service, setup


def main(argv: list[str] | None = None) -> int:
    return run_service(SEGMENT, CalibrationSettings, build, argv)


if __name__ == "__main__":
    sys.exit(main())
