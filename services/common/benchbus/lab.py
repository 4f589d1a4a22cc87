"""`benchbus lab ...`: a lab of many devices on one central broker (docs/lab.md).

    benchbus lab bridge-conf [--settings FILE] [--output FILE]   this device's fleet edge broker configuration
    benchbus lab access --lab lab.yaml --output-dir DIR           the central broker's ACL and password file
    benchbus lab up [--lab lab.yaml] [--port 1883] [--http-port 8080] [--database-url URL] [--tls-port 8883 ...]
                                                  the central side: Mosquitto (guarded by the lab file's ACL and
                                                  passwords), the recorder (every device), the gateway in lab mode
                                                  with the fleet page; Ctrl-C stops them all
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchbus_schemas import roles

from . import fleet, labaccess, yamlfile
from .errors import BusError
from .settings import CONFIG_DIR, BrokerSettings
from .snapshot import gateway_port, read_retained

LAB_ID = roles.LAB_ID  # the device id of the central services themselves (their $state lies under benchbus/lab/)
CENTRAL_SERVICES = ("recorder", "gateway")

CENTRAL_CONF = """\
# The lab's central broker, written by `benchbus lab up`. Devices reach it through their fleet edge brokers.
# It runs as the user who ran lab up (started as root, Mosquitto would switch to `mosquitto`, who cannot read the
# password file and data folder lab up made, mode 0600 and 0700).
user {user}
listener {port} {bind}
set_tcp_nodelay true
{access}
persistence true
persistence_location {data}/
autosave_interval 30
# per device bridge and per recorder session while it is away (QoS 1): the recorder's outage budget
max_queued_messages 200000
max_connections -1
log_dest stderr
log_type error
log_type warning
"""


TLS_LISTENER = """\
# Devices by TLS client certificate: signed by this CA, the certificate's CN is the device's username (its ACL).
listener {port} {bind}
cafile {cafile}
certfile {certfile}
keyfile {keyfile}
require_certificate true
use_identity_as_username true
"""


def central_conf(port: int, bind: str, data: Path, access_files: tuple[Path, Path],
                 tls: dict[str, object] | None = None) -> str:
    """`access_files`: (acl, password file) from labaccess. `tls`: port, cafile, certfile, keyfile."""
    acl, passwd = access_files
    access = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}"
    text = CENTRAL_CONF.format(port=port, bind=bind, access=access, data=data, user=getpass.getuser())
    return text + ("" if tls is None else TLS_LISTENER.format(bind=bind, **tls))


def _program(name: str) -> str:
    """A console script of this installation (beside the running Python), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"benchbus lab up: {name} is not installed (pip install the service's package)")
    return found


def _wait_ready(broker: BrokerSettings, timeout: float, processes: dict[str, subprocess.Popen[bytes]]) -> list[str]:
    """The central services not ready within `timeout` (empty when all are)."""
    deadline = time.monotonic() + timeout
    waiting = list(CENTRAL_SERVICES)
    while waiting and time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise SystemExit(f"benchbus lab up: {name} exited with {process.returncode} (its log is above)")
        try:
            retained = read_retained(broker, [f"benchbus/{LAB_ID}/+/$state"], timeout=1.0)
        except BusError:  # the broker is not listening yet
            retained = {}
        ready = {topic.split("/")[2] for topic, payload in retained.items() if _state_of(payload) == "ready"}
        waiting = [name for name in CENTRAL_SERVICES if name not in ready]
        if waiting:
            time.sleep(0.3)
    return waiting


def _state_of(payload: bytes) -> str | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data.get("state") if isinstance(data, dict) else None


def _credentials(username: str, passwords: dict[str, str]) -> dict[str, str]:
    return {"BENCHBUS_BROKER_USERNAME": username, "BENCHBUS_BROKER_PASSWORD": passwords[username]}


def cmd_up(args: argparse.Namespace) -> int:
    data = Path(args.data_dir).resolve()
    (data / "broker").mkdir(parents=True, exist_ok=True)
    conf = data / "mosquitto.conf"
    # the central services' own passwords: new at every start, known only to this process and the password file
    passwords = {roles.LAB_RECORDER_USERNAME: secrets.token_hex(16), roles.LAB_GATEWAY_USERNAME: secrets.token_hex(16)}
    try:
        access = labaccess.write_access(labaccess.load(args.lab), data / "access", passwords)
    except (yamlfile.FileError, ValueError) as exc:
        print(f"benchbus lab up: lab file: {exc}", file=sys.stderr)
        return 2
    if args.tls_port is not None and None in (args.cafile, args.certfile, args.keyfile):
        print("benchbus lab up: --tls-port needs --cafile, --certfile and --keyfile", file=sys.stderr)
        return 2
    tls = None if args.tls_port is None else {"port": args.tls_port, "cafile": args.cafile, "certfile": args.certfile,
                                              "keyfile": args.keyfile}
    conf.write_text(central_conf(args.port, args.bind, data / "broker", access, tls))
    database_url = args.database_url or os.environ.get("BENCHBUS_RECORDER_DATABASE_URL")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    broker = BrokerSettings(host="127.0.0.1", port=args.port, username=roles.LAB_GATEWAY_USERNAME,
                            password=passwords[roles.LAB_GATEWAY_USERNAME])
    common = {"BENCHBUS_BROKER_HOST": "127.0.0.1", "BENCHBUS_BROKER_PORT": str(args.port)}
    recorder_env = {**common, **_credentials(roles.LAB_RECORDER_USERNAME, passwords),
                    "BENCHBUS_RECORDER_DEVICE": LAB_ID, "BENCHBUS_RECORDER_ALL_DEVICES": "true",
                    "BENCHBUS_RECORDER_DATA_DIR": str(data / "recorder"), "BENCHBUS_RECORDER_HTTP_PORT": "0"}
    if database_url:
        recorder_env["BENCHBUS_RECORDER_DATABASE_URL"] = database_url
    gateway_env = {**common, **_credentials(roles.LAB_GATEWAY_USERNAME, passwords),
                   "BENCHBUS_GATEWAY_DEVICE": LAB_ID, "BENCHBUS_GATEWAY_LAB": "true",
                   "BENCHBUS_GATEWAY_PORT": str(args.http_port), "BENCHBUS_GATEWAY_HOST": args.bind,
                   "BENCHBUS_GATEWAY_DATA_DIR": str(data / "gateway")}
    try:
        processes["mosquitto"] = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)])
        processes["recorder"] = subprocess.Popen([_program("benchbus-recorder")], env={**os.environ, **recorder_env})
        processes["gateway"] = subprocess.Popen([_program("benchbus-websocket-gateway")],
                                                env={**os.environ, **gateway_env})
        waiting = _wait_ready(broker, args.timeout, processes)
        if waiting:
            print(f"benchbus lab up: not ready within {args.timeout:g} s: {', '.join(waiting)}", file=sys.stderr)
            return 1
        http_port = args.http_port or gateway_port(broker, LAB_ID)
        where = "PostgreSQL" if database_url and database_url.startswith("postgresql") else \
            f"SQLite in {data / 'recorder'} (--database-url postgresql+psycopg://... for PostgreSQL)"
        print(f"lab ready: central broker {args.bind}:{args.port}; recorder of every device into {where}; "
              f"fleet page http://{'localhost' if args.bind == '0.0.0.0' else args.bind}:{http_port}/fleet.html",
              flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop:
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"benchbus lab up: {name} exited with {process.returncode}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in reversed(processes.values()):
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_lab = sub.add_parser("lab", help="a lab: many devices on one central broker (up, bridge-conf)")
    lab_sub = p_lab.add_subparsers(dest="lab_verb", required=True, metavar="LAB_COMMAND")
    p_conf = lab_sub.add_parser("bridge-conf", help="print (or write) this device's fleet edge broker configuration")
    fleet.add_arguments(p_conf)
    p_conf.set_defaults(func=lambda args: fleet.bridge_conf_command(args.settings, args.output))
    p_up = lab_sub.add_parser("up", help="the central side: broker, recorder of every device, gateway with the fleet "
                              "page")
    p_up.add_argument("--port", type=int, default=1883, help="the central broker's port (default %(default)s)")
    p_up.add_argument("--bind", default="0.0.0.0", help="listen address of broker and gateway (default %(default)s)")
    p_up.add_argument("--http-port", type=int, default=8080, help="the gateway's port (default %(default)s; 0: the "
                      "gateway picks a free one, printed in the ready line)")
    p_up.add_argument("--data-dir", default=".benchbus-lab", help="broker, recorder and gateway data "
                      "(default %(default)s)")
    p_up.add_argument("--database-url", default=None, help="the recorder's PostgreSQL, e.g. postgresql+psycopg://"
                      "user:pw@host/db (default BENCHBUS_RECORDER_DATABASE_URL, else SQLite in the data dir)")
    p_up.add_argument("--lab", type=Path, default=CONFIG_DIR / "lab.yaml", help="the lab file (users, roles, "
                      "devices: labaccess.py); its ACL and password file guard the broker, which takes no anonymous "
                      "client (default %(default)s; it must exist)")
    p_up.add_argument("--tls-port", type=int, default=None, help="also a TLS listener for devices with client "
                      "certificates (CN = device id); needs --cafile, --certfile, --keyfile")
    p_up.add_argument("--cafile", type=Path, default=None, help="the CA that signs the devices' certificates")
    p_up.add_argument("--certfile", type=Path, default=None, help="the central broker's certificate")
    p_up.add_argument("--keyfile", type=Path, default=None)
    p_up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ready (default %(default)s)")
    p_up.set_defaults(func=cmd_up)
    p_access = lab_sub.add_parser("access", help="the central broker's ACL and password file from the lab file")
    labaccess.add_arguments(p_access)
    p_access.set_defaults(func=lambda args: labaccess.access_command(args.lab, args.output_dir))
