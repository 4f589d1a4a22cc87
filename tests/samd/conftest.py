"""Fixtures of the samd tests: the emulator at a fast baud with short turnarounds, and the bridge pointed at it."""
from __future__ import annotations

import pytest

from benchbus_samd.emulator.boards import DEFAULT_PARAMS
from benchbus_samd.emulator.line import SamdEmulator
from benchbus_samd.emulator.wire import LineTiming
from benchbus_samd.service import SamdService
from benchbus_samd.settings import SamdSettings

FAST = LineTiming.fast()


def bridge_fields(url: str, timing: LineTiming = FAST, **extra) -> dict:
    """The tests count attempts exactly, and the emulator is a thread of the (loaded) test process that can pause
    mid-reply where a board's UART never does (seen in CI: a stir staged twice). So the reply gap and the timeout
    margin are generous; a test of the timeouts themselves costs seconds, not a false retry."""
    fields = dict(port=url, baudrate=timing.baudrate, reply_delay_s=timing.reply_delay_s, hold_s=timing.hold_s,
                  hold_overrides={"stir": timing.stir_hold_s}, timeout_margin_s=1.0, reply_gap_s=0.5,
                  reopen_min_s=0.05, reopen_max_s=0.3, probe_interval_s=0.1, state_interval_s=0.1)
    fields.update(extra)
    return fields


@pytest.fixture
def transact_request():
    """transact_request(param, values=None, type="r", **extra): a request of the default conf."""
    def make(param: str, values=None, type: str = "r", **extra) -> dict:
        default_values, fields_out, fields_in = DEFAULT_PARAMS[param]
        chosen = default_values if values is None else values
        return {"param": param, "type": type, "values": chosen, "fields_out": fields_out, "fields_in": fields_in,
                **extra}
    return make


def _started(kind: str, tmp_path) -> SamdEmulator:
    emu = SamdEmulator(FAST, temp_tau_s=5.0)
    if kind == "socket":
        emu.url_for_bridge = f"socket://127.0.0.1:{emu.start_tcp(0)}"
    else:
        emu.url_for_bridge = emu.start_pty(tmp_path / "ttySAMD")
    return emu


@pytest.fixture(params=["socket", "pty"])
def emulator(request, tmp_path):
    emu = _started(request.param, tmp_path)
    yield emu
    emu.close()


@pytest.fixture
def tcp_emulator(tmp_path):
    emu = _started("socket", tmp_path)
    yield emu
    emu.close()


@pytest.fixture
def start_bridge(make_settings, serve):
    def start(emu: SamdEmulator, **extra):
        return serve(SamdService, make_settings(SamdSettings, **bridge_fields(emu.url_for_bridge, **extra)))
    return start
