"""apiLevel 2.13: an 8-channel p20 by columns, rail lights, comment, pause with a message."""
from opentrons import protocol_api

metadata = {"protocolName": "multichannel (2.13)", "apiLevel": "2.13"}


def run(protocol: protocol_api.ProtocolContext):
    tips = protocol.load_labware("opentrons_96_tiprack_20ul", 5)
    plate = protocol.load_labware("opentrons_96_aluminumblock_generic_pcr_strip_200ul", 6)
    source = protocol.load_labware("nest_12_reservoir_15ml", 3)
    p20 = protocol.load_instrument("p20_multi_gen2", "right", tip_racks=[tips])

    protocol.set_rail_lights(True)
    protocol.comment("filling two columns")
    p20.transfer(10, source["A1"], [plate.columns()[0][0], plate.columns()[1][0]], new_tip="always")
    protocol.pause("check the strips")
    p20.pick_up_tip()
    p20.aspirate(15, source["A2"])
    p20.dispense(15, plate["A3"])
    p20.touch_tip()
    p20.blow_out()
    p20.drop_tip()
    protocol.set_rail_lights(False)
