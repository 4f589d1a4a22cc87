"""`benchbus-simulate protocol.py`: Opentrons' own simulation of a protocol, as `opentrons_simulate` does it.

No robot and no bus: Opentrons' simulating hardware backend, so the run log is the one opentrons_simulate prints
(tests/protocol compares them). What it adds: benchbus's own labware (shared-data/labware) is always loadable, and
the run reads and writes a private Opentrons config folder, never ~/.opentrons. Every opentrons_simulate option
works (-L, -D, -d, -e, -o, -l).
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from .calibration import private_config_dir

    private_config_dir()  # before opentrons is imported
    from benchbus_shared_data import labware_dirs
    from opentrons import simulate
    from opentrons.util.entrypoint_util import ProtocolEngineExecuteError

    parser = simulate.get_arguments(argparse.ArgumentParser(prog="benchbus-simulate",
                                                             description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    estimator = None
    if args.estimate_duration:
        from opentrons.protocols.duration import DurationEstimator

        estimator = DurationEstimator()
    try:
        runlog, _bundle = simulate.simulate(
            protocol_file=args.protocol, file_name=args.protocol.name,
            custom_labware_paths=list(args.custom_labware_path) + [str(p) for p in labware_dirs()],
            custom_data_paths=args.custom_data_path + args.custom_data_file, duration_estimator=estimator,
            log_level=args.log_level)
    except ProtocolEngineExecuteError as error:
        print(error.to_stderr_string(), file=sys.stderr)
        return 1
    if args.output == "runlog":
        print(simulate.format_runlog(runlog))
    if estimator is not None:
        print(f"Estimated protocol duration: {estimator.get_total_duration():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
