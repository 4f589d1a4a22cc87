"""A calibration measured during a run goes back to calibration-store, the owner: the run's process starts from the
store's records (materialised into its private Opentrons folder) and, when the run ends, sends what the run changed
there with `robot_set` (benchbus_ot2's RobotSession)."""
from __future__ import annotations

from .conftest import lease_free

LEFT_ID = "P3HSV2120200101"  # the emulated left pipette
TIPRACK = "opentrons/opentrons_96_tiprack_300ul/1"

# Opentrons' own storage function, as its tip-length calibration does at the end of a measurement; only in the real
# run (the analysis simulates, and writes nothing)
MEASURES_A_TIP = f'''
from opentrons.calibration_storage.ot2 import tip_length
from opentrons.calibration_storage.ot2.models import v1
from opentrons.util.helpers import utc_now

requirements = {{"robotType": "OT-2", "apiLevel": "2.13"}}

def run(protocol):
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])
    if not protocol.is_simulating():
        known = tip_length.tip_lengths_for_pipette("{LEFT_ID}")["{TIPRACK}"].tipLength
        assert known == 51.0, known  # the store's record, in this run's folder
        tip_length.save_tip_length_calibration("{LEFT_ID}", {{"{TIPRACK}": v1.TipLengthModel(
            tipLength=52.25, lastModified=utc_now(), definitionHash="")}})
    p300.pick_up_tip()
    p300.drop_tip()
'''


def test_a_tip_length_measured_in_a_run_is_written_back_to_the_store(runner, stack, bus):
    key = {"kind": "tip_length", "pipette_id": LEFT_ID, "tiprack": TIPRACK}
    bus.call("calibration", "robot_set", {"record": {**key, "tip_length": 51.0}})
    try:
        reply = runner.upload(MEASURES_A_TIP, "measure.py")
        assert reply.status_code == 201, reply.text
        run = runner.post("/runs", {"data": {"protocolId": reply.json()["data"]["id"]}})["data"]
        runner.post(f"/runs/{run['id']}/actions", {"data": {"actionType": "play"}})
        done = runner.wait_status(run["id"], ("succeeded", "failed", "stopped"))
        assert done["status"] == "succeeded", done["errors"]
        assert bus.call("calibration", "robot_get", key)["record"]["tip_length"] == 52.25
        lease_free(bus)
    finally:
        bus.call("calibration", "robot_delete", key)
