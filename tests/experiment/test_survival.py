"""kill -9 of the experiment service mid-run, again and again: every dose decision stored is applied exactly once.
The truth is the emulator's pump board: the programs it applied, compared with the decisions in the service's
state file (its log) - no double dose, no missed decision."""
from __future__ import annotations

import json
import random
import time

from .conftest import chemostat_group, definition, turbidostat_group

TURBIDO, CHEMO = range(0, 6), range(6, 8)


def test_kill_9_mid_run_never_doses_twice_and_never_forgets(stack, rig_emulator, bus):
    service = stack(process=True)
    try:
        state_topic = f"benchbus/{bus.device}/experiment/$state"
        bus.wait_for(state_topic, lambda _t, d: d.get("state") == "ready", 20)
        rig_emulator.set_od(TURBIDO, 0.3)
        # a narrow band: a dose every ~40 emulated minutes per vial, so kills land among many decisions
        groups = [turbidostat_group(TURBIDO, 0.2, 0.26), chemostat_group(CHEMO, 0.2)]
        bus.call("experiment", "start", {"definition": definition("survive", groups)}, timeout=10)
        chooser = random.Random(20)
        for _kill in range(4):
            time.sleep(chooser.uniform(1.5, 4.0))
            service.kill9()
            service.start()
            bus.wait_for(state_topic, lambda _t, d: d.get("state") == "ready" and d.get("pid") == service.process.pid,
                         20)
        time.sleep(3.0)
        bus.call("experiment", "pause", {"name": "survive"}, timeout=10)
        deadline = time.monotonic() + 20
        while bus.call("experiment", "status", {"name": "survive"}, timeout=10)["pending_decisions"]:
            assert time.monotonic() < deadline, "decisions still in doubt"
            time.sleep(0.2)
    finally:
        service.close()
    log = json.loads((stack.data_dir / "state.json").read_text())["log"]
    events = rig_emulator.emulator.pump_events()
    doses = 0
    for vial in list(TURBIDO) + list(CHEMO):
        decided = [e["influx"] for e in log if e["vial"] == vial and e["influx"] not in (None, "0")]
        outcomes = {e["outcome"] for e in log if e["vial"] == vial and e["influx"] not in (None, "0")}
        applied = [e.spec for e in events if e.pump == vial]
        assert outcomes <= {"sent", "applied", "resent"}, (vial, outcomes)
        assert applied == decided, (vial, applied, decided)  # same doses, same order: none twice, none missed
        doses += len(decided)
    assert doses >= 20
