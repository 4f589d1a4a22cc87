"""The `benchbus` command line: up, call, watch, status."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from benchbus_schemas import topics

from .client import BusClient
from .errors import BusError, CallTimeout
from .settings import BrokerSettings

DATA_DIR = Path(".benchbus")


def _default_broker() -> str:
    """BENCHBUS_BROKER_HOST/PORT, else the broker of a `benchbus up` running from this folder, else localhost."""
    if "BENCHBUS_BROKER_HOST" in os.environ or "BENCHBUS_BROKER_PORT" in os.environ:
        return f"{os.environ.get('BENCHBUS_BROKER_HOST', 'localhost')}:{os.environ.get('BENCHBUS_BROKER_PORT', '1883')}"
    state = DATA_DIR / "up.json"
    if state.exists():
        try:
            return json.loads(state.read_text())["broker"]
        except (ValueError, KeyError):
            pass
    return "localhost:1883"


def _default_device() -> str:
    if "BENCHBUS_DEVICE" in os.environ:
        return os.environ["BENCHBUS_DEVICE"]
    state = DATA_DIR / "up.json"
    if state.exists():
        try:
            return json.loads(state.read_text())["device"]
        except (ValueError, KeyError):
            pass
    return socket.gethostname()


def _client(args) -> BusClient:
    host, _, port = args.broker.partition(":")
    client = BusClient(args.device, BrokerSettings(host=host, port=int(port or 1883)), name=f"cli-{os.getpid()}")
    client.start(timeout=args.timeout)
    return client


def cmd_call(args) -> int:
    try:
        payload = json.loads(args.payload) if args.payload else {}
    except ValueError as exc:
        print(f"benchbus call: the payload is not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        with _client(args) as client:
            result = client.call(args.service, args.command, payload, timeout=args.timeout)
    except BusError as error:
        print(json.dumps({"ok": False, "error": {"code": error.code, "message": error.message, "detail": error.detail}},
                         indent=2), file=sys.stderr)
        return 3 if isinstance(error, CallTimeout) else 1
    print(json.dumps(result, indent=2))
    return 0


def cmd_watch(args) -> int:
    topic_filter = args.filter or f"benchbus/{args.device}/#"
    lock = threading.Lock()

    def show(topic_name: str, _data, message) -> None:
        stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
        text = message.payload.decode("utf-8", errors="replace")
        flags = " [retained]" if message.retain else ""
        with lock:
            print(f"{stamp} {topic_name}{flags} {text}", flush=True)

    try:
        with _client(args) as client:
            client.subscribe(topic_filter, show)
            threading.Event().wait(args.seconds if args.seconds else None)
    except KeyboardInterrupt:
        pass
    except BusError as error:
        print(f"benchbus watch: {error}", file=sys.stderr)
        return 3
    return 0


def cmd_status(args) -> int:
    from .up import state_table

    states: dict[str, dict] = {}

    def seen(topic_name: str, data, _message) -> None:
        parsed = topics.parse(topic_name)
        if parsed and isinstance(data, dict):
            states[parsed[1]] = data

    try:
        with _client(args) as client:
            client.subscribe(f"benchbus/{args.device}/+/$state", seen)
            time.sleep(args.wait)
    except BusError as error:
        print(f"benchbus status: {error}", file=sys.stderr)
        return 3
    if not states:
        print(f"no service of device {args.device} has ever published its $state on {args.broker}")
        return 1
    print(state_table(states, sorted(states)))
    return 0 if all(s.get("state") == "ready" for s in states.values()) else 1


def cmd_health(args) -> int:
    """Exit 0 only when the service's retained $state is ready (compose health checks, scripts)."""
    try:
        with _client(args) as client:
            _topic, state = client.wait_for(topics.lifecycle_topic(args.device, args.service), timeout=args.timeout)
    except BusError:
        print(f"{args.service}: no $state on the bus", file=sys.stderr)
        return 1
    state = state if isinstance(state, dict) else {}
    print(f"{args.service}: {state.get('state', 'unknown')}" + (f" ({state['reason']})" if state.get("reason") else ""))
    return 0 if state.get("state") == "ready" else 1


def cmd_up(args) -> int:
    from .up import up

    return up(args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="benchbus", description="benchbus: lab instruments on an MQTT bus")
    sub = top.add_subparsers(dest="verb", required=True)

    def common(p: argparse.ArgumentParser, timeout: float = 5.0) -> None:
        p.add_argument("--broker", default=None, help="HOST:PORT of the broker (default: BENCHBUS_BROKER_HOST/PORT, "
                                                      "the running `benchbus up`, else localhost:1883)")
        p.add_argument("--device", default=None, help="device id (default: BENCHBUS_DEVICE, else the host name)")
        p.add_argument("--timeout", type=float, default=timeout, help="seconds to wait (default %(default)s)")

    p_up = sub.add_parser("up", help="start broker, emulators and every installed service")
    p_up.add_argument("--broker", default=None, help="use this broker (HOST:PORT) instead of starting Mosquitto")
    p_up.add_argument("--device", default=None)
    p_up.add_argument("--data-dir", default=str(DATA_DIR), help="where services keep their files (default %(default)s)")
    p_up.add_argument("--http-port", type=int, default=8081, help="the gateway's port (default %(default)s)")
    p_up.add_argument("--only", default=None, help="comma-separated service segments to start (default: all)")
    p_up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for ready (default %(default)s)")
    p_up.set_defaults(func=cmd_up)

    p_call = sub.add_parser("call", help="send one request and print the reply")
    p_call.add_argument("service")
    p_call.add_argument("command")
    p_call.add_argument("payload", nargs="?", default=None, help="JSON payload (default {})")
    common(p_call)
    p_call.set_defaults(func=cmd_call)

    p_watch = sub.add_parser("watch", help="print bus traffic as it happens")
    p_watch.add_argument("filter", nargs="?", default=None, help="MQTT topic filter (default benchbus/<device>/#)")
    p_watch.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    common(p_watch)
    p_watch.set_defaults(func=cmd_watch)

    p_status = sub.add_parser("status", help="the $state of every service of a device")
    p_status.add_argument("--wait", type=float, default=0.5, help="seconds to collect retained states")
    common(p_status)
    p_status.set_defaults(func=cmd_status)
    p_health = sub.add_parser("health", help="exit 0 when one service's $state is ready")
    p_health.add_argument("service", help="the service's MQTT segment (samd, smoothie, gpio, ...)")
    common(p_health, timeout=3.0)
    p_health.set_defaults(func=cmd_health)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "broker", None) is None and args.verb != "up":
        args.broker = _default_broker()
    if args.device is None:
        args.device = _default_device() if args.verb != "up" else os.environ.get("BENCHBUS_DEVICE", socket.gethostname())
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
