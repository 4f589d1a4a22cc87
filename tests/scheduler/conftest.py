"""Shared helpers of the scheduler tests: the shipped confs, and a scheduler served against the test broker."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchbus_scheduler.service import SchedulerService
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
        return serve(SchedulerService, settings), conf_path
    return start


FAST_LINE = dict(baudrate=230400, reply_delay_s=0.002, hold_s=0.002)


@pytest.fixture
def emulator():
    """The SAMD21 boards on a TCP port at a fast baud rate (the samd-bridge's own emulator, real bytes)."""
    from benchbus_samd.emulator.line import SamdEmulator
    from benchbus_samd.emulator.wire import LineTiming
    timing = LineTiming(stir_hold_s=0.004, **FAST_LINE)
    emu = SamdEmulator(timing)
    emu.start_tcp(0)
    yield emu
    emu.close()


@pytest.fixture
def rig(emulator, make_settings, serve, start_scheduler):
    """Emulator + the real samd-bridge + a scheduler, all on the test broker; returns (emulator, start)."""
    import benchbus_samd.service as samd_service
    from benchbus_samd.settings import SamdSettings
    # No retries (the tests read the exact frames), so no spurious failure either: the emulator is a thread of this
    # (maybe loaded) process and can pause mid-reply, where a board's UART never does; the margins outlast that.
    serve(samd_service.SamdService, make_settings(SamdSettings, port=emulator.url, hold_overrides={"stir": 0.004},
                                            retries=0, timeout_margin_s=1.0, reply_gap_s=0.5, **FAST_LINE))
    return emulator, start_scheduler


class Events:
    """Every message on one scheduler event topic, collected from the moment the fixture starts."""

    def __init__(self, bus, name: str):
        import threading
        self.items: list[dict] = []
        self._changed = threading.Condition()
        bus.subscribe(bus.topic("scheduler", "event", name), self._add)

    def _add(self, _topic, data, _message) -> None:
        with self._changed:
            self.items.append(data)
            self._changed.notify_all()

    def wait(self, predicate=lambda _d: True, timeout: float = 10.0) -> dict:
        with self._changed:
            found = self._changed.wait_for(lambda: next((d for d in self.items if predicate(d)), None), timeout)
        if found is None:
            raise AssertionError(f"no matching event within {timeout} s; got {self.items[-3:]}")
        return found


@pytest.fixture
def events(bus):
    return lambda name: Events(bus, name)
