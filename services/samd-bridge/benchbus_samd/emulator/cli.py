"""`benchbus-samd-emulator`: the SAMD21 boards' line on a TCP port or a pty until a signal (options: --baud,
--reply-delay, --hold, --stir-hold, --fault PARAM:KIND[:PROB], --control-port PORT for the JSON interface of
`control.py`, --late-release S, --calibrations FILE (cultures grow) with --time-scale X, --mu-max, --od0)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchbus.control import run_until_signalled

from ..culture import CultureParams, Rig, RigCalibration
from .control import serve_control
from .line import SamdEmulator
from .wire import LineTiming


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchbus-samd-emulator", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on 127.0.0.1:PORT (0 = any free port)")
    where.add_argument("--pty", action="store_true", help="open a pty (its path is printed)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--link", type=Path, help="with --pty: keep a symlink to the pty here")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--reply-delay", type=float, default=0.1)
    parser.add_argument("--hold", type=float, default=0.1)
    parser.add_argument("--stir-hold", type=float, default=0.3)
    parser.add_argument("--temp-tau", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault", action="append", default=[], metavar="PARAM:KIND[:PROB]")
    parser.add_argument("--control-port", type=int, help="a JSON HTTP interface on 127.0.0.1:PORT")
    parser.add_argument("--late-release", type=float, default=0.0, metavar="S",
                        help="boards release the line this long after their nominal hold")
    parser.add_argument("--calibrations", type=Path, metavar="FILE",
                        help="an eVOLVER calibrations.json: cultures grow, and the boards report the raw values its "
                             "active fits map to the true OD and degrees C")
    parser.add_argument("--time-scale", type=float, default=1.0, help="model seconds per real second (cultures)")
    parser.add_argument("--mu-max", type=float, default=CultureParams.mu_max_per_h, help="growth rate, 1/h")
    parser.add_argument("--od0", type=float, default=CultureParams.od0, help="the inoculum's OD")
    return parser


def _rig(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Rig | None:
    """Growing cultures from an eVOLVER calibrations.json, or None without --calibrations."""
    if args.calibrations is None:
        return None
    try:
        calibration = RigCalibration.from_evolver(json.loads(args.calibrations.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        parser.error(f"--calibrations {args.calibrations}: {exc}")
    return Rig(calibration, CultureParams(mu_max_per_h=args.mu_max, od0=args.od0), temp_tau_s=args.temp_tau,
               seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    timing = LineTiming(args.baud, args.reply_delay, args.hold, args.stir_hold)
    rig = _rig(parser, args)
    emulator = SamdEmulator(timing, seed=args.seed, temp_tau_s=args.temp_tau, rig=rig, time_scale=args.time_scale,
                            late_release_s=args.late_release)
    try:
        for spec in args.fault:
            param, kind, *probability = spec.split(":")
            emulator.inject(param, kind, float(probability[0]) if probability else 1.0)
    except ValueError as exc:
        parser.error(str(exc))
    if args.tcp is not None:
        port = emulator.start_tcp(args.tcp, args.host)
        print(f"samd emulator on socket://{args.host}:{port} at {args.baud} baud", flush=True)
    else:
        path = emulator.start_pty(args.link)
        print(f"samd emulator on {path} at {args.baud} baud", flush=True)
    if args.control_port is not None:
        serve_control(emulator, args.control_port)
        print(f"control on http://127.0.0.1:{args.control_port}/state", flush=True)
    return run_until_signalled(emulator.close)
