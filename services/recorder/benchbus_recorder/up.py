"""`benchbus up` plug-in: the recorder, its SQLite database and exports under the data folder, HTTP on a free port
(the gateway finds it in the retained `recorder/state/http`)."""
from __future__ import annotations

import sys

from benchbus.up import Unit, UpContext


def units(ctx: UpContext) -> list[Unit]:
    data_dir = ctx.service_dir("recorder")
    env = {"BENCHBUS_RECORDER_DATA_DIR": str(data_dir), "BENCHBUS_RECORDER_HTTP_PORT": str(ctx.free_port())}
    return [Unit(name="recorder", segment="recorder", argv=[sys.executable, "-m", "benchbus_recorder.service"],
                 env=env)]
