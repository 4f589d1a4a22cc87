"""Fixtures of the gateway's tests: the gateway served in-process on a free port, with a token."""
from __future__ import annotations

import pytest

from benchbus_gateway.service import GatewayService
from benchbus_gateway.settings import GatewaySettings

TOKEN = "test-token-0123456789"


UNTRUSTED = {"trusted_networks": []}  # loopback is trusted by default; tests of the token trust nobody


@pytest.fixture
def gateway(serve, make_settings, tmp_path):
    """start(**settings) -> the running GatewayService; `.url` is http://localhost:<port>/."""
    def start(**fields):
        fields.setdefault("host", "127.0.0.1")
        fields.setdefault("port", 0)
        fields.setdefault("token", TOKEN)
        fields.setdefault("data_dir", tmp_path / "gateway")
        return serve(GatewayService, make_settings(GatewaySettings, **fields))
    return start


FAST_LINE = dict(baudrate=230400, reply_delay_s=0.002, hold_s=0.002)


@pytest.fixture
def stack(request, tmp_path, make_settings, serve, gateway):
    """The eVOLVER side on emulated hardware, in-process: SAMD21 emulator (TCP, real bytes), samd-bridge, scheduler
    (0.5 s cycles), calibration-store (the shipped example calibrations), update-agent (the device name), gateway
    (its settings from an indirect parameter, if any). Returns (gateway service, emulator)."""
    from benchbus_samd.emulator.line import SamdEmulator
    from benchbus_samd.emulator.wire import LineTiming
    import benchbus_calibration.service as calibration
    import benchbus_samd.service as samd
    import benchbus_scheduler.service as scheduler
    import benchbus_update.service as update
    from benchbus_calibration.settings import CalibrationSettings
    from benchbus_samd.settings import SamdSettings
    from benchbus_scheduler.settings import SHARED, SchedulerSettings
    from benchbus_update.settings import UpdateSettings

    emulator = SamdEmulator(LineTiming(stir_hold_s=0.004, **FAST_LINE))
    emulator.start_tcp(0)
    serve(samd.SamdService, make_settings(SamdSettings, port=emulator.url, hold_overrides={"stir": 0.004}, retries=0,
                                    **FAST_LINE))
    conf_path = tmp_path / "scheduler" / "conf.yml"
    conf_path.parent.mkdir()
    conf_path.write_text((SHARED / "conf.yml").read_text().replace("broadcast_timing: 20", "broadcast_timing: 0.5"))
    serve(scheduler.SchedulerService, make_settings(SchedulerSettings, conf_path=conf_path, transact_timeout_s=5.0))
    serve(calibration.CalibrationService,
          make_settings(CalibrationSettings, data_dir=tmp_path / "calibration", seed_example=True))
    update_dir = tmp_path / "update"
    serve(update.UpdateService, make_settings(UpdateSettings, http_port=0, state_dir=update_dir / "state",
                                      slot_dir=update_dir / "slots", restart_command=None,
                                      authorized_keys=update_dir / "authorized_keys", serial_file=update_dir / "serial",
                                      default_name="evolver-test", signature_required=False))
    yield gateway(**getattr(request, "param", {})), emulator
    emulator.close()
