"""Transfer 50 uL from A1 to B1 of a plate with a fresh tip: `benchbus-simulate examples/transfer.py`."""

metadata = {"protocolName": "50 uL transfer", "author": "benchbus"}


def run(protocol):
    tips = protocol.load_labware("benchbus_96_tiprack_300ul", 1)
    plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
    p300 = protocol.load_pipette("p300_single_gen2", "left", tip_racks=[tips])
    protocol.home()
    p300.pick_up_tip()
    p300.aspirate(50, plate["A1"])
    p300.dispense(50, plate["B1"])
    p300.blow_out(plate["B1"])
    p300.drop_tip()
