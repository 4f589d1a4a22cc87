"""`benchbus lab ...`: a lab of many devices on one central broker (docs/lab.md).

    benchbus lab bridge-conf [--settings FILE] [--output FILE]   this device's fleet edge broker configuration
"""
from __future__ import annotations

import argparse

from . import fleet


def add_parser(sub: argparse._SubParsersAction) -> None:
    p_lab = sub.add_parser("lab", help="a lab: many devices on one central broker (bridge-conf)")
    lab_sub = p_lab.add_subparsers(dest="lab_verb", required=True, metavar="LAB_COMMAND")
    p_conf = lab_sub.add_parser("bridge-conf", help="print (or write) this device's fleet edge broker configuration")
    fleet.add_arguments(p_conf)
    p_conf.set_defaults(func=lambda args: fleet.bridge_conf_command(args.settings, args.output))
