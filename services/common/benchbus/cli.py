"""The `benchbus` command line: up, status, call, commands, watch, health, completion.

Exit codes: 0 done; 1 an error reply or a service not ready; 2 a usage error (bad JSON, an unknown service or
command); 3 no answer (a timeout, the broker unreachable, the service not running).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from benchbus_schemas import topics

from . import catalogue, completion, stack
from .errors import BusError, CallTimeout
from .settings import BrokerSettings
from .snapshot import read_retained

if TYPE_CHECKING:
    from .client import BusClient

EXIT_ERROR_REPLY, EXIT_USAGE, EXIT_NO_ANSWER = 1, 2, 3
CONNECT_TIMEOUT_S = 5.0


def _broker_settings(args: argparse.Namespace) -> BrokerSettings:
    """The chosen broker; a user name and password from BENCHBUS_BROKER_USERNAME/PASSWORD where the broker wants
    them (an instrument's broker has no anonymous access)."""
    target: stack.Target = args.target
    return BrokerSettings(host=target.host, port=target.port, username=os.environ.get("BENCHBUS_BROKER_USERNAME"),
                          password=os.environ.get("BENCHBUS_BROKER_PASSWORD"))


def _client(args: argparse.Namespace) -> BusClient:
    """A bus client that is connecting (call `start()` to wait for it): connecting overlaps the snapshot."""
    from .client import BusClient  # not needed by status, health, commands: they start quicker without it

    client = BusClient(args.target.device, _broker_settings(args), name=f"cli-{os.getpid()}")
    client.connection.start()
    return client


def _states(args: argparse.Namespace, every_device: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """{device: {service: $state}}: the target device's, or every device's the broker retains (a fleet's broker
    may hold hundreds, so only when the target has none)."""
    device = "+" if every_device else args.target.device
    retained = read_retained(_broker_settings(args), [f"{topics.ROOT}/{device}/+/$state"],
                             timeout=args.connect_timeout)
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for topic_name, payload in retained.items():
        parsed = topics.parse(topic_name)
        try:
            state = json.loads(payload)
        except ValueError:
            continue
        if parsed and isinstance(state, dict):
            found.setdefault(parsed[0], {})[parsed[1]] = state
    return found


def _other_devices(args: argparse.Namespace) -> list[str]:
    """The devices with services on this broker other than the target (a hint when the target has none)."""
    try:
        return sorted(d for d in _states(args, every_device=True) if d != args.target.device)
    except BusError:
        return []


def pretty_json(value: Any, width: int = 100) -> str:
    """Indented JSON, with lists of plain values kept on one line when they fit (16 vials, 48 pumps stay readable)."""
    def flat(item: Any) -> bool:
        return isinstance(item, list) and all(not isinstance(v, (list, dict)) for v in item)

    def render(item: Any, indent: int) -> str:
        pad = "  " * indent
        if isinstance(item, dict) and item:
            rows = [f"{pad}  {json.dumps(k)}: {render(v, indent + 1)}" for k, v in item.items()]
            return "{\n" + ",\n".join(rows) + f"\n{pad}}}"
        if isinstance(item, list) and item and not (flat(item) and len(json.dumps(item)) + len(pad) <= width):
            return "[\n" + ",\n".join(f"{pad}  {render(v, indent + 1)}" for v in item) + f"\n{pad}]"
        return json.dumps(item, separators=(", ", ": "))

    return render(value, 0)


def _fail(verb: str, code: str, message: str, detail: Any = None) -> None:
    """Errors of `call` are JSON on stderr, as an error reply would be, so scripts read them the same way."""
    body = {"code": code, "message": message, "detail": detail}
    if verb == "call":
        print(pretty_json({"ok": False, "error": body}), file=sys.stderr)
    else:
        print(f"benchbus {verb}: {message}", file=sys.stderr)


def _no_answer(verb: str, args: argparse.Namespace, error: BusError) -> int:
    target: stack.Target = args.target
    _fail(verb, error.code, f"{error.message} (device {target.device}; broker from {target.source})", error.detail)
    return EXIT_NO_ANSWER


# -- call ------------------------------------------------------------------------------------------------------------

def _unknown_command(service: str, command: str) -> dict[str, Any] | None:
    """The error body when the contract declares `service` but not `command`."""
    declared = [spec.name for spec in catalogue.commands(service)]
    if not declared or command in declared:
        return None
    guess = catalogue.close_matches(command, declared)
    hint = f" Did you mean {' or '.join(guess)}?" if guess else ""
    return {"code": "not_found", "message": f"service {service} has no command {command!r}.{hint} "
            f"Its commands: {', '.join(declared)} (benchbus commands {service})", "detail": None}


def _unknown_service(args: argparse.Namespace,
                     states: dict[str, dict[str, dict[str, Any]]]) -> tuple[int, dict[str, Any]] | None:
    """(exit code, error body) when the service is not there to answer: unknown, not running, or offline."""
    service, device = args.service, args.target.device
    running = states.get(device, {})
    state = running.get(service)
    if state is not None and state.get("state") != "offline":
        return None
    where = f"device {device} on broker {args.target.broker}"
    if state is not None:
        return EXIT_NO_ANSWER, {"code": "unavailable", "message": f"{service} is offline on {where} (since "
                                f"{state.get('since', '?')})", "detail": {"state": state}}
    if service in catalogue.services():
        return EXIT_NO_ANSWER, {"code": "unavailable", "message": f"{service} is not running on {where} (it has "
                                f"never published its $state there)", "detail": {"running": sorted(running)}}
    guess = catalogue.close_matches(service, sorted(set(running) | set(catalogue.services())))
    hint = f" Did you mean {' or '.join(guess)}?" if guess else ""
    others = [] if running else _other_devices(args)
    elsewhere = f" Other devices on this broker: {', '.join(others)}." if others else ""
    return EXIT_USAGE, {"code": "not_found", "message": f"no such service {service!r} on {where}.{hint} Running "
                        f"there: {', '.join(sorted(running)) or 'none'}.{elsewhere} Declared in the contract: "
                        f"{', '.join(catalogue.services())}.", "detail": None}


def cmd_call(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.payload == "-" else args.payload
    try:
        payload = json.loads(text) if text else {}
    except ValueError as exc:
        _fail("call", "invalid_request", f"the payload is not valid JSON: {exc}")
        return EXIT_USAGE
    unknown = _unknown_command(args.service, args.command)
    if unknown is not None:
        _fail("call", **unknown)
        return EXIT_USAGE
    client = _client(args)  # connects while the snapshot is read
    try:
        return _checked_call(args, client, payload)
    finally:
        client.close()


def _checked_call(args: argparse.Namespace, client: BusClient, payload: Any) -> int:
    try:
        absent = _unknown_service(args, _states(args))
        if absent is not None:
            _fail("call", **absent[1])
            return absent[0]
        client.start(timeout=args.connect_timeout)
    except BusError as error:
        return _no_answer("call", args, error)
    timeout = args.timeout if args.timeout is not None else catalogue.timeout_s(args.service, args.command)
    try:
        result = client.call(args.service, args.command, payload, timeout=timeout)
    except CallTimeout as error:
        return _no_answer("call", args, error)
    except BusError as error:
        _fail("call", error.code, error.message, error.detail)
        return EXIT_ERROR_REPLY
    print(pretty_json(result))
    return 0


# -- status, health, watch -------------------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    try:
        states = _states(args)
    except BusError as error:
        return _no_answer("status", args, error)
    mine = states.get(args.target.device, {})
    if not mine:
        devices = _other_devices(args)
        others = f" (devices with services there: {', '.join(devices)})" if devices else ""
        print(f"no service of device {args.target.device} has ever published its $state on "
              f"{args.target.broker}{others}", file=sys.stderr)
        return EXIT_ERROR_REPLY
    print(stack.state_table(mine, sorted(mine)))
    print(f"\n{args.target.describe()}")
    return 0 if all(s.get("state") == "ready" for s in mine.values()) else EXIT_ERROR_REPLY


def cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 only when the service's retained $state is ready (compose health checks, scripts)."""
    lifecycle = topics.lifecycle_topic(args.target.device, args.service)
    try:
        retained = read_retained(_broker_settings(args), [lifecycle], timeout=args.timeout)
    except BusError as error:
        print(f"{args.service}: {error.message}", file=sys.stderr)
        return EXIT_ERROR_REPLY
    try:
        state = json.loads(retained[lifecycle]) if lifecycle in retained else None
    except ValueError:
        state = None
    if not isinstance(state, dict):
        print(f"{args.service}: no $state on the bus", file=sys.stderr)
        return EXIT_ERROR_REPLY
    reason = f" ({state['reason']})" if state.get("reason") else ""
    print(f"{args.service}: {state.get('state', 'unknown')}{reason}")
    return 0 if state.get("state") == "ready" else EXIT_ERROR_REPLY


def watch_filter(args: argparse.Namespace) -> str:
    """The filter as given when it starts with `benchbus/` or `$` (or is `#`), else under the device:
    `scheduler/event/broadcast`, `+/$audit`."""
    given: str | None = args.filter
    if not given:
        return f"{topics.ROOT}/{args.target.device}/#"
    if given.startswith((f"{topics.ROOT}/", "$")) or given == "#":
        return given
    return f"{topics.ROOT}/{args.target.device}/{given}"


def cmd_watch(args: argparse.Namespace) -> int:
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    enough = threading.Event()  # --count messages seen
    seen = 0
    lock = threading.Lock()

    def show(topic_name: str, _data: Any, message: Any) -> None:
        nonlocal seen
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        flags = " [retained]" if message.retain else ""
        with lock:
            if enough.is_set():
                return
            print(f"{stamp} {topic_name}{flags} {message.payload.decode('utf-8', errors='replace')}", flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                enough.set()

    client = _client(args)
    try:
        client.start(timeout=args.connect_timeout)
        client.subscribe(watch_filter(args), show)
        enough.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass
    except BusError as error:
        return _no_answer("watch", args, error)
    finally:
        client.close()
    return 0 if args.count is None or enough.is_set() else EXIT_NO_ANSWER


# -- the contract: commands, completion ----------------------------------------------------------------------------

def cmd_commands(args: argparse.Namespace) -> int:
    declared = catalogue.services()
    if args.service is not None and args.service not in declared:
        guess = catalogue.close_matches(args.service, declared)
        hint = f" Did you mean {' or '.join(guess)}?" if guess else ""
        print(f"benchbus commands: the contract declares no service {args.service!r}.{hint} "
              f"Services: {', '.join(declared)}", file=sys.stderr)
        return EXIT_USAGE
    for service in [args.service] if args.service else declared:
        specs = catalogue.commands(service)
        if not specs:
            continue
        print(f"{service}:")
        for spec in specs:
            wait = f"  [waits up to {spec.timeout_s:g} s]" if spec.timeout_s else ""
            print(f"  {spec.name:<20} {catalogue.summary(spec)}{wait}")
            print(f"  {'':<20} benchbus call {service} {spec.name} "
                  f"'{json.dumps(catalogue.example_request(spec), separators=(', ', ': '))}'")
        print()
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion.script(args.shell))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from .up import up

    return up(args)


# -- the parser ------------------------------------------------------------------------------------------------------

def _bus_options(p: argparse.ArgumentParser, timeout_help: str | None = None) -> None:
    p.add_argument("--broker", default=None, help="HOST:PORT of the broker (default: BENCHBUS_BROKER_HOST/PORT, else "
                   "the running `benchbus up` of this folder or of this user, else localhost:1883)")
    p.add_argument("--device", default=None, help="device id (default: BENCHBUS_DEVICE, else the running `benchbus "
                   "up`'s, else the host name)")
    if timeout_help is not None:
        p.add_argument("--timeout", type=float, default=None, help=timeout_help)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="benchbus", description="benchbus: lab instruments on an MQTT bus",
                                  epilog="exit codes: 0 done, 1 error reply or not ready, 2 usage error (unknown "
                                  "service or command, bad JSON), 3 no answer (timeout, broker or service down)")
    sub = top.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    p_up = sub.add_parser("up", help="start broker, emulators and every installed service")
    p_up.add_argument("--broker", default=None, help="use this broker (HOST:PORT) instead of starting Mosquitto")
    p_up.add_argument("--device", default=None)
    p_up.add_argument("--data-dir", default=stack.DATA_DIR_NAME, help="where services keep their files "
                      "(default %(default)s)")
    p_up.add_argument("--http-port", type=int, default=8081, help="the gateway's port (default %(default)s)")
    p_up.add_argument("--only", default=None, help="comma-separated service segments to start (default: all)")
    p_up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for ready (default %(default)s)")
    p_up.set_defaults(func=cmd_up)

    p_status = sub.add_parser("status", help="the $state of every service of a device")
    _bus_options(p_status)
    p_status.set_defaults(func=cmd_status)

    p_call = sub.add_parser("call", help="send one request and print the reply")
    p_call.add_argument("service")
    p_call.add_argument("command")
    p_call.add_argument("payload", nargs="?", default=None, help="JSON payload (default {}; - reads it from stdin)")
    _bus_options(p_call, "seconds to wait for the reply (default: the command's own, from the contract; else 5)")
    p_call.set_defaults(func=cmd_call)

    p_commands = sub.add_parser("commands", help="the commands of every service (or of one), with an example each")
    p_commands.add_argument("service", nargs="?", default=None)
    p_commands.set_defaults(func=cmd_commands)

    p_watch = sub.add_parser("watch", help="print bus traffic as it happens")
    p_watch.add_argument("filter", nargs="?", default=None, help="MQTT topic filter: benchbus/... as it is, anything "
                         "else under the device, e.g. scheduler/event/broadcast (default: the whole device)")
    p_watch.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    p_watch.add_argument("--count", type=int, default=None, help="stop after this many messages (exit 3 if --seconds "
                         "ends first)")
    _bus_options(p_watch)
    p_watch.set_defaults(func=cmd_watch)

    p_health = sub.add_parser("health", help="exit 0 when one service's $state is ready")
    p_health.add_argument("service", help="the service's MQTT segment (samd, smoothie, gpio, ...)")
    _bus_options(p_health, "seconds to wait for the broker (default 3)")
    p_health.set_defaults(func=cmd_health)

    p_completion = sub.add_parser("completion", help="print a shell completion script: "
                                  "eval \"$(benchbus completion bash)\"")
    p_completion.add_argument("shell", choices=completion.SHELLS)
    p_completion.set_defaults(func=cmd_completion)

    from . import lab  # its own module: the lab's commands never slow the device's
    lab.add_parser(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [completion.HIDDEN_VERB]:
        print("\n".join(completion.candidates(parser(), argv[1:])))
        return 0
    args = parser().parse_args(argv)
    if args.verb == "up":
        args.device = args.device or os.environ.get("BENCHBUS_DEVICE") or socket.gethostname()
    elif args.verb not in ("commands", "completion", "lab"):
        args.target = stack.choose(args.broker, args.device)
        args.connect_timeout = CONNECT_TIMEOUT_S if args.verb != "health" else (args.timeout or 3.0)
        if args.verb == "health":
            args.timeout = args.connect_timeout
        if args.target.note:
            print(args.target.note, file=sys.stderr)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `benchbus commands | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
