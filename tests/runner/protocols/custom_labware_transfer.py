"""A transfer between two tubes of the tests' custom labware (benchtest_6_tuberack_5ml), which the upload carries."""
requirements = {"robotType": "OT-2", "apiLevel": "2.13"}

def run(protocol):
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    rack = protocol.load_labware("benchtest_6_tuberack_5ml", 2)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])
    p300.pick_up_tip()
    p300.aspirate(100, rack["A1"])
    p300.dispense(100, rack["A2"])
    p300.drop_tip()
