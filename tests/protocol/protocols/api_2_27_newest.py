"""The newest apiLevel opentrons 8.8.2 runs on an OT-2 (2.27): run-time parameters, distribute, pause, consolidate,
transfer, custom labware."""
from opentrons import protocol_api

metadata = {"protocolName": "newest (2.27)"}
requirements = {"robotType": "OT-2", "apiLevel": "2.27"}


def add_parameters(parameters: protocol_api.Parameters):
    parameters.add_int(variable_name="wells", display_name="wells to fill", default=3, minimum=1, maximum=3)
    parameters.add_float(variable_name="volume", display_name="volume per well", default=50.0, minimum=20.0,
                         maximum=100.0, unit="uL")


def run(protocol: protocol_api.ProtocolContext):
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
    tubes = protocol.load_labware("benchtest_6_tuberack_5ml", 4)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])

    p300.distribute(protocol.params.volume, tubes["A1"], plate.rows()[0][:protocol.params.wells])
    protocol.pause("seal the tubes")  # the protocol engine's waitForResume
    p300.consolidate(40, [plate["A1"], plate["A2"]], tubes["B2"])
    p300.transfer(60, tubes["A2"], plate["B1"], touch_tip=True, mix_after=(1, 40))
