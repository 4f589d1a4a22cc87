"""PyLabRobot (PyPI `pylabrobot`, not written here) with its Opentrons OT-2 backend pointed at the runner: setup
(a live run, the mounted pipettes, home), then pick up, aspirate, dispense, drop; checked on the emulator."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pylabrobot.liquid_handling import LiquidHandler
from pylabrobot.liquid_handling.backends.opentrons_backend import OpentronsOT2Backend
from pylabrobot.resources import no_volume_tracking
from pylabrobot.resources.celltreat import celltreat_96_wellplate_350uL_Fb
from pylabrobot.resources.opentrons import OTDeck, opentrons_96_tiprack_300ul

from .conftest import emulator_lines, lease_free, moves


def offline_tip_rack_definition() -> None:
    """PyLabRobot downloads Opentrons' tip rack definition from GitHub into /tmp/<name>.json unless that file is
    there; this machine has no internet, so the same definition comes from Opentrons' shared-data package."""
    path = Path("/tmp/opentrons_96_tiprack_300ul.json")
    if not path.exists():
        from opentrons_shared_data.labware import load_definition

        path.write_text(json.dumps(load_definition("opentrons_96_tiprack_300ul", 1)))


def test_pylabrobot_pick_up_aspirate_dispense_drop(runner, stack, bus):
    offline_tip_rack_definition()

    async def session() -> None:
        handler = LiquidHandler(backend=OpentronsOT2Backend(host="127.0.0.1", port=runner.port), deck=OTDeck())
        await handler.setup()
        tips = opentrons_96_tiprack_300ul("tips")
        plate = celltreat_96_wellplate_350uL_Fb("plate")
        handler.deck.assign_child_at_slot(tips, 1)
        handler.deck.assign_child_at_slot(plate, 2)
        with no_volume_tracking():
            await handler.pick_up_tips(tips["A1"], use_channels=[0])
            await handler.aspirate(plate["A1"], vols=[50], use_channels=[0])
            await handler.dispense(plate["A2"], vols=[50], use_channels=[0])
            await handler.drop_tips(tips["A1"], use_channels=[0])
        await handler.stop()

    _lines, mark = emulator_lines(stack)
    asyncio.run(session())
    lines, _ = emulator_lines(stack, mark)
    plunger = [line for line in moves(lines) if "G0 B" in line]
    assert len(plunger) >= 2, lines
    assert any("Z" in line for line in moves(lines))
    assert runner.get("/runs")["data"] == []  # PyLabRobot's stop deleted its run (DELETE /runs/{id}) ...
    lease_free(bus)  # ... which stopped it: the robot is free again

