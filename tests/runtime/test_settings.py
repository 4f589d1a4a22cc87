"""Settings: YAML file, environment overrides, and refusals that name file, line and field."""
import subprocess
import sys

import pytest

from benchbus.demo import DemoSettings
from benchbus.settings import load_settings
from benchbus.yamlfile import FileError


def test_file_then_environment(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("device: rig-7\nbroker:\n  host: broker.lab\n  port: 1884\nstart_value: 3\n")
    settings = load_settings(DemoSettings, "demo", path, environ={"BENCHBUS_BROKER_PORT": "1999",
                                                                  "BENCHBUS_DEMO_START_VALUE": "11"})
    assert settings.device == "rig-7"
    assert settings.broker.host == "broker.lab"
    assert settings.broker.port == 1999
    assert settings.start_value == 11


def test_service_specific_variable_wins(tmp_path):
    settings = load_settings(DemoSettings, "demo", None, environ={"BENCHBUS_LOG_LEVEL": "debug",
                                                                 "BENCHBUS_DEMO_LOG_LEVEL": "warning"})
    assert settings.log_level == "warning"


def test_bad_value_names_file_line_and_field(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("device: rig-7\nbroker:\n  host: broker.lab\n  port: seventy\n")
    with pytest.raises(FileError) as caught:
        load_settings(DemoSettings, "demo", path, environ={})
    text = str(caught.value)
    assert f"{path}:4: broker.port:" in text


def test_unknown_key_is_refused(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("device: rig-7\nbrokr:\n  host: x\n")
    with pytest.raises(FileError) as caught:
        load_settings(DemoSettings, "demo", path, environ={})
    assert f"{path}:2: brokr:" in str(caught.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(FileError) as caught:
        load_settings(DemoSettings, "demo", None, environ={"BENCHBUS_BROKER_PORT": "99999"})
    assert "BENCHBUS_BROKER_PORT" in str(caught.value) and "broker.port" in str(caught.value)


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("device: rig-7\nbroker: [unclosed\n")
    with pytest.raises(FileError) as caught:
        load_settings(DemoSettings, "demo", path, environ={})
    assert "not valid YAML" in str(caught.value)


def test_service_refuses_to_start_without_traceback(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("shutdown_grace_s: -1\n")
    run = subprocess.run([sys.executable, "-m", "benchbus.demo", "--config", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 2
    assert f"{path}:1: shutdown_grace_s:" in run.stderr
    assert "Traceback" not in run.stderr


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(FileError) as caught:
        load_settings(DemoSettings, "demo", tmp_path / "absent.yaml", environ={})
    assert "cannot read" in str(caught.value)
