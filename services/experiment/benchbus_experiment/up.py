"""`benchbus up` plug-in: the experiment service, its state under the up data directory."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    env = {"BENCHBUS_EXPERIMENT_DATA_DIR": str(ctx.service_dir("experiment"))}
    return [Unit("experiment", [sys.executable, "-m", "benchbus_experiment.service"], env=env, segment="experiment")]
