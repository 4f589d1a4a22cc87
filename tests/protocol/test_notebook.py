"""`benchbus_ot2.get_protocol_api`: a notebook drives the robot with Opentrons' context while other clients (the
dashboard, `benchbus status`) keep working; a location out of reach is an Opentrons error, not a hang."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchbus import BusError
from benchbus.testing import wait_until

BENCHBUS = Path(sys.executable).parent / "benchbus"


def test_a_notebook_context_runs_while_status_and_a_dashboard_watch(stack, client_named):
    import benchbus_ot2

    dashboard = client_named("dashboard")
    positions: list[dict] = []
    dashboard.subscribe(dashboard.topic("smoothie", "state", "position"), lambda _t, data, _m: positions.append(data))
    protocol = benchbus_ot2.get_protocol_api("2.13", broker=stack.broker_address, device=stack.device)
    try:
        _topic, lease = dashboard.wait_for(dashboard.topic("smoothie", "state", "lease"),
                                           lambda _t, d: (d or {}).get("holder") is not None)
        assert lease["holder"].startswith("dev/ot2-")
        tips = protocol.load_labware("opentrons_96_tiprack_300ul", 1)
        plate = protocol.load_labware("benchbus_96_wellplate_360ul_flat", 2)
        p300 = protocol.load_instrument("p300_single_gen2", "left", tip_racks=[tips])
        protocol.home()
        seen_before = len(positions)
        p300.pick_up_tip()
        p300.aspirate(50, plate["A1"])
        p300.dispense(50, plate["B1"])
        # the dashboard sees the robot move, live (each state/position is on its way as the call returns)
        wait_until(lambda: len(positions) > seen_before + 5, 10, "the dashboard's position updates")
        status = subprocess.run([str(BENCHBUS), "status", "--broker", stack.broker_address, "--device", stack.device],
                                capture_output=True, text=True, timeout=30)
        assert "smoothie" in status.stdout and "gpio" in status.stdout, status.stdout + status.stderr
        here = dashboard.call("smoothie", "position", {})["B"]  # reads need no lease
        wait_until(lambda: positions[-1]["B"] == here, 10, "the last position published is the one read")
        with pytest.raises(BusError, match="holds the motion lease|lease"):
            dashboard.call("smoothie", "move", {"target": {"X": 100}})  # motion is the notebook's
        with pytest.raises(benchbus_ot2.MotionError, match="out of the robot's reach"):
            p300.move_to(plate["A1"].top(-80))
        protocol.home()  # Opentrons forgets the position after a failed move, on the robot as here
        p300.drop_tip()
    finally:
        benchbus_ot2.disconnect()
    dashboard.wait_for(dashboard.topic("smoothie", "state", "lease"), lambda _t, d: (d or {}).get("holder") is None)


def test_contexts_on_the_bus_are_live_not_simulating(stack):
    """Protocols branch on is_simulating(); on the bus backend both the legacy context and the engine's say no."""
    import benchbus_ot2

    try:
        for version in ("2.13", "2.15"):
            protocol = benchbus_ot2.get_protocol_api(version, broker=stack.broker_address, device=stack.device)
            assert str(protocol.api_version) == version and protocol.is_simulating() is False
            assert protocol.loaded_instruments == {}  # nothing loaded yet; the pipettes are the board's to report
    finally:
        benchbus_ot2.disconnect()
