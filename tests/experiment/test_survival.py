"""kill -9 of the experiment service mid-run, again and again: every dose decision stored is applied exactly once.
The truth is the emulator's pump board: the programs it applied, compared with the decisions in the service's
state file (its log) - no double dose, no missed decision."""
from __future__ import annotations

import json
import random
import time

from benchbus.testing import wait_until

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
            time.sleep(chooser.uniform(1.5, 4.0))  # the point: a kill at a random moment of the run
            service.kill9()
            service.start()
            bus.wait_for(state_topic, lambda _t, d: d.get("state") == "ready" and d.get("pid") == service.process.pid,
                         20)
        doses = rig_emulator.emulator.pump_events
        after_kills = len(doses())
        wait_until(lambda: len(doses()) >= after_kills + 5, 60, "five pump programs after the last restart")
        bus.call("experiment", "pause", {"name": "survive"}, timeout=10)
        wait_until(lambda: not bus.call("experiment", "status", {"name": "survive"}, timeout=10)["pending_decisions"],
                   20, "no decision in doubt", every=0.2)
    finally:
        service.close()
    assert doses_match(stack.data_dir, rig_emulator.emulator, list(TURBIDO) + list(CHEMO)) >= 20


def doses_match(data_dir, emulator, vials) -> int:
    """Every dose decision in the service's log against the programs the pump board applied; returns the count."""
    log = json.loads((data_dir / "state.json").read_text())["log"]
    events = emulator.pump_events()
    doses = 0
    for vial in vials:
        decided = [e["influx"] for e in log if e["vial"] == vial and e["influx"] not in (None, "0")]
        outcomes = {e["outcome"] for e in log if e["vial"] == vial and e["influx"] not in (None, "0")}
        applied = [e.spec for e in events if e.pump == vial]
        assert outcomes <= {"sent", "applied", "resent"}, (vial, outcomes)
        assert applied == decided, (vial, applied, decided)  # same doses, same order: none twice, none missed
        doses += len(decided)
    return doses


def test_a_whole_stack_restart_mid_run_resumes_where_it_was(stack, rig_emulator, bus):
    """Experiment (kill -9), scheduler, samd-bridge and calibration-store all go; the emulator's cultures grow on."""
    service = stack(process=True)
    state_topic = f"benchbus/{bus.device}/experiment/$state"
    try:
        bus.wait_for(state_topic, lambda _t, d: d.get("state") == "ready", 20)
        rig_emulator.set_od(TURBIDO, 0.3)
        groups = [turbidostat_group(TURBIDO, 0.2, 0.26), chemostat_group(CHEMO, 0.2)]
        bus.call("experiment", "start", {"definition": definition("stack", groups)}, timeout=10)
        doses = rig_emulator.emulator.pump_events
        wait_until(lambda: len(doses()) >= 5, 60, "five pump programs applied before the kill")
        before_h = bus.call("experiment", "status", {"name": "stack"}, timeout=10)["elapsed_h"]
        service.kill9()
        stack.stop_rig_services()
        down_h = rig_emulator.model_h()
        rig_emulator.wait_model_h(down_h + 0.4, timeout=30)  # with nothing running but the cultures
        stack.start_rig_services()
        restart(service, bus, state_topic)
        away_h = rig_emulator.model_h() - down_h
        assert away_h > 0.3
        status = bus.call("experiment", "status", {"name": "stack"}, timeout=10)
        assert status["status"] == "running" and status["elapsed_h"] > before_h + away_h  # resumed, its clock kept
        resumed_with = len(doses())
        wait_until(lambda: len(doses()) >= resumed_with + 5, 60, "five more pump programs after the restart")
        bus.call("experiment", "pause", {"name": "stack"}, timeout=10)
        wait_settled(bus, "stack")
    finally:
        service.close()
    assert doses_match(stack.data_dir, rig_emulator.emulator, list(TURBIDO) + list(CHEMO)) >= 10


def test_a_batch_in_doubt_after_a_kill_is_resolved_by_the_scheduler_s_stored_value(stack, rig_emulator, bus):
    """The sides of the crash window, made exactly: killed after publishing (the scheduler holds the batch's pump
    list: never re-sent), killed before publishing (a stored batch the scheduler never saw: sent once), and killed
    after publishing with the stored value moved on since (resent with its key: the scheduler sends nothing)."""
    service = stack(process=True)
    state_topic = f"benchbus/{bus.device}/experiment/$state"
    path = stack.data_dir / "state.json"
    try:
        bus.wait_for(state_topic, lambda _t, d: d.get("state") == "ready", 20)
        rig_emulator.set_od([0], 0.9)
        # a wide band: after its first dose the vial needs ~5 emulated hours (13 s) before the next one
        group = turbidostat_group([0], 0.2, 0.8, max_bolus_s=60.0)
        bus.call("experiment", "start", {"definition": definition("doubt", [group])}, timeout=10)
        wait_until(lambda: [e for e in rig_emulator.emulator.pump_events() if e.pump == 0], 20, "the first dose")
        wait_settled(bus, "doubt")
        service.kill9()
        before = len(rig_emulator.emulator.pump_events())
        # 1) killed after publishing: the dose is the scheduler's stored pump value; its reply never stored
        data = json.loads(path.read_text())
        dose = next(b for b in reversed(data["batches"]) if b["decisions"][0]["action"] == "dilute")
        dose["phase"], dose["command_id"] = "sending", None
        path.write_text(json.dumps(data))
        restart(service, bus, state_topic)
        wait_settled(bus, "doubt")
        assert [e.spec for e in rig_emulator.emulator.pump_events()[before:] if e.pump == 0] == []  # not again
        # 2) killed before publishing: a stored dose the scheduler never saw
        service.kill9()
        data = json.loads(path.read_text())
        unseen = dict(dose, batch_id="unseen", phase="sending", command_id=None, attempts=0)
        unseen["pump"] = ["--"] * 48
        unseen["pump"][0], unseen["pump"][16] = "3.21", "8.21"
        unseen["decisions"] = [dict(dose["decisions"][0], decision_id="doubt-unseen", influx="3.21")]
        data["batches"].append(unseen)
        path.write_text(json.dumps(data))
        restart(service, bus, state_topic)
        wait_settled(bus, "doubt")
        resent = [e.spec for e in rig_emulator.emulator.pump_events()[before:] if e.pump == 0]
        # 3) killed after publishing, and the stored value moved on before the restart read it (another client's
        # pump for a vial of its own here; in CI, the take still in the scheduler's fsync): the batch's key tells
        service.kill9()
        data = json.loads(path.read_text())
        taken = next(b for b in data["batches"] if b["batch_id"] == "unseen")
        taken["phase"], taken["command_id"] = "sending", None
        path.write_text(json.dumps(data))
        another_vial = ["--"] * 48
        another_vial[5] = "1.5"
        bus.call("scheduler", "command", {"param": "pump", "value": another_vial, "immediate": True}, timeout=10)
        restart(service, bus, state_topic)
        wait_settled(bus, "doubt")
        after_key = [e.spec for e in rig_emulator.emulator.pump_events()[before:] if e.pump == 0]
    finally:
        service.close()
    assert resent == ["3.21"]
    assert after_key == ["3.21"], "a batch the scheduler took is never sent twice"


def restart(service, bus, state_topic: str) -> None:
    service.start()
    bus.wait_for(state_topic, lambda _t, d: d.get("state") == "ready" and d.get("pid") == service.process.pid, 20)


def wait_settled(bus, name: str, timeout: float = 20.0) -> None:
    """No decision in doubt, and two broadcasts later (an immediate command is applied before a cycle ends)."""
    wait_until(lambda: not bus.call("experiment", "status", {"name": name}, timeout=10)["pending_decisions"],
               timeout, "no decision in doubt")
    for _ in range(2):
        bus.wait_for(bus.topic("scheduler", "event", "broadcast"), timeout=10)
