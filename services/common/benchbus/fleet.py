"""The device side of a lab: the fleet bridge's Mosquitto configuration, generated from /etc/benchbus/fleet.yaml.

    python -m benchbus.fleet bridge-conf [--settings FILE] [--output FILE]     (also `benchbus lab bridge-conf`)

Why a second, small Mosquitto (the "edge") and not a bridge stanza in the device's own broker: Mosquitto applies no
ACL to what arrives over a bridge (src/security.c returns success for every bridge context), and it does not check
that an arriving publish matches one of the bridge's `in` topics. A bridge inside the device's broker would let the
central side publish anything on the device: any command under any principal, any retained $state. The edge
broker holds both links instead: one to the central broker, one to the device's broker as the ordinary, ACL-checked
user `benchbus-fleet` (roles.py). So what comes down is judged by the device's own ACL: a request only under the
name of a lab user the device knows, within that user's role capped by FLEET_ROLE; replies go up only for those
names; nothing else is writable from the central side.

Up (edge -> central): this device's public topics ($state, $audit, state/#, event/#) and its lab users' replies.
Down (central -> edge -> device): `benchbus/<device>/+/cmd/+/+`; the device's ACL refuses what it does not allow.
Both links keep persistent sessions (`cleansession false`) at QoS 1, and the edge persists its queue to disk, so a
link or central outage loses nothing until the queue bound (`max_queued_messages`, `max_queued_bytes`) is reached;
past it Mosquitto drops the newest messages and logs it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchbus_schemas import roles, topics

from . import yamlfile
from .settings import CONFIG_DIR, load_settings

SEGMENT = "fleet"
PUBLIC_SUFFIXES = ("+/$state", "+/$audit", "+/state/#", "+/event/#")
# On the edge broker itself every device message is kept under this prefix (both links map it away again). Why: the
# edge also publishes its central link's notification ("0" once it sees the link drop) on its own broker; unprefixed,
# that local copy matched the `out` pattern +/state/#, waited in the queue, and reached the central broker after the
# fresh "1" of the next connection, leaving the retained link state "0" on a link that was up.
EDGE_PREFIX = "edge/"


class CentralBroker(BaseModel):
    """Where the lab's central broker is and how this device proves itself to it."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.:\[\]-]+$")
    port: int = Field(8883, ge=1, le=65535)
    username: str | None = Field(None, description="default: the device id (the central ACL pins it)")
    password: str | None = None
    cafile: Path | None = Field(None, description="CA that signed the central broker's certificate; TLS when set")
    certfile: Path | None = Field(None, description="this device's client certificate (TLS client auth)")
    keyfile: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)

    @model_validator(mode="after")
    def _credentials(self) -> CentralBroker:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile come together")
        if self.certfile is not None and self.cafile is None:
            raise ValueError("a client certificate needs cafile (TLS)")
        if self.certfile is None and self.password is None:
            raise ValueError("give a password or a client certificate (certfile, keyfile): the central broker "
                             "must know which device this is")
        return self


class LocalBroker(BaseModel):
    """The device's own broker, reached as the ACL-checked user benchbus-fleet."""

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = roles.FLEET_USERNAME  # None: the anonymous development broker
    password: str | None = None
    credentials_file: Path | None = Field(
        Path("/var/lib/benchbus/credentials/fleet.env"),
        description="BENCHBUS_BROKER_PASSWORD=... written at first boot (used when password is not set)")

    def resolved_password(self) -> str | None:
        if self.password is not None or self.username is None:
            return self.password
        if self.credentials_file is None or not self.credentials_file.is_file():
            raise ValueError(f"no password for {self.username}: set local.password or make "
                             f"{self.credentials_file} (make-broker-credentials does at first boot)")
        for line in self.credentials_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "BENCHBUS_BROKER_PASSWORD":
                return value.strip()
        raise ValueError(f"{self.credentials_file} has no BENCHBUS_BROKER_PASSWORD")


class FleetSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    central: CentralBroker
    local: LocalBroker = LocalBroker()
    edge_port: int = Field(18830, ge=1, le=65535, description="the edge broker's loopback listener (no user may "
                                                               "log in; Mosquitto needs one listener)")
    data_dir: Path = Path("/var/lib/benchbus/fleet-bridge")
    max_queued_messages: int = Field(
        100_000, ge=100, le=10_000_000,
        description="per link, while it is down: a rig sends ~10 messages a broadcast (20 s), so 100,000 is about "
                    "two days; a robot far less")
    max_queued_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024, description="per link, payload bytes")
    restart_timeout_s: tuple[float, float] = Field((1.0, 30.0), description="reconnect back-off: base, cap")

    @model_validator(mode="after")
    def _device_is_a_topic_level(self) -> FleetSettings:
        if not topics.valid_name(self.device):
            raise ValueError(f"device {self.device!r} is not a plain topic level")
        return self


def _quote_free(value: str, field: str) -> str:
    """Mosquitto's config has no quoting: a value with a line break would add settings of the caller's choosing."""
    if any(ch in value for ch in "\r\n\0") or value != value.strip():
        raise ValueError(f"{field}: no line breaks or surrounding spaces allowed")
    return value


def _link(name: str, host: str, port: int, clientid: str, keepalive_s: int, restart: tuple[float, float]) -> list[str]:
    return [f"connection {name}",
            f"address {_quote_free(host, 'host')}:{port}",
            "bridge_protocol_version mqttv50",
            f"remote_clientid {clientid}",
            "cleansession false",  # persistent sessions both ways: QoS 1 messages wait for the link
            "local_cleansession false",
            "try_private false",
            "start_type automatic",
            f"restart_timeout {restart[0]:g} {restart[1]:g}",
            f"keepalive_interval {keepalive_s}",
            "bridge_attempt_unsubscribe false"]


def link_topic(device: str) -> str:
    """Retained at the central broker: 1 while the device's fleet link is up, 0 once the central side lost it."""
    return topics.topic(device, SEGMENT, "state", "link")


def _central_link(s: FleetSettings) -> list[str]:
    c = s.central
    base = f"{topics.ROOT}/{s.device}"
    lines = _link("benchbus-central", c.host, c.port, f"benchbus-{s.device}", c.keepalive_s, s.restart_timeout_s)
    lines.append(f"remote_username {_quote_free(c.username or s.device, 'central.username')}")
    if c.password is not None:
        lines.append(f"remote_password {_quote_free(c.password, 'central.password')}")
    if c.cafile is not None:
        lines += [f"bridge_cafile {_quote_free(str(c.cafile), 'central.cafile')}", "bridge_insecure false"]
    if c.certfile is not None and c.keyfile is not None:
        lines += [f"bridge_certfile {_quote_free(str(c.certfile), 'central.certfile')}",
                  f"bridge_keyfile {_quote_free(str(c.keyfile), 'central.keyfile')}"]
    # The central side sees the link itself: retained 1 while up, 0 (the bridge's will) when it drops. A retained
    # state/ topic, so the central gateway and the fleet page follow it like any device state.
    lines += ["notifications true", "notifications_local_only false",
              f"notification_topic {link_topic(s.device)}"]
    lines += [_topic(f"{base}/{suffix}", "out") for suffix in PUBLIC_SUFFIXES]
    lines.append(_topic(f"{base}/{topics.CLIENTS}/#", "out"))  # replies; the device ACL lets only lab users' through
    lines.append(_topic(f"{base}/+/cmd/+/+", "in"))  # requests; the device ACL judges them
    return lines


def _topic(pattern: str, direction: str) -> str:
    """A bridged topic: `pattern` on the remote broker, EDGE_PREFIX + pattern on the edge."""
    return f'topic {pattern} {direction} 1 {EDGE_PREFIX} ""'


def _local_link(s: FleetSettings) -> list[str]:
    loc = s.local
    base = f"{topics.ROOT}/{s.device}"
    lines = _link("benchbus-local", loc.host, loc.port, f"benchbus-fleet-{s.device}", 10, (1.0, 5.0))
    lines.append("notifications false")
    if loc.username is not None:
        lines.append(f"remote_username {_quote_free(loc.username, 'local.username')}")
        password = loc.resolved_password()
        if password is not None:
            lines.append(f"remote_password {_quote_free(password, 'local.password')}")
    lines += [_topic(f"{base}/{suffix}", "in") for suffix in PUBLIC_SUFFIXES]
    lines.append(_topic(f"{base}/{topics.CLIENTS}/#", "in"))
    lines.append(_topic(f"{base}/+/cmd/+/+", "out"))
    return lines


def bridge_conf(s: FleetSettings) -> str:
    """The edge broker's whole mosquitto.conf (run it as `mosquitto -c FILE`)."""
    lines = ["# GENERATED by `python -m benchbus.fleet bridge-conf` from the fleet settings; do not edit.",
             "# The fleet edge broker: links this device's broker (as the ACL-checked user benchbus-fleet) to the",
             "# lab's central broker. See docs/lab.md.",
             "per_listener_settings false",
             "allow_anonymous false",  # and no password file: nobody logs in to the edge itself
             f"listener {s.edge_port} 127.0.0.1",
             "persistence true",
             f"persistence_location {_quote_free(str(s.data_dir), 'data_dir').rstrip('/')}/",
             "autosave_interval 30",
             f"max_queued_messages {s.max_queued_messages}",
             f"max_queued_bytes {s.max_queued_bytes}",
             "max_inflight_messages 100",
             "log_dest stderr",
             "log_type error", "log_type warning", "log_type notice", "log_type information",
             "connection_messages true",
             ""]
    return "\n".join(lines + _local_link(s) + [""] + _central_link(s)) + "\n"


def load(path: Path | None, environ: dict[str, str] | None = None) -> FleetSettings:
    return load_settings(FleetSettings, SEGMENT, path or CONFIG_DIR / f"{SEGMENT}.yaml", environ)


def write_atomically(path: Path, text: str) -> None:
    """The conf holds passwords: owner-only, and a kill mid-write leaves the last good file."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def bridge_conf_command(settings_path: Path | None, output: Path | None) -> int:
    try:
        text = bridge_conf(load(settings_path))
    except (yamlfile.FileError, ValueError) as exc:
        print(f"fleet settings: {exc}", file=sys.stderr)
        return 2
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomically(output, text)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", type=Path, default=None, help=f"default {CONFIG_DIR}/{SEGMENT}.yaml; every field "
                   "also from BENCHBUS_FLEET_* (e.g. BENCHBUS_FLEET_CENTRAL_HOST)")
    p.add_argument("--output", type=Path, default=None, help="write here (mode 0600) instead of stdout")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchbus.fleet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    add_arguments(sub.add_parser("bridge-conf", help="print the fleet edge broker's mosquitto.conf"))
    args = parser.parse_args(argv)
    return bridge_conf_command(args.settings, args.output)


if __name__ == "__main__":
    sys.exit(main())
