"""The settings files laid in /etc/benchbus/ on the Pi are valid for the services that read them."""
from pathlib import Path

import pytest

from benchbus.settings import load_settings

DEFAULTS = Path(__file__).resolve().parents[2] / "buildroot-overlay/etc/benchbus"
MODELS = {
    "samd": "benchbus_samd.settings:SamdSettings",
    "smoothie": "benchbus_smoothie.settings:SmoothieSettings",
    "gpio": "benchbus_gpio.settings:GpioSettings",
    "calibration": "benchbus_calibration.settings:CalibrationSettings",
    "scheduler": "benchbus_scheduler.settings:SchedulerSettings",
    "update": "benchbus_update.settings:UpdateSettings",
    "gateway": "benchbus_gateway.settings:GatewaySettings",
    "recorder": "benchbus_recorder.settings:RecorderSettings",
    "experiment": "benchbus_experiment.settings:ExperimentSettings",
    "runner": "benchbus_runner.settings:RunnerSettings",
}


def model(path: str):
    module, _, name = path.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def test_a_defaults_file_per_service():
    assert {p.stem for p in DEFAULTS.glob("*.yaml")} == set(MODELS)


@pytest.mark.parametrize("segment", sorted(MODELS))
def test_defaults_validate(segment):
    settings = load_settings(model(MODELS[segment]), segment, DEFAULTS / f"{segment}.yaml", environ={})
    assert settings.broker.host == "localhost"


def test_units_read_these_files():
    units = Path(__file__).resolve().parents[2] / "buildroot-overlay/etc/systemd/system"
    for segment in MODELS:
        assert any(f"--config /etc/benchbus/{segment}.yaml" in p.read_text() for p in units.glob("*.service")), segment
