"""The Pi's units booted under a real systemd: a Debian root made by debootstrap, booted with `systemd-nspawn -b`.

What the test does, in the order a Pi goes through it:

1. A minimal Debian root (debootstrap --variant=minbase with systemd, dbus, Mosquitto, Python) is built once and
   kept in ~/.cache/benchbus/debian-root/<hash of suite and package list>. A second layer adds the venv
   /opt/benchbus with every dependency the services' pyproject.toml files declare (kept under the hash of those
   files); each run copies that layer and installs this checkout's packages into it (no dependencies: seconds).
2. The install steps of docs/operating.md: buildroot-overlay/etc and usr laid over the root, Debian's persistence
   lines dropped from mosquitto.conf, /usr/bin/benchbus-* linked to the venv, the eVOLVER confs and the dashboard
   in /usr/share/benchbus, a signing key, `systemctl enable benchbus.target`. The users come from
   sysusers.d at boot, the broker passwords from benchbus-broker-credentials.service at the first boot.
3. Test-only additions (nothing of this is in the overlay): the SAMD21 and Smoothieboard emulators as two units
   inside the container on TCP ports of its private loopback, and drop-ins pointing the bridges at them, the
   gpio-service at its simulated chip and the update-agent at file-backed slots.
4. The root boots in the background (`--private-network`: the container's Mosquitto on 1883 meets no other
   broker); commands run inside it through nsenter into the container's PID 1, because this machine's PID 1 is
   no systemd (no machined for `systemctl -M`).

Checked: every benchbus service active (Type=notify: active means READY=1 arrived) with no restart, as its own
user; `benchbus status` through the first-boot client password and the ACL; the dashboard served from its
installed folder; an SSH key added over the bus opens root's login on the container's sshd; the credentials unit
ran once; a SIGSTOPped service is killed by the watchdog and started again (NRestarts, a new MainPID, "Watchdog
timeout" in its journal); a SIGKILLed one by Restart=; stopping the services is clean (no SIGKILL, no failure); a
second boot keeps the passwords and skips the credentials unit.

Time: the first run builds the root (debootstrap about 50-100 s, the venv 20-70 s, on a 2-core machine with a
fast mirror) and takes about 2-4 min in all; later runs 1-2.5 min (a loaded machine), 30 s of it WatchdogSec.
BENCHBUS_BOOT_TEST=0 turns it off. Without root the test skips, saying so; anything else that stops a boot
(nspawn refused, no cgroups, no mirror, a unit that never gets ready) fails with the reason, the units' states
and their journal.
"""
from __future__ import annotations

import configparser
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "buildroot-overlay"
UNITS = OVERLAY / "etc/systemd/system"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "benchbus"
SUITE = "bookworm"
# openssh-server: the update-agent's SSH keys are for the Pi's sshd (checked with a real login)
DEBIAN_PACKAGES = ["systemd", "systemd-sysv", "dbus", "mosquitto", "python3", "python3-venv", "openssh-server"]
VENV = "/opt/benchbus"  # docs/operating.md installs there
CREDENTIALS = "benchbus-broker-credentials.service"
ADMIN_TOKEN = "boot-test-admin-token"  # the update-agent's admin_token, set by the test's drop-in only
SAMD_PORT, SMOOTHIE_PORT = 7101, 7102  # on the container's own loopback (private network)
BOOT_TIMEOUT_S = 180.0
READY_TIMEOUT_S = 180.0  # under a loaded 2-core CI machine; awaited, never slept
RESTART_MARGIN_S = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(os.environ.get("BENCHBUS_BOOT_TEST") == "0",
                       reason="BENCHBUS_BOOT_TEST=0 turned off booting the units in a Debian container"),
]


def benchbus_services() -> list[str]:
    return sorted(p.name for p in UNITS.glob("benchbus-*.service") if p.name != CREDENTIALS)


def unit_segment(unit: str) -> str:
    """The bus segment of a unit: the --config file's name (/etc/benchbus/<segment>.yaml)."""
    text = (UNITS / unit).read_text()
    match = re.search(r"--config /etc/benchbus/([a-z-]+)\.yaml", text)
    assert match, f"{unit} names no /etc/benchbus/<segment>.yaml"
    return match.group(1)


def unit_seconds(unit: str, key: str) -> float:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / unit)
    return float(parser["Service"][key])


def run(argv: list[str], timeout: float = 900, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
    return done


def await_condition(what: str, check: Callable[[], T], timeout: float, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# --- the Debian root ------------------------------------------------------------------------------------------

def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (BENCHBUS_DEBIAN_MIRROR overrides): no host is written here."""
    if os.environ.get("BENCHBUS_DEBIAN_MIRROR"):
        return os.environ["BENCHBUS_DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue
        for match in re.finditer(r"(?m)^(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)(\S+/debian)/?\s", path.read_text()):
            return match.group(1)
    pytest.fail("no Debian mirror in this machine's apt sources to debootstrap from: set BENCHBUS_DEBIAN_MIRROR")


def cached(key_text: str, name: str, build: Callable[[Path], None]) -> Path:
    """A folder under the cache named by a hash of what made it; built into a temporary name and renamed, so an
    interrupted build is never taken for a finished one."""
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    target = CACHE / "debian-root" / f"{name}-{key}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run building the same folder: wait for it, then take its result
        if not (target / ".benchbus-complete").exists():
            build_cached(target, build)
    return target


def build_cached(target: Path, build: Callable[[Path], None]) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    build(partial)
    (partial / ".benchbus-complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")
    partial.rename(target)
    print(f"built {target} in {time.monotonic() - started:.0f} s", file=sys.stderr)


def base_root() -> Path:
    def debootstrap(into: Path) -> None:
        run(["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}", SUITE, str(into),
             debian_mirror()], timeout=1800)
    return cached(f"{SUITE}\n{sorted(DEBIAN_PACKAGES)}\n", "base", debootstrap)


def package_folders() -> list[Path]:
    """bus-schemas, the runtime, shared-data, and every package folder under services/ (each unit's service, and
    the libraries units depend on, such as benchbus_ot2 for the protocol-runner)."""
    services = [p.parent for p in sorted(REPO.glob("services/*/pyproject.toml")) if p.parent.name != "common"]
    shared = [REPO / "shared-data"] if (REPO / "shared-data/pyproject.toml").exists() else []
    return [REPO / "bus-schemas", REPO / "services/common", *shared, *services]


def nspawn_run(root: Path, argv: list[str], timeout: float = 1200) -> None:
    """A command inside the root (not booted), with the host's network for PyPI, the host's certificate
    authorities (a network may inspect TLS with its own) and proxy settings, and a shared pip cache."""
    pip_cache = CACHE / "pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    options = [f"--bind={pip_cache}:/root/.cache/pip"]
    host_cas = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_cas.exists():
        options += [f"--bind-ro={host_cas}:/run/host-ca-certificates.crt",
                    "--setenv=PIP_CERT=/run/host-ca-certificates.crt"]
    options += [f"--setenv={name}={value}" for name, value in os.environ.items()
                if name.lower() in ("http_proxy", "https_proxy", "no_proxy")]
    run(["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", str(root), "--pipe", *options, *argv],
        timeout=timeout)


def copy_sources(root: Path) -> list[str]:
    """This checkout's packages into /usr/src/benchbus of the root; returns their paths there."""
    ignore = shutil.ignore_patterns("node_modules", "__pycache__", "*.egg-info", "build", ".venv")
    inside = []
    for folder in package_folders():
        relative = folder.relative_to(REPO)
        shutil.copytree(folder, root / "usr/src/benchbus" / relative, ignore=ignore, dirs_exist_ok=True)
        inside.append(f"/usr/src/benchbus/{relative}")
    return inside


def root_with_venv() -> Path:
    """The base root plus /opt/benchbus with the dependencies of this checkout's packages (keyed by their
    pyproject.toml files), installed as docs/operating.md says."""
    base = base_root()
    key = base.name + "".join((folder / "pyproject.toml").read_text() for folder in package_folders())

    def install(into: Path) -> None:
        run(["cp", "-a", "--reflink=auto", str(base), str(into)])
        (into / ".benchbus-complete").unlink()
        packages = copy_sources(into)
        nspawn_run(into, ["/usr/bin/python3", "-m", "venv", VENV])
        nspawn_run(into, [f"{VENV}/bin/pip", "install", "-q", "setuptools>=68", *packages])
        shutil.rmtree(into / "usr/src/benchbus")
    return cached(key, "venv", install)


# --- what a Pi's install does, and what only the test adds ----------------------------------------------------

def install_benchbus(root: Path) -> None:
    # debootstrap writes no /etc/hosts (the installer does; Raspberry Pi OS ships one): without it `localhost`,
    # the CLI's default broker host, does not resolve
    hosts = root / "etc/hosts"
    if not hosts.exists():
        hosts.write_text("127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n")
    packages = copy_sources(root)
    nspawn_run(root, [f"{VENV}/bin/pip", "install", "-q", "--no-deps", "--force-reinstall",
                      "--no-build-isolation", *packages])
    shutil.copytree(OVERLAY / "etc", root / "etc", dirs_exist_ok=True, symlinks=True)
    shutil.copytree(OVERLAY / "usr", root / "usr", dirs_exist_ok=True, symlinks=True)
    mosquitto_conf = root / "etc/mosquitto/mosquitto.conf"  # docs/operating.md: drop Debian's persistence lines
    mosquitto_conf.write_text("".join(line for line in mosquitto_conf.read_text().splitlines(keepends=True)
                                      if not line.startswith("persistence")))
    for script in sorted((root / VENV.lstrip("/") / "bin").glob("benchbus*")):
        link = root / "usr/bin" / script.name
        link.unlink(missing_ok=True)
        link.symlink_to(f"{VENV}/bin/{script.name}")
    shutil.copytree(REPO / "shared-data/evolver", root / "usr/share/benchbus/evolver", dirs_exist_ok=True)
    dashboard = REPO / "services/websocket-gateway/dashboard"
    shutil.copytree(dashboard / "public", root / "usr/share/benchbus/dashboard", dirs_exist_ok=True)
    uplot = root / "usr/share/benchbus/dashboard/vendor/uplot"
    uplot.mkdir(parents=True, exist_ok=True)
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):  # ./dev's npm ci put them there
        shutil.copy(dashboard / "node_modules/uplot/dist" / name, uplot)
    run([sys.executable, "-c", "import sys; from pathlib import Path; from benchbus_update.tool import "
         "generate_key_pair; generate_key_pair(Path(sys.argv[1]))", str(root / "tmp")])
    shutil.move(root / "tmp/signing-key.pub.pem", root / "etc/benchbus/update-signing-key.pub.pem")
    (root / "tmp/signing-key.pem").unlink()
    run(["systemctl", f"--root={root}", "enable", "benchbus.target"])


EMULATOR_UNIT = """[Unit]
Description=benchbus test only: the {what} emulator on 127.0.0.1:{port} of the container
Before={bridge}

[Service]
ExecStart={venv}/bin/{script} --tcp {port}
# Started means listening: the bridge opens the port at once.
ExecStartPost={venv}/bin/python /usr/local/lib/benchbus-test/await-port.py {port}
DynamicUser=yes
"""


AWAIT_PORT = """import socket, sys, time
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
"""


def configure_emulated_hardware(root: Path) -> None:
    system = root / "etc/systemd/system"
    (root / "usr/local/lib/benchbus-test").mkdir(parents=True, exist_ok=True)
    (root / "usr/local/lib/benchbus-test/await-port.py").write_text(AWAIT_PORT)
    drop_ins = {
        "benchbus-samd-bridge.service": [f"BENCHBUS_SAMD_PORT=socket://127.0.0.1:{SAMD_PORT}"],
        "benchbus-smoothie-bridge.service": [f"BENCHBUS_SMOOTHIE_PORT=socket://127.0.0.1:{SMOOTHIE_PORT}",
                                             "BENCHBUS_SMOOTHIE_HALT_VIA=both"],
        "benchbus-gpio-service.service": ["BENCHBUS_GPIO_BACKEND=sim"],
        "benchbus-update-agent.service": ["BENCHBUS_UPDATE_SLOT_DIR=/var/lib/benchbus/update/emulated-slots",
                                          "BENCHBUS_UPDATE_RESTART_COMMAND=null",
                                          f"BENCHBUS_UPDATE_ADMIN_TOKEN={ADMIN_TOKEN}",
                                          "BENCHBUS_UPDATE_SERIAL_FILE=/var/lib/benchbus/update/serial",
                                          "BENCHBUS_UPDATE_VERSION_FILE=/var/lib/benchbus/update/VERSION.json"],
    }
    emulators = {"benchbus-samd-bridge.service": ("SAMD21", "benchbus-samd-emulator", SAMD_PORT),
                 "benchbus-smoothie-bridge.service": ("Smoothieboard", "benchbus-smoothie-emulator", SMOOTHIE_PORT)}
    for unit, environment in drop_ins.items():
        folder = system / f"{unit}.d"
        folder.mkdir(exist_ok=True)
        text = "[Service]\n" + "".join(f"Environment={assignment}\n" for assignment in environment)
        if unit in emulators:
            what, script, port = emulators[unit]
            emulator = f"benchbus-test-{script.removeprefix('benchbus-')}.service"
            (system / emulator).write_text(EMULATOR_UNIT.format(what=what, port=port, bridge=unit, venv=VENV,
                                                                script=script))
            text = f"[Unit]\nWants={emulator}\nAfter={emulator}\n\n" + text
        (folder / "test-emulated-hardware.conf").write_text(text)


# --- the booted container -------------------------------------------------------------------------------------

class Container:
    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.name = f"benchbus-boot-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def boot(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["systemd-nspawn", "-q", "-b", "-D", str(self.root), f"--machine={self.name}", "--private-network",
                 "--register=no", "--keep-unit"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.leader = await_condition("the container's systemd started", self._find_leader, BOOT_TIMEOUT_S)
        state = await_condition("systemd inside the container finished booting", self._booted, BOOT_TIMEOUT_S)
        print(f"{self.name}: system {state}", file=sys.stderr)

    def _find_leader(self) -> int:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited with {self.process.returncode} before the container ran "
                                 f"systemd:\n{self.console()}")
        for child in Path("/proc").glob("[0-9]*"):
            try:
                status = (child / "status").read_text()
            except OSError:
                continue
            ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
            nspid = re.search(r"^NSpid:.*\s1$", status, re.M)
            if ppid and int(ppid.group(1)) == self.process.pid and nspid:
                return int(child.name)
        return 0

    def _booted(self) -> str:
        state = self.shell("systemctl is-system-running", check=False).stdout.strip()
        return state if state in ("running", "degraded") else ""

    def shell(self, command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command inside the container (all its namespaces, the container's PID 1 as the target)."""
        argv = ["nsenter", f"--target={self.leader}", "--all", "--", "/bin/sh", "-c", command]
        return run(argv, timeout=timeout) if check else subprocess.run(argv, capture_output=True, text=True,
                                                                       timeout=timeout)

    def properties(self, unit: str, *names: str) -> dict[str, str]:
        out = self.shell(f"systemctl show {unit} --property={','.join(names)}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def diagnosis(self, units: list[str]) -> str:
        listed = self.shell("systemctl list-units --all --no-pager 'benchbus*' mosquitto.service", check=False)
        journal = self.shell("journalctl --no-pager -n 40 " + " ".join(f"-u {u}" for u in units), check=False)
        return f"{listed.stdout}\n{journal.stdout}"

    def poweroff(self) -> None:
        assert self.process is not None
        self.shell("systemctl poweroff", check=False)
        try:
            self.process.wait(timeout=BOOT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)  # our own nspawn only: it takes the container with it
            self.process.wait(timeout=30)
            console = self.console()
            raise AssertionError(f"{self.name} did not power off in {BOOT_TIMEOUT_S:.0f} s:\n{console}") from None


def await_services_ready(container: Container) -> None:
    services = [*benchbus_services(), "mosquitto.service"]

    def all_running() -> bool:
        return all(container.properties(u, "ActiveState")["ActiveState"] == "active" for u in services)

    try:
        await_condition("every benchbus service active (READY=1 sent)", all_running, READY_TIMEOUT_S, interval=1)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{container.diagnosis(services)}") from None


def credentials(root: Path) -> dict[str, str]:
    folder = root / "var/lib/benchbus/credentials"
    return {path.name: path.read_text() for path in sorted(folder.glob("*.env"))}


def every_service_reaches_ready_without_a_restart(booted: Container) -> None:
    for unit in benchbus_services():
        state = booted.properties(unit, "ActiveState", "SubState", "Type", "NRestarts", "User")
        assert state["Type"] == "notify" and state["ActiveState"] == "active" and state["SubState"] == "running", \
            f"{unit}: {state}"
        assert state["NRestarts"] == "0", f"{unit} needed restarts to come up: {state}\n{booted.diagnosis([unit])}"
        # sysusers.d made its user at boot, and the service runs as it
        pid = booted.properties(unit, "MainPID")["MainPID"]
        owner = booted.shell(f"stat -c %U /proc/{pid}").stdout.strip()  # minbase has no ps
        assert owner == state["User"], f"{unit} runs as {owner!r}, not {state['User']!r}"


def the_cli_sees_every_service_ready_through_the_authenticated_broker(booted: Container) -> None:
    # docs/operating.md's check on an instrument: the client user's password from the first boot, the broker's ACL
    status = booted.shell("set -a; . /var/lib/benchbus/credentials/client.env; benchbus status", check=False)
    assert status.returncode == 0, f"benchbus status exited with {status.returncode}:\n{status.stdout}{status.stderr}"
    for unit in benchbus_services():
        segment = unit_segment(unit)
        assert re.search(rf"(?m)^\s*{segment}\b.*ready", status.stdout), f"{segment} not ready:\n{status.stdout}"


def the_gateway_serves_the_installed_dashboard(booted: Container) -> None:
    fetch = ("import sys, urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8081' + sys.argv[1], "
             "timeout=10).read().decode())")
    page = booted.shell(f'{VENV}/bin/python -c "{fetch}" /').stdout
    assert "vendor/uplot/uPlot.iife.min.js" in page, page[:2000]
    chart_library = booted.shell(f'{VENV}/bin/python -c "{fetch}" /vendor/uplot/uPlot.iife.min.js').stdout
    assert "uPlot" in chart_library


def a_key_added_through_the_update_agent_opens_an_ssh_login(booted: Container, tmp_path: Path) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "boot-test", "-f", str(tmp_path / "key")])
    request = json.dumps({"key": (tmp_path / "key.pub").read_text().strip(), "admin_token": ADMIN_TOKEN})
    added = booted.shell("set -a; . /var/lib/benchbus/credentials/admin.env; "
                         f"benchbus call --timeout 60 update add_ssh_key '{request}'", check=False)
    assert added.returncode == 0, f"{added.stdout}{added.stderr}\n{booted.diagnosis(['benchbus-update-agent.service'])}"
    # this machine's ssh client, in the container's network namespace, against the container's own sshd
    login = subprocess.run(["nsenter", f"--target={booted.leader}", "--net", "--", "ssh", "-i", str(tmp_path / "key"),
                            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                            "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "root@127.0.0.1",
                            "cat /etc/hostname"], capture_output=True, text=True, timeout=60)
    sshd = booted.shell("journalctl --no-pager -n 20 -u ssh.service", check=False).stdout
    assert login.returncode == 0, f"ssh with the added key: {login.returncode} {login.stderr}\n{sshd}"


def the_credentials_unit_ran_once_and_made_a_password_per_user(booted: Container) -> None:
    state = booted.properties(CREDENTIALS, "ActiveState", "Result", "ExecMainStatus", "ConditionResult")
    assert state == {"ActiveState": "active", "Result": "success", "ExecMainStatus": "0", "ConditionResult": "yes"}
    assert (booted.root / "var/lib/benchbus/credentials/.done").exists()
    users = (OVERLAY / "usr/lib/benchbus/broker-users").read_text().split()
    made = credentials(booted.root)
    assert sorted(made) == sorted(f"{user.removeprefix('benchbus-')}.env" for user in users)
    passwd = (booted.root / "etc/mosquitto/benchbus.passwd").read_text()
    assert sorted(line.split(":")[0] for line in passwd.splitlines()) == sorted(users)


def restarted(container: Container, unit: str, old_pid: str, old_restarts: int) -> bool:
    state = container.properties(unit, "MainPID", "NRestarts", "ActiveState")
    return (int(state["NRestarts"]) > old_restarts and state["MainPID"] not in ("0", old_pid)
            and state["ActiveState"] == "active")


def a_stopped_service_is_restarted_by_the_watchdog(booted: Container) -> None:
    unit = "benchbus-calibration-store.service"
    watchdog_s = unit_seconds(unit, "WatchdogSec")
    before = booted.properties(unit, "MainPID", "NRestarts")
    booted.shell(f"kill -STOP {before['MainPID']}")
    started = time.monotonic()
    # the watchdog fires after WatchdogSec; then the abort signal, RestartSec, and READY=1 of the new process
    bound = watchdog_s + unit_seconds(unit, "TimeoutStopSec") + unit_seconds(unit, "RestartSec") + RESTART_MARGIN_S
    await_condition(f"{unit} restarted after SIGSTOP", lambda: restarted(booted, unit, before["MainPID"],
                                                                         int(before["NRestarts"])), bound)
    took = time.monotonic() - started
    journal = booted.shell(f"journalctl --no-pager -u {unit}").stdout
    assert "Watchdog timeout" in journal and "Failed with result 'watchdog'" in journal, journal[-3000:]
    # the last WATCHDOG=1 came at most half a WatchdogSec before the SIGSTOP (the runtime pings at half of it)
    assert took >= watchdog_s / 2 - 1, f"restarted after {took:.1f} s: too soon for WatchdogSec={watchdog_s:.0f}"
    print(f"watchdog restart of a SIGSTOPped {unit} took {took:.1f} s (WatchdogSec={watchdog_s:.0f})",
          file=sys.stderr)


def a_killed_service_is_restarted_by_restart_on_failure(booted: Container) -> None:
    unit = "benchbus-samd-bridge.service"
    before = booted.properties(unit, "MainPID", "NRestarts")
    booted.shell(f"kill -KILL {before['MainPID']}")
    started = time.monotonic()
    await_condition(f"{unit} restarted after SIGKILL", lambda: restarted(booted, unit, before["MainPID"],
                                                                         int(before["NRestarts"])),
                    unit_seconds(unit, "RestartSec") + RESTART_MARGIN_S)
    print(f"Restart= of a SIGKILLed {unit} took {time.monotonic() - started:.1f} s", file=sys.stderr)


def stopping_the_services_stops_every_one_cleanly(booted: Container) -> None:
    # docs/operating.md's stop before a backup: returns when every service has exited (`systemctl stop
    # benchbus.target` alone returns while they are still stopping: the target is ordered after them)
    started = time.monotonic()
    booted.shell("systemctl stop 'benchbus-*.service'", timeout=120)
    took = time.monotonic() - started
    for unit in benchbus_services():
        state = booted.properties(unit, "ActiveState", "Result")
        # Result=timeout would mean SIGKILL after TimeoutStopSec; anything but success a crash on SIGTERM
        assert state == {"ActiveState": "inactive", "Result": "success"}, f"{unit}: {state}\n{booted.diagnosis([unit])}"
    print(f"systemctl stop 'benchbus-*.service' took {took:.1f} s", file=sys.stderr)
    booted.shell("systemctl start benchbus.target", timeout=120)
    await_services_ready(booted)


def a_second_boot_keeps_the_passwords_and_skips_the_credentials_unit(booted: Container) -> None:
    first = credentials(booted.root)
    passwd = (booted.root / "etc/mosquitto/benchbus.passwd").read_text()
    booted.poweroff()
    booted.boot()
    await_services_ready(booted)
    state = booted.properties(CREDENTIALS, "ConditionResult", "ExecMainStartTimestampMonotonic")
    assert state == {"ConditionResult": "no", "ExecMainStartTimestampMonotonic": "0"}, state
    assert credentials(booted.root) == first
    assert (booted.root / "etc/mosquitto/benchbus.passwd").read_text() == passwd


@contextmanager
def booted_container(work: Path) -> Iterator[Container]:
    if os.geteuid() != 0:
        pytest.skip("booting a container needs root (systemd-nspawn); this test runs as uid "
                    f"{os.geteuid()}")
    missing = [tool for tool in ("systemd-nspawn", "debootstrap", "nsenter", "ssh") if shutil.which(tool) is None]
    assert not missing, (f"{missing} not installed: ./dev installs systemd-container, debootstrap and "
                         "openssh-client (tests/debian-packages.txt, services/update-agent/debian-packages.txt)")
    root = work / "root"
    started = time.monotonic()
    run(["cp", "-a", "--reflink=auto", str(root_with_venv()), str(root)])
    install_benchbus(root)
    configure_emulated_hardware(root)
    print(f"root prepared in {time.monotonic() - started:.0f} s", file=sys.stderr)
    container = Container(root, work / "console.log")
    started = time.monotonic()
    try:
        container.boot()
        await_services_ready(container)
        print(f"booted and every service ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        yield container
    finally:
        if container.process is not None and container.process.poll() is None:
            container.poweroff()
        shutil.rmtree(root, ignore_errors=True)


def test_the_units_boot_under_a_real_systemd(tmp_path):
    """One container for every check, in this order (the last one reboots it): pytest-xdist would send separate
    tests of this module to different workers, each booting a container of its own."""
    with booted_container(tmp_path) as container:
        every_service_reaches_ready_without_a_restart(container)
        the_cli_sees_every_service_ready_through_the_authenticated_broker(container)
        the_gateway_serves_the_installed_dashboard(container)
        a_key_added_through_the_update_agent_opens_an_ssh_login(container, tmp_path)
        the_credentials_unit_ran_once_and_made_a_password_per_user(container)
        a_stopped_service_is_restarted_by_the_watchdog(container)
        a_killed_service_is_restarted_by_restart_on_failure(container)
        stopping_the_services_stops_every_one_cleanly(container)
        a_second_boot_keeps_the_passwords_and_skips_the_credentials_unit(container)
