"""apiLevel 2.8: distribute, consolidate, air_gap, return_tip, mix; a custom labware from -L; get_values."""
from opentrons import protocol_api

metadata = {"protocolName": "distribute and consolidate (2.8)", "apiLevel": "2.8"}


def get_values(*names):  # as the Protocol Library's customisable protocols carry their values
    import json
    _all_values = json.loads("""{"distribute_ul": 40, "consolidate_ul": 30}""")
    return [_all_values[n] for n in names]


def run(protocol: protocol_api.ProtocolContext):
    distribute_ul, consolidate_ul = get_values("distribute_ul", "consolidate_ul")
    tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
    plate = protocol.load_labware("corning_96_wellplate_360ul_flat", 2)
    tubes = protocol.load_labware("benchtest_6_tuberack_5ml", 4)
    p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])

    p300.distribute(distribute_ul, tubes["A1"], plate.wells("A1", "B1", "C1"), disposal_volume=10)
    p300.consolidate(consolidate_ul, plate.rows_by_name()["A"][:3], tubes["A2"])
    p300.pick_up_tip()
    p300.mix(2, 60, tubes["B1"])
    p300.aspirate(50, tubes["B1"])
    p300.air_gap(20)
    p300.dispense(70, plate["D1"])
    p300.return_tip()
