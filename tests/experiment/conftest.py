"""The rig for experiment tests: the SAMD21 emulator with growing cultures (time-scaled), the real samd-bridge,
calibration-store (seeded with the shipped example, whose fits the emulator inverts), broadcast-scheduler and the
experiment service, all on the test broker."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

from benchbus.testing import wait_until
from benchbus.testing.plugin import service_env
from benchbus_calibration.service import CalibrationService
from benchbus_calibration.settings import CalibrationSettings
from benchbus_experiment.service import ExperimentService
from benchbus_experiment.settings import ExperimentSettings
from benchbus_samd.culture import CultureParams, Noise, Rig, RigCalibration
from benchbus_samd.emulator.line import SamdEmulator
from benchbus_samd.emulator.wire import LineTiming
from benchbus_samd.service import SamdService
from benchbus_samd.settings import SamdSettings
from benchbus_scheduler.service import SchedulerService
from benchbus_scheduler.settings import SHARED, SchedulerSettings

FAST = dict(baudrate=230400, reply_delay_s=0.002, hold_s=0.002)
TIME_SCALE = 1440.0  # a day in a minute
BROADCAST_S = 0.05  # back to back: a broadcast every ~2 emulated minutes (the cycle takes ~80 ms)


def example_calibrations() -> list:
    data = resources.files("benchbus_calibration").joinpath("data/example-calibrations.json").read_text()
    return json.loads(data)


def fast_conf(timing: float = BROADCAST_S) -> str:
    return (SHARED / "conf.yml").read_text().replace("broadcast_timing: 20", f"broadcast_timing: {timing}")


class RigUnderTest:
    """The emulator with its cultures, and helpers to watch them."""

    def __init__(self, emulator: SamdEmulator, time_scale: float):
        self.emulator = emulator
        self.time_scale = time_scale
        self.samples: list[tuple[float, float, list[dict]]] = []  # (wall time, model s, vials)
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def set_od(self, vials, od: float) -> None:
        with self.emulator._lock:
            self.emulator.rig_clock.sync(time.monotonic())
            for vial in vials:
                self.emulator.rig.vials[vial].od = od

    def model_h(self) -> float:
        return self.emulator.model_time() / 3600.0

    def wait_model_h(self, hours: float, timeout: float = 120.0) -> None:
        wait_until(lambda: self.model_h() >= hours, timeout, f"the emulator reaching {hours} model hours", every=0.05)

    def start_sampling(self, every_s: float = 0.02) -> None:
        def run() -> None:
            while not self._stop.wait(every_s):
                self.samples.append((time.time(), self.emulator.model_time(), self.emulator.culture()))
        self._sampler = threading.Thread(target=run, daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(2)


@pytest.fixture
def time_scale() -> float:
    """Model seconds per real second for the rig and the experiment service; a test that judges fine model timing
    takes a lower one (on a loaded machine each real millisecond of delay is this many model milliseconds)."""
    return TIME_SCALE


@pytest.fixture
def rig_emulator(time_scale):
    calibration = RigCalibration.from_evolver(example_calibrations())
    # a slow strain, 0.2/h at 30 C (yeast in minimal medium), 1 % OD noise: a broadcast here is ~2 emulated minutes
    # (the DPU's are 20 s), so a faster culture would outgrow the band between two broadcasts on a loaded machine
    rig = Rig(calibration, CultureParams(mu_max_per_h=0.2), temp_tau_s=300.0, noise=Noise(), seed=7)
    emu = SamdEmulator(LineTiming(stir_hold_s=0.004, **FAST), rig=rig, time_scale=time_scale)
    emu.start_tcp(0)
    yield RigUnderTest(emu, time_scale)
    emu.close()


@pytest.fixture
def stack(rig_emulator, make_settings, serve, tmp_path, time_scale):
    """Bridge, calibration-store and scheduler in-process; returns a function starting the experiment service
    in-process (or as a process with `process=True`, for kill -9)."""
    emu = rig_emulator.emulator
    conf_path = tmp_path / "scheduler" / "conf.yml"
    conf_path.parent.mkdir()
    conf_path.write_text(fast_conf())
    rig_services: list = []

    def start_rig_services() -> None:
        rig_services[:] = [
            serve(SamdService, make_settings(SamdSettings, port=emu.url, hold_overrides={"stir": 0.004}, retries=2,
                                            timeout_margin_s=0.1, **FAST)),
            serve(CalibrationService, make_settings(CalibrationSettings, data_dir=tmp_path / "calibration",
                                                   seed_example=True)),
            serve(SchedulerService, make_settings(SchedulerSettings, conf_path=conf_path, transact_timeout_s=5.0)),
        ]

    def stop_rig_services() -> None:
        """The bridge, calibration-store and scheduler go away (the emulator's cultures keep growing)."""
        for service in reversed(rig_services):
            service.stop()

    start_rig_services()
    data_dir = tmp_path / "experiment"

    def start_experiment(process: bool = False):
        if not process:
            return serve(ExperimentService, make_settings(ExperimentSettings, data_dir=data_dir,
                                                         time_scale=time_scale, persist_interval_s=1.0))
        return ExperimentProcess(make_settings, data_dir, time_scale)
    start_experiment.data_dir = data_dir
    start_experiment.stop_rig_services = stop_rig_services
    start_experiment.start_rig_services = start_rig_services
    return start_experiment


class ExperimentProcess:
    """The experiment service as its own process (python -m benchbus_experiment), for kill -9."""

    def __init__(self, make_settings, data_dir: Path, time_scale: float = TIME_SCALE):
        settings = make_settings(ExperimentSettings, data_dir=data_dir)
        self.env = service_env(settings.broker, settings.device, {
            "BENCHBUS_EXPERIMENT_DATA_DIR": str(data_dir),
            "BENCHBUS_EXPERIMENT_TIME_SCALE": str(time_scale),
            "BENCHBUS_EXPERIMENT_PERSIST_INTERVAL_S": "1.0",
            "BENCHBUS_LOG_LEVEL": "warning",
        })
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "benchbus_experiment"],
                                        env=self.env)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def definition(name: str, groups: list[dict], **extra) -> dict:
    return {"name": name, "groups": groups, **extra}


def turbidostat_group(vials, lower=0.2, upper=0.4, **extra) -> dict:
    # One OD per decision: a broadcast every 2.4 emulated minutes spans more than the DPU's 6 values at its 20 s
    # broadcasts (2 min), so the same time window is one value here.
    control = {"mode": "turbidostat", "lower_od": lower, "upper_od": upper, "od_values_to_average": 1, **extra}
    return {"name": "turbido", "vials": list(vials), "control": control, "temp_c": 30.0, "stir": 8}


def chemostat_group(vials, rate=0.3) -> dict:
    control = {"mode": "chemostat", "dilution_rate_per_h": rate, "od_values_to_average": 1}
    return {"name": "chemo", "vials": list(vials), "control": control, "temp_c": 30.0, "stir": 8}


def growth_group(vials) -> dict:
    return {"name": "growth", "vials": list(vials), "control": {"mode": "growth_curve"}, "temp_c": 30.0, "stir": 8}
