"""eVOLVER calibrations.json: the operations of the original server's Socket.IO events, without its bugs.

Every change is made on a copy, written to disk (store.VersionedFile), and only then becomes the current list, so a
failed write changes nothing. Callers serialize changes with `lock`.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from benchbus_schemas.calibration import ActiveFit, ActiveState, Calibration, Fit

from .store import Recovery, VersionedFile

CALIBRATIONS = TypeAdapter(list[Calibration])


def parse_calibrations(data: bytes) -> list[Calibration]:
    """A calibrations.json file: a JSON array of calibrations (numbers as strings accepted)."""
    return CALIBRATIONS.validate_json(data)


def dump_calibrations(calibrations: list[Calibration]) -> bytes:
    """The eVOLVER format with clean numbers; absent optional fields are left out rather than written as null."""
    data = [c.model_dump(mode="json", exclude_none=True) for c in calibrations]
    return (json.dumps(data, indent=1) + "\n").encode()


class EvolverCalibrations:
    def __init__(self, path: Path | str, keep: int = 20):
        self.file = VersionedFile(path, parse_calibrations, keep)
        self.lock = threading.RLock()

    def open(self, seed: bytes | None = None) -> Recovery | None:
        """Load (and repair) the file; a device with no file at all starts with `seed`, else an empty list."""
        return self.file.open(seed if seed is not None else b"[]\n")

    @property
    def calibrations(self) -> list[Calibration]:
        return list(self.file.value)

    @property
    def version(self) -> int:
        return self.file.version

    def _commit(self, calibrations: list[Calibration]) -> int:
        return self.file.write(dump_calibrations(calibrations))

    # -- reads ---------------------------------------------------------------------------------------------------------

    def names(self) -> list[dict[str, str]]:
        return [{"name": c.name, "calibrationType": c.calibrationType} for c in self.calibrations]

    def fit_names(self) -> list[dict[str, str]]:
        return [{"name": f.name, "calibrationType": c.calibrationType} for c in self.calibrations for f in c.fits]

    def get(self, name: str) -> Calibration:
        for calibration in self.calibrations:
            if calibration.name == name:
                return calibration
        raise KeyError(f"no calibration named {name!r}")

    def active_calibrations(self) -> list[Calibration]:
        return [c for c in self.calibrations if any(f.active for f in c.fits)]

    def active_state(self) -> ActiveState:
        fits = [ActiveFit(calibration=c.name, calibrationType=c.calibrationType, fit=f.name, type=f.type,
                          params=f.params, coefficients=f.coefficients, timeFit=f.timeFit)
                for c in self.calibrations for f in c.fits if f.active]
        by_type: dict[str, ActiveFit] = {}
        counts: dict[str, int] = {}
        for fit in fits:  # the last one wins, as the DPU's activecalibrations handler keeps it
            by_type[fit.calibrationType] = fit
            counts[fit.calibrationType] = counts.get(fit.calibrationType, 0) + 1
        return ActiveState(by_type=by_type, fits=fits, ambiguous=sorted(t for t, n in counts.items() if n > 1),
                           version=self.version)

    # -- writes (each returns (version, replaced)) ---------------------------------------------------------------

    def set_raw(self, calibration: Calibration) -> tuple[int, bool]:
        """Store a calibration, replacing the one of the same name in place (others keep their order)."""
        with self.lock:
            current = self.calibrations
            replaced = any(c.name == calibration.name for c in current)
            if replaced:
                updated = [calibration if c.name == calibration.name else c for c in current]
            else:
                updated = current + [calibration]
            return self._commit(updated), replaced

    def set_fit(self, name: str, fit: Fit) -> tuple[int, bool]:
        """Add a fit, or replace the fit of the same name (the original crashed on both a replace and a
        calibration without fits)."""
        with self.lock:
            calibration = self.get(name)
            replaced = any(f.name == fit.name for f in calibration.fits)
            fits = ([fit if f.name == fit.name else f for f in calibration.fits] if replaced
                    else calibration.fits + [fit])
            updated = calibration.model_copy(update={"fits": fits})
            return self._commit([updated if c.name == name else c for c in self.calibrations]), replaced

    def set_active(self, fit_names: list[str]) -> int:
        """Every fit named becomes active, every other inactive (as the GUI expects); an unknown name changes
        nothing."""
        with self.lock:
            known = {f.name for c in self.calibrations for f in c.fits}
            unknown = [n for n in fit_names if n not in known]
            if unknown:
                raise KeyError(f"no fit named {', '.join(repr(n) for n in unknown)}")
            wanted = set(fit_names)
            updated = [c.model_copy(update={"fits": [f.model_copy(update={"active": f.name in wanted})
                                                     for f in c.fits]})
                       for c in self.calibrations]
            return self._commit(updated)

    def delete(self, name: str) -> int:
        with self.lock:
            self.get(name)
            return self._commit([c for c in self.calibrations if c.name != name])

    def restore(self, version: int) -> int:
        with self.lock:
            return self.file.restore(version)

    def fit_source(self, name: str) -> dict[str, Any]:
        """A calibration as plain data, for fits.fit_calibration."""
        return self.get(name).model_dump(mode="json")
