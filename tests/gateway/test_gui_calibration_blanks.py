"""The eVOLVER GUI's calibration with blank cells (socket.io-client 2.x): `parseFloat('')` arrives as null and an
uncalibrated IN2 pump as ''. The original server stored the calibration as given and answered
`calibrationrawcallback`; so do we (the GUI waits for that callback forever otherwise)."""
from __future__ import annotations

import pytest

from .test_gui_client import received, run_gui


@pytest.mark.slow
def test_a_calibration_with_blank_cells_is_stored_as_given_and_answered(stack, bus):
    gateway, _emulator = stack
    url = f"http://localhost:{gateway.port}/dpu-evolver"
    od = {"name": "blank_od", "calibrationType": "od", "timeCollected": 1710270638257,
          "measuredData": [0.0, 0.15, None, 0.5, 1.0],
          "raw": [{"param": "od_90", "vialData": [[60870, 60361, None, 58673, 53800]] * 16}], "fits": []}
    pump_raw = [["7.58"]] * 32 + [[""]] * 16  # IN2 never calibrated
    pump = {"name": "blank_pump", "calibrationType": "pump", "timeCollected": 1710270638257,
            "measuredData": [10] * 32 + [None] * 16, "raw": [{"param": "pump", "vialData": pump_raw}], "fits": []}
    lines = run_gui(url, {"emit": [["setrawcalibration", od], ["setrawcalibration", pump]],
                          "wait_for": {"calibrationrawcallback": 2}})
    assert received(lines, "calibrationrawcallback") == ["success", "success"]
    assert not received(lines, "benchbus_error")
    stored_od = bus.call("calibration", "get_calibration", {"name": "blank_od"}, timeout=10)["calibration"]
    assert stored_od["measuredData"] == [0, 0.15, None, 0.5, 1]
    assert stored_od["raw"][0]["vialData"][0][2] is None
    stored_pump = bus.call("calibration", "get_calibration", {"name": "blank_pump"}, timeout=10)["calibration"]
    assert stored_pump["raw"][0]["vialData"][40] == [""] and stored_pump["measuredData"][40] is None
    # the fit skips the blank point: four points per vial
    fitted = bus.call("calibration", "fit", {"name": "blank_od", "fit_name": "blank_od_fit", "type": "sigmoid"},
                      timeout=30)
    assert all(q["points"] == 4 for q in fitted["quality"])
