"""A DPU-style client (the DPU's own client library, socketIO-client 0.7.2, through the gateway) runs its
turbidostat on vials 0-3 while the device's experiment runs vials 8-11: both hold their bands, and a DPU command
that would change an owned vial comes back as `benchbus_error` naming the vial and the experiment.

The DPU side decides with the DPU's turbidostat arithmetic (benchbus_experiment.controller follows custom_script.py)
on the broadcasts it receives, off the device, and sends what eVOLVER.py sends (`fluid_command`, `update_stir_rate`).
"""
from __future__ import annotations

import logging
import time

import pytest

from benchbus_experiment import controller
from benchbus_gateway.service import GatewayService
from benchbus_gateway.settings import GatewaySettings
from benchbus_schemas.experiment import Safety, Turbidostat

from .conftest import TIME_SCALE, definition, turbidostat_group
from .test_modes import in_band_fraction

socketIO_client = pytest.importorskip("socketIO_client", reason="socketIO-client 0.7.2 is a test dependency")
logging.getLogger("socketIO-client").setLevel(logging.ERROR)

DPU_VIALS, DEVICE_VIALS = range(0, 4), range(8, 12)
HOURS = 8.0


class Dpu(socketIO_client.BaseNamespace):
    """The DPU's EvolverNamespace: on each broadcast its turbidostat decides for its own vials."""

    def setup(self, rates: dict[int, controller.Rates]) -> None:
        self.rates = rates
        # the DPU's 3 min pump wait spans 9 of its 20 s broadcasts; here a broadcast is ~2 emulated minutes, and
        # the one right after a dose may have read the vial before the dose ran: wait 3 broadcasts
        self.mode = Turbidostat(lower_od=0.2, upper_od=0.4, od_values_to_average=1, pump_wait_min=6.0)
        self.states = {v: controller.VialState() for v in DPU_VIALS}
        self.started = time.time()
        self.errors: list[dict] = []
        self.doses = 0
        self.sent: list[list[tuple[int, str]]] = []

    def on_broadcast(self, data):
        elapsed_h = (time.time() - self.started) * TIME_SCALE / 3600
        ods = (data.get("calibrated") or {}).get("od") or []
        message = ["--"] * 48
        for vial in DPU_VIALS:
            if vial >= len(ods) or ods[vial] is None:
                continue
            actions, _growth = controller.turbidostat(self.states[vial], ods[vial], elapsed_h, self.mode, 25.0,
                                                      self.rates[vial], Safety())
            for action in actions:
                if action.action == "dilute":
                    message[vial], message[vial + 16] = action.influx, action.efflux
        if message != ["--"] * 48:
            self.doses += 1
            self.sent.append([(i, spec) for i, spec in enumerate(message) if spec != "--"])
            self.emit("command", {"param": "pump", "value": message, "recurring": False, "immediate": True})

    def on_benchbus_error(self, data):
        self.errors.append(data)


def test_an_unmodified_dpu_and_an_on_device_experiment_side_by_side(stack, rig_emulator, serve, make_settings, bus):
    stack()
    gateway = serve(GatewayService, make_settings(GatewaySettings, host="127.0.0.1", port=0, token="t" * 20))
    bus.call("experiment", "start", {"definition": definition("device", [turbidostat_group(DEVICE_VIALS)])},
             timeout=10)
    active = bus.call("calibration", "get_active", {}, timeout=10)["activecalibrations"]  # what getactivecal gives
    pump = next(f for c in active for f in c["fits"] if f["type"] == "constant" and f["active"])["coefficients"]
    linear = next(f for c in active for f in c["fits"] if f["type"] == "linear" and f["active"])["coefficients"]
    # update_temperature: raw = int((30 - b) / m) for its own vials (here NaN, kept, for the others)
    temps = [str(int((30.0 - float(linear[v][1])) / float(linear[v][0]))) if v in DPU_VIALS else "NaN"
             for v in range(16)]
    rig_emulator.set_od(list(DPU_VIALS) + list(DEVICE_VIALS), 0.3)
    socket = socketIO_client.SocketIO("localhost", gateway.port, wait_for_connection=False)
    dpu = socket.define(Dpu, "/dpu-evolver")
    dpu.setup({v: controller.Rates(float(pump[v]), float(pump[v + 16])) for v in DPU_VIALS})
    begin_h = rig_emulator.model_h()
    rig_emulator.start_sampling()
    try:
        dpu.emit("command", {"param": "temp", "value": temps, "immediate": False, "recurring": True})
        dpu.emit("command", {"param": "stir", "value": ["10"] * 16, "immediate": False, "recurring": True})
        while rig_emulator.model_h() < begin_h + HOURS:
            socket.wait(seconds=0.1)
    finally:
        rig_emulator.stop_sampling()
        socket.disconnect()
    refused = [e for e in dpu.errors if e.get("event") == "command"]
    assert refused and "vial 8" in refused[0]["message"] and "'device'" in refused[0]["message"]
    assert dpu.doses >= 2
    sent = sorted(spec for message in dpu.sent for spec in message)
    applied = sorted((e.pump, e.spec) for e in rig_emulator.emulator.pump_events() if e.pump % 16 in DPU_VIALS)
    assert applied == sent  # every DPU dose reached its vial
    for vial in DEVICE_VIALS:
        assert in_band_fraction(rig_emulator.samples, vial) >= 0.95, vial
    for vial in DPU_VIALS:  # the DPU stand-in polls its socket in this test's thread: it may lag on a busy machine
        assert in_band_fraction(rig_emulator.samples, vial) >= 0.8, vial
