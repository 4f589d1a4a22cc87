"""`benchbus-calibration-store`: the bus wiring of calibrations.json and the robot calibration file.

Writes are serialized per file (each store's lock) and replied only after the new version is on disk. At start each
file is loaded and repaired (store.VersionedFile.open); what was repaired is announced as event/recovered.
"""
from __future__ import annotations

import sys
import threading
import time
from importlib import resources

from benchbus import BusError
from benchbus.runner import run_service
from benchbus.service import RequestContext, Service, handler
from benchbus_schemas.calibration import (
    ActiveCalibrations, ByName, Calibration, CalibrationNames, CalibrationResult, FitNames, FitRequest, FitResult,
    History, HistoryRequest, RestoreRequest, Restored, RobotKey, RobotListRequest, RobotRecordResult, RobotRecords,
    RobotSetRequest, SetActiveRequest, SetFitRequest, Written,
)
from benchbus_schemas.envelope import Empty

from . import fits
from .evolver import EvolverCalibrations
from .robot import RobotCalibrations
from .settings import CalibrationSettings
from .store import Recovery

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


class CalibrationService(Service[CalibrationSettings]):
    segment = "calibration"

    def __init__(self, settings: CalibrationSettings):
        super().__init__(settings)
        self.store = CalibrationStore(settings)
        self._recoveries = self.store.open()
        self.evolver, self.robot = self.store.evolver, self.store.robot
        self._publishing = threading.Lock()

    def on_start(self) -> None:
        for store_name, recovery in self._recoveries:
            started = "started empty" if recovery.started_empty else f"loaded version {recovery.loaded_version}"
            self.log.warning("%s: %s; moved aside %s; %s", store_name, recovery.reason,
                             recovery.moved_aside or "nothing", started)
            self.emit("recovered", {"store": store_name, "path": recovery.path, "reason": recovery.reason,
                                    "moved_aside": recovery.moved_aside, "loaded_version": recovery.loaded_version,
                                    "started_empty": recovery.started_empty})
        self.publish_states()

    def publish_states(self) -> None:
        # computed and published under one lock, so retained states never go back to an older version
        with self._publishing:
            evolver, robot, keep = self.evolver, self.robot, self.settings.keep_versions
            self.set_state("active", evolver.active_state())
            self.set_state("store", {
                "evolver": {"version": evolver.version, "path": str(evolver.file.path),
                            "entries": len(evolver.calibrations), "keep": keep},
                "robot": {"version": robot.version, "path": str(robot.file.path), "entries": len(robot.records),
                          "keep": keep},
            })

    def changed(self, store_name: str, command: str, version: int, name: str | None = None) -> None:
        self.publish_states()
        self.emit("changed", {"store": store_name, "command": command, "name": name, "version": version})

    # -- eVOLVER -------------------------------------------------------------------------------------------------------

    @handler("list_calibrations")
    def list_calibrations(self, _request: Empty, _ctx: RequestContext) -> CalibrationNames:
        return CalibrationNames(calibrations=self.evolver.names())

    @handler("list_fits")
    def list_fits(self, _request: Empty, _ctx: RequestContext) -> FitNames:
        return FitNames(fits=self.evolver.fit_names())

    @handler("get_calibration")
    def get_calibration(self, request: ByName, _ctx: RequestContext) -> CalibrationResult:
        return CalibrationResult(calibration=_on_disk(lambda: self.evolver.get(request.name)))

    @handler("set_raw")
    def set_raw(self, request: Calibration, _ctx: RequestContext) -> Written:
        version, replaced = _on_disk(lambda: self.evolver.set_raw(request))
        self.changed("evolver", "set_raw", version, request.name)
        return Written(version=version, name=request.name, replaced=replaced)

    @handler("set_fit")
    def set_fit(self, request: SetFitRequest, _ctx: RequestContext) -> Written:
        version, replaced = _on_disk(lambda: self.evolver.set_fit(request.name, request.fit))
        self.changed("evolver", "set_fit", version, request.name)
        return Written(version=version, name=request.fit.name, replaced=replaced)

    @handler("set_active")
    def set_active(self, request: SetActiveRequest, _ctx: RequestContext) -> ActiveCalibrations:
        with self.evolver.lock:
            version = _on_disk(lambda: self.evolver.set_active(request.calibration_names))
            active = self.evolver.active_calibrations()
        self.changed("evolver", "set_active", version)
        return ActiveCalibrations(activecalibrations=active)

    @handler("get_active")
    def get_active(self, _request: Empty, _ctx: RequestContext) -> ActiveCalibrations:
        return ActiveCalibrations(activecalibrations=self.evolver.active_calibrations())

    @handler("delete")
    def delete(self, request: ByName, _ctx: RequestContext) -> Written:
        version = _on_disk(lambda: self.evolver.delete(request.name))
        self.changed("evolver", "delete", version, request.name)
        return Written(version=version, name=request.name)

    @handler("fit")
    def fit(self, request: FitRequest, _ctx: RequestContext) -> FitResult:
        evolver = self.evolver
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
        self.changed("evolver", "fit", version, request.name)
        return FitResult(name=request.name, fit=request_fit, version=version, quality=quality)

    # -- durability ----------------------------------------------------------------------------------------------------

    @handler("history")
    def history(self, request: HistoryRequest, _ctx: RequestContext) -> History:
        return History(store=request.store, keep=self.settings.keep_versions,
                       versions=self.store.file_of(request.store).file.history())

    @handler("restore")
    def restore(self, request: RestoreRequest, _ctx: RequestContext) -> Restored:
        version = _on_disk(lambda: self.store.file_of(request.store).restore(request.version))
        self.changed(request.store, "restore", version)
        return Restored(store=request.store, restored_from=request.version, version=version)

    # -- robot ---------------------------------------------------------------------------------------------------------

    @handler("robot_list")
    def robot_list(self, request: RobotListRequest, _ctx: RequestContext) -> RobotRecords:
        return RobotRecords(records=self.robot.list(request.kind))

    @handler("robot_get")
    def robot_get(self, request: RobotKey, _ctx: RequestContext) -> RobotRecordResult:
        return RobotRecordResult(record=_on_disk(lambda: self.robot.get(request)))

    @handler("robot_set")
    def robot_set(self, request: RobotSetRequest, _ctx: RequestContext) -> Written:
        version, replaced, key = _on_disk(lambda: self.robot.set(request.record))
        self.changed("robot", "robot_set", version, key)
        return Written(store="robot", version=version, name=key, replaced=replaced)

    @handler("robot_delete")
    def robot_delete(self, request: RobotKey, _ctx: RequestContext) -> Written:
        version, key = _on_disk(lambda: self.robot.delete(request))
        self.changed("robot", "robot_delete", version, key)
        return Written(store="robot", version=version, name=key)


def main(argv: list[str] | None = None) -> int:
    return run_service(CalibrationService, argv)


if __name__ == "__main__":
    sys.exit(main())
