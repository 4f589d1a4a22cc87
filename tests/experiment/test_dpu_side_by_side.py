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
from .test_modes import UPPER, in_band_fraction, reachable_upper

import socketIO_client
logging.getLogger("socketIO-client").setLevel(logging.ERROR)

DPU_VIALS, DEVICE_VIALS = range(0, 4), range(8, 12)
HOURS = 8.0


@pytest.fixture
def time_scale() -> float:
    """Half the suite's: both turbidostats are judged on fine model timing, and the DPU stand-in polls its socket on
    this test's thread, so on a loaded machine (four test workers on two cores) each real millisecond it waits is
    1.44 model seconds at the suite's scale (seen: vial 9 in band 91.8 % of the time against 95 %)."""
    return TIME_SCALE / 2


class Dpu(socketIO_client.BaseNamespace):
    """The DPU's EvolverNamespace: on each broadcast its turbidostat decides for its own vials."""

    def setup(self, rates: dict[int, controller.Rates], model_time) -> None:
        self.rates = rates
        self.model_time = model_time  # the emulator's model clock: when this DPU saw each broadcast (the test's truth)
        self.mode = Turbidostat(lower_od=0.2, upper_od=0.4, od_values_to_average=1)
        self.states = {v: controller.VialState() for v in DPU_VIALS}
        self.started_model_s = model_time()
        self.errors: list[dict] = []
        self.doses = 0
        self.sent: list[list[tuple[int, str]]] = []
        self.seen_model_s: list[float] = []
        # vial -> when the gateway echoed its last dose (None: sent, not echoed yet); vial -> the first broadcast
        # cycle that reads it after that dose ran
        self.accepted: dict[int, float | None] = {}
        self.fresh_from: dict[int, int] = {}

    def on_broadcast(self, data):
        self.seen_model_s.append(self.model_time())
        elapsed_h = (self.model_time() - self.started_model_s) / 3600
        ods = (data.get("calibrated") or {}).get("od") or []
        message = ["--"] * 48
        for vial in DPU_VIALS:
            if vial >= len(ods) or ods[vial] is None or not self.fresh(vial, data):
                continue
            actions, _growth = controller.turbidostat(self.states[vial], ods[vial], elapsed_h, self.mode, 25.0,
                                                      self.rates[vial], Safety())
            for action in actions:
                if action.action == "dilute":
                    message[vial], message[vial + 16] = action.influx, action.efflux
                    self.accepted[vial] = None
        if message != ["--"] * 48:
            self.doses += 1
            self.sent.append([(i, spec) for i, spec in enumerate(message) if spec != "--"])
            self.emit("command", {"param": "pump", "value": message, "recurring": False, "immediate": True})

    def on_commandbroadcast(self, data):
        """The gateway's echo of a command: the scheduler has queued it (an immediate runs at its next group
        boundary, at the latest before its next cycle starts)."""
        if data.get("param") == "pump":
            for vial in DPU_VIALS:
                if data["value"][vial] != "--" and vial in self.accepted:
                    self.accepted[vial] = time.time()

    def fresh(self, vial: int, broadcast: dict) -> bool:
        """Was this broadcast's OD of the vial read after the vial's last dose ran?

        At 1x the DPU's 3 min pump wait outlasts the way from its command to a reading (well under a second). At a
        day in a minute that way is model minutes (a cycle stretched to 0.4 s by a loaded machine is 10 of them),
        and a reading taken before the dose ran doses the vial twice. So this stand-in waits for it: broadcast k,
        the first one stamped after the echo, ended after the dose was queued, so the dose ran by the start of cycle
        k + 1 (a bolus, at most 25 model s, is 17 ms, less than a cycle), and cycle k + 2 reads the diluted vial."""
        if vial in self.accepted:
            accepted = self.accepted[vial]
            if accepted is None or broadcast["timestamp"] <= accepted:
                return False
            del self.accepted[vial]
            self.fresh_from[vial] = broadcast["cycle"] + 2
        if broadcast["cycle"] < self.fresh_from.get(vial, 0):
            return False
        self.fresh_from.pop(vial, None)
        return True

    def on_benchbus_error(self, data):
        self.errors.append(data)


def test_an_unmodified_dpu_and_an_on_device_experiment_side_by_side(stack, rig_emulator, serve, make_settings, bus):
    stack()
    broadcasts: list[float] = []  # model time of each broadcast, as the device experiment sees them
    bus.subscribe(bus.topic("scheduler", "event", "broadcast"),
                  lambda _topic, _data, _message: broadcasts.append(rig_emulator.emulator.model_time()))
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
    dpu.setup({v: controller.Rates(float(pump[v]), float(pump[v + 16])) for v in DPU_VIALS},
              rig_emulator.emulator.model_time)
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
    # each turbidostat holds the band it can reach from the broadcasts it saw (the DPU stand-in polls its socket in
    # this test's thread, so on a busy machine it sees them later and further apart than the device does)
    for vials, seen in ((DEVICE_VIALS, list(broadcasts)), (DPU_VIALS, list(dpu.seen_model_s))):
        for vial in vials:
            upper = reachable_upper(rig_emulator.samples, seen, vial)
            assert upper < UPPER * 1.1, f"broadcasts too far apart to judge the turbidostat: it may reach {upper:.3f}"
            assert in_band_fraction(rig_emulator.samples, vial, upper) >= 0.95, (vial, upper)
