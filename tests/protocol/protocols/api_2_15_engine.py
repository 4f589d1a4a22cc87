"""apiLevel 2.15 (protocol engine): two pipettes, transfer, mix, touch_tip, air_gap, blow_out, return_tip, delay."""
from opentrons import protocol_api

metadata = {"protocolName": "engine (2.15)"}
requirements = {"robotType": "OT-2", "apiLevel": "2.15"}


def run(protocol: protocol_api.ProtocolContext):
    tips300 = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    tips20 = protocol.load_labware("opentrons_96_tiprack_20ul", 5)
    plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
    reservoir = protocol.load_labware("nest_12_reservoir_15ml", 3)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips300])
    p20 = protocol.load_instrument("p20_multi_gen2", "right", tip_racks=[tips20])

    p300.transfer(120, reservoir["A1"], plate["A1"], mix_before=(1, 100), touch_tip=True, blow_out=True,
                  blowout_location="destination well")
    p300.pick_up_tip()
    p300.aspirate(80, reservoir["A2"])
    p300.air_gap(15)
    p300.dispense(95, plate["B2"])
    p300.return_tip()
    protocol.delay(seconds=1, msg="settling")
    p20.pick_up_tip()
    p20.mix(2, 10, plate["A3"])
    p20.drop_tip()
