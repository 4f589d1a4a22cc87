"""`benchbus-execute protocol.py`: run an Opentrons protocol on the robot through the bus, as `opentrons_execute`.

    benchbus-execute protocol.py                         # on the robot
    benchbus-execute --broker robot.local:1883 protocol.py   # from any host on the network
    benchbus-execute -L ./my_labware protocol.py         # custom labware JSON, as Opentrons' -L

The run log is printed as opentrons_execute prints it. The run holds the robot's motion lease; an open door pauses
it (close the door, press the robot's button); `protocol.pause()` waits for the button too. A motion the robot
refuses (out of reach, an alarm) fails the run with the protocol's line in the message; exit status 1. Ctrl-C
halts the robot (it must be homed afterwards); exit status 130.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from typing import TYPE_CHECKING

from .calibration import private_config_dir
from .robot import Robot

if TYPE_CHECKING:
    from .session import RobotSession


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchbus-execute", description=__doc__.splitlines()[0])
    parser.add_argument("protocol", type=Path, help="the protocol file (Python, Opentrons protocol API v2)")
    parser.add_argument("--broker", default=None, help="host[:port] of the robot's broker (default "
                        "$BENCHBUS_BROKER_HOST:$BENCHBUS_BROKER_PORT or localhost:1883)")
    parser.add_argument("--device", default=None, help="the robot's device id (default $BENCHBUS_DEVICE or this "
                        "host's name)")
    parser.add_argument("-L", "--custom-labware-path", action="append", default=[os.getcwd()],
                        help="a folder of custom labware JSON (repeatable; the current folder always counts, as in "
                        "opentrons_execute); benchbus's own labware is always there")
    parser.add_argument("-n", "--no-print-runlog", action="store_true", help="do not print the run log")
    parser.add_argument("-l", "--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"], help="log level of Opentrons and benchbus")
    parser.add_argument("--pause-timeout", type=float, default=None, help="give up a pause (door, pause step) "
                        "after this many seconds (default: wait for the button)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.protocol.is_file():
        print(f"benchbus-execute: no file {args.protocol}", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(levelname)s %(name)s: %(message)s")
    private_config_dir()  # before opentrons is imported
    from opentrons.execute import make_runlog_cb
    from opentrons.util.entrypoint_util import ProtocolEngineExecuteError

    from . import default_device
    from .session import RobotSession

    robot = Robot(args.device or default_device(), args.broker, pause_timeout_s=args.pause_timeout,
                  on_pause=lambda text: print(text, file=sys.stderr, flush=True),
                  on_resume=lambda: print("resumed", file=sys.stderr, flush=True))
    printer = None if args.no_print_runlog else make_runlog_cb()
    try:
        with RobotSession(robot) as session:
            interrupted = stop_on_ctrl_c(session)
            try:
                session.run_file(args.protocol, emit_runlog=printer, custom_labware_paths=args.custom_labware_path)
            except (RunInterrupted, ProtocolEngineExecuteError):
                if not interrupted.is_set():
                    raise
                return halt_after_interrupt(robot)
    except ProtocolEngineExecuteError as error:
        print(error.to_stderr_string(), file=sys.stderr)
        return 1
    except Exception as error:  # the legacy context raises the protocol's own error, with its line
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


class RunInterrupted(BaseException):
    """Ctrl-C during a run. Not KeyboardInterrupt: one that passes through the protocol's own code (which Opentrons
    runs with exec) makes CPython end the process by SIGINT even after it was handled here."""


def stop_on_ctrl_c(session: RobotSession) -> threading.Event:
    """Ctrl-C stops the run: an engine run through the engine's own stop (its loop runs in this thread, raising
    there would leave its protocol thread waiting), a legacy run by an exception in the protocol's thread."""
    interrupted = threading.Event()

    def on_sigint(_signum: int, _frame: object) -> None:
        interrupted.set()
        if not session.stop_run():
            raise RunInterrupted()
    signal.signal(signal.SIGINT, on_sigint)
    return interrupted


def halt_after_interrupt(robot: Robot) -> int:
    """Ctrl-C stops the robot, not only this program: what is moving is halted through the bridge (the robot then
    wants homing), before the lease is given back."""
    print("interrupted: halting the robot", file=sys.stderr, flush=True)
    try:
        robot.read("smoothie", "halt")
    except Exception as error:  # the program ends anyway; say the robot may still be moving
        print(f"the halt failed: {error}", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
