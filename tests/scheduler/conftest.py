"""Shared helpers of the scheduler tests: the shipped confs, and a scheduler served against the test broker."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchbus_scheduler.service import build
from benchbus_scheduler.settings import SHARED, SchedulerSettings

DEFAULT = SHARED / "conf.yml"
STIR_PAUSE = SHARED / "alternates" / "stir_pause_on_od.yml"
ODLED_OFF = SHARED / "alternates" / "odled_normally_off.yml"


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line containing `needle` (so tests never hard-code line numbers)."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in the text")


def fast(text: str, timing: float = 0.3) -> str:
    """A conf with a short cycle and short waits, for tests (the benchmark uses the real ones)."""
    out = text.replace("broadcast_timing: 60", f"broadcast_timing: {timing}")
    out = out.replace("broadcast_timing: 20", f"broadcast_timing: {timing}")
    return out.replace("value: 15\n", "value: 0.2\n")


@pytest.fixture
def conf_dir(tmp_path) -> Path:
    folder = tmp_path / "scheduler"
    folder.mkdir()
    return folder


@pytest.fixture
def start_scheduler(make_settings, serve, conf_dir):
    """Serve a scheduler in-process on a conf text; returns (service, conf_path)."""
    def start(text: str | None = None, **fields):
        conf_path = conf_dir / "conf.yml"
        if text is not None:
            conf_path.write_text(text)
        elif not conf_path.exists():
            shutil.copyfile(DEFAULT, conf_path)
        fields.setdefault("transact_timeout_s", 5.0)
        settings = make_settings(SchedulerSettings, conf_path=conf_path, **fields)
        return serve(build, settings), conf_path
    return start
