"""The Pi's systemd units: `systemd-analyze verify` on every one, and the properties the deployment promises."""
import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "buildroot-overlay/etc/systemd/system"
VENV_BIN = Path(__file__).resolve().parents[2] / ".venv/bin"
OWNED_DEVICES = {"samd-bridge": "dialout", "smoothie-bridge": "dialout", "gpio-service": "gpio"}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


def service_units() -> list[Path]:
    return sorted(p for p in UNITS.glob("benchbus-*.service") if p.name != "benchbus-broker-credentials.service")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed "
                    "(./dev installs Debian's systemd, listed in tests/debian-packages.txt)")
def test_systemd_analyze_verifies_every_unit(tmp_path):
    # The units name /usr/bin/benchbus-*; here those are the console scripts of the development venv.
    for path in UNITS.iterdir():
        text = path.read_text().replace("/usr/bin/", f"{VENV_BIN}/").replace(
            "/usr/lib/benchbus/", f"{REPO}/buildroot-overlay/usr/lib/benchbus/")
        (tmp_path / path.name).write_text(text)
    run = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                         capture_output=True, text=True, timeout=120)
    complaints = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 0 and complaints == [], "\n".join(complaints)


def test_one_unit_per_service_with_the_promised_properties(services):
    assert {p.name.removeprefix("benchbus-").removesuffix(".service") for p in service_units()} == set(services)
    target = unit("benchbus.target")["Unit"]["Wants"]
    for path in service_units():
        name = path.name.removesuffix(".service").removeprefix("benchbus-")
        section = unit(path.name)["Service"]
        assert section["Type"] == "notify"
        assert int(section["WatchdogSec"]) > 0
        assert section["Restart"] == "on-failure"
        assert section["User"].startswith("benchbus-")
        assert section["ProtectSystem"] == "strict"
        assert Path(section["ExecStart"].split()[0]).name in services[name]["scripts"]
        assert "mosquitto.service" in unit(path.name)["Unit"]["After"]
        assert "mosquitto.service" in unit(path.name)["Unit"]["Wants"]
        assert path.name in target
        if name in OWNED_DEVICES:
            assert section["DevicePolicy"] == "closed" and OWNED_DEVICES[name] in section["SupplementaryGroups"]
        elif name != "update-agent":
            assert section.get("PrivateDevices") == "yes", f"{name} must not reach any device"


def test_every_unit_user_is_made_by_sysusers():
    """A unit whose User= no sysusers.d line makes dies with 217/USER at boot (the real boot found two)."""
    sysusers = REPO / "buildroot-overlay/usr/lib/sysusers.d/benchbus.conf"
    made = {line.split()[1] for line in sysusers.read_text().splitlines() if line.startswith("u ")}
    wanted = {line.split("=", 1)[1].strip() for unit in UNITS.glob("benchbus-*.service")
              for line in unit.read_text().splitlines() if line.startswith("User=")}
    assert wanted and wanted <= made, f"no sysusers.d line for {sorted(wanted - made)}"
