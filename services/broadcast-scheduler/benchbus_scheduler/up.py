"""`benchbus up` plug-in: the broadcast-scheduler, on a conf.yml of its own under the data folder."""
from __future__ import annotations

import shutil
import sys

from benchbus.up import Unit, UpContext

from .settings import SHARED


def units(ctx: UpContext) -> list[Unit]:
    conf_path = ctx.service_dir("scheduler") / "conf.yml"
    if not conf_path.exists():  # first start: the shipped default; later starts keep the user's changes
        shutil.copyfile(SHARED / "conf.yml", conf_path)
    return [Unit(name="scheduler", segment="scheduler",
                 argv=[sys.executable, "-m", "benchbus_scheduler.service"],
                 env={"BENCHBUS_SCHEDULER_CONF_PATH": str(conf_path)})]
