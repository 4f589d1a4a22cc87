"""`benchbus-smoothie-emulator`: the emulated board on a TCP port or a pty until a signal, with an optional JSON
control interface for tests in another process."""
from __future__ import annotations

import argparse
import logging

from benchbus.control import run_until_signalled

from .board import SmoothieEmulator
from .control import serve_control
from .pipettes import DEFAULT_PIPETTES


def _pipette_arg(text: str) -> tuple[str, str] | None:
    if text.lower() == "none":
        return None
    model, _, serial_id = text.partition(":")
    if not model or not serial_id:
        raise argparse.ArgumentTypeError("expected MODEL:ID (e.g. p300_single_v2.1:P3HSV2120200101) or none")
    return model, serial_id


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchbus-smoothie-emulator",
                                     description="A Smoothieboard (OT-2 build) stand-in speaking the real bytes")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on this TCP port (pyserial socket://)")
    where.add_argument("--pty", action="store_true", help="open a pseudo-terminal and print its path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--link", help="with --pty: make a symlink to the pty here")
    parser.add_argument("--speedup", type=float, default=1.0, help="motion runs this many times faster")
    parser.add_argument("--baud", type=int, default=115200, help="pace replies at this baud rate (0: no pacing)")
    parser.add_argument("--echo", action="store_true", help="echo each command line back, as some boards do")
    parser.add_argument("--left", type=_pipette_arg, default=DEFAULT_PIPETTES["left"], help="MODEL:ID or none")
    parser.add_argument("--right", type=_pipette_arg, default=DEFAULT_PIPETTES["right"], help="MODEL:ID or none")
    parser.add_argument("--control-port", type=int, help="a JSON HTTP interface on 127.0.0.1:PORT (state, faults)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    emulator = SmoothieEmulator(speedup=args.speedup, echo=args.echo, baud=args.baud or None,
                                pipettes={"left": args.left, "right": args.right})
    if args.pty:
        print(emulator.start_pty(args.link), flush=True)
    else:
        print(emulator.start_tcp(args.tcp, args.host), flush=True)
    if args.control_port is not None:
        serve_control(emulator, args.control_port)
        print(f"control on http://127.0.0.1:{args.control_port}/state", flush=True)
    return run_until_signalled(emulator.stop)
