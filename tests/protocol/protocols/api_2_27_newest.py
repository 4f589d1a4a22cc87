"""The newest apiLevel opentrons 8.8.2 runs on an OT-2 (2.27): distribute, consolidate, transfer, custom labware."""
from opentrons import protocol_api

metadata = {"protocolName": "newest (2.27)"}
requirements = {"robotType": "OT-2", "apiLevel": "2.27"}


def run(protocol: protocol_api.ProtocolContext):
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
    tubes = protocol.load_labware("benchtest_6_tuberack_5ml", 4)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])

    p300.distribute(50, tubes["A1"], [plate["A1"], plate["A2"], plate["A3"]])
    p300.consolidate(40, [plate["A1"], plate["A2"]], tubes["B2"])
    p300.transfer(60, tubes["A2"], plate["B1"], touch_tip=True, mix_after=(1, 40))
