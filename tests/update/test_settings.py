"""Bad settings stop the agent at start, naming the field."""
import subprocess
import sys

from benchbus.settings import load_settings
from benchbus.yamlfile import FileError
from benchbus_update.settings import UpdateSettings


def test_signatures_required_without_a_key_is_refused(tmp_path):
    config = tmp_path / "update.yaml"
    config.write_text("signature_required: true\n")
    try:
        load_settings(UpdateSettings, "update", config, environ={})
    except FileError as error:
        assert "public_key_file" in str(error)
    else:
        raise AssertionError("settings without a signing key were accepted")


def test_the_command_refuses_to_start_with_bad_settings(tmp_path):
    config = tmp_path / "update.yaml"
    config.write_text("max_upload_bytes: -5\npublic_key_file: /nonexistent.pem\n")
    out = subprocess.run([sys.executable, "-m", "benchbus_update.service", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "max_upload_bytes" in out.stderr
