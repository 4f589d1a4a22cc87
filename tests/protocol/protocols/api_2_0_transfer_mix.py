"""apiLevel 2.0: transfer with mix and touch_tip, blow_out, delay; benchbus's own plate as custom labware."""
from opentrons import protocol_api

metadata = {"protocolName": "transfer and mix (2.0)", "author": "benchbus tests", "apiLevel": "2.0"}


def run(protocol: protocol_api.ProtocolContext):
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
    reservoir = protocol.load_labware("nest_12_reservoir_15ml", 3)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])

    p300.transfer(100, reservoir["A1"], [plate["A1"], plate["B1"]], mix_after=(2, 50), touch_tip=True)
    p300.pick_up_tip()
    p300.aspirate(150, reservoir["A2"])
    p300.dispense(150, plate["C1"])
    p300.blow_out(plate["C1"].top())
    p300.drop_tip()
    protocol.delay(seconds=1)
