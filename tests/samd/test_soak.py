"""1,000 transactions with 5 % random serial faults against the bridge as its own process (as it runs on the rig)."""
from __future__ import annotations

import json
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchbus import BusError
from benchbus.testing import wait_until
from benchbus_samd.emulator.boards import DEFAULT_PARAMS
from benchbus_samd.emulator.faults import FAULT_ERROR_KIND
from benchbus_samd.emulator.wire import LineTiming

FAST = LineTiming.fast()


def _env(url: str) -> dict:
    return {
        "BENCHBUS_SAMD_PORT": url,
        "BENCHBUS_SAMD_BAUDRATE": str(FAST.baudrate),
        "BENCHBUS_SAMD_REPLY_DELAY_S": str(FAST.reply_delay_s),
        "BENCHBUS_SAMD_HOLD_S": str(FAST.hold_s),
        "BENCHBUS_SAMD_HOLD_OVERRIDES": json.dumps({"stir": FAST.stir_hold_s}),
        # The emulator is a Python thread in the (loaded) test process: it can pause mid-reply for tens of ms, where
        # a board's UART never pauses. The soak counts faults, not speed, so its margins outlast such pauses: a gap
        # or a late reply is then only ever an injected fault.
        "BENCHBUS_SAMD_TIMEOUT_MARGIN_S": "1.0",
        "BENCHBUS_SAMD_REPLY_GAP_S": "0.5",
        "BENCHBUS_SAMD_STATE_INTERVAL_S": "0.1",
    }


@pytest.mark.slow
def test_thousand_transactions_with_five_percent_faults(tcp_emulator, spawn, bus, device):
    bridge = spawn(["python", "-m", "benchbus_samd"], segment="samd", env=_env(tcp_emulator.url_for_bridge))
    errors: list[dict] = []
    lock = threading.Lock()

    def keep(_topic, data, _message):
        with lock:
            errors.append(data)

    bus.subscribe(bus.topic("samd", "event", "error"), keep)
    tcp_emulator.inject_random(0.05)
    rng = random.Random(7)
    params = [p for p in DEFAULT_PARAMS]
    plan = [rng.choice(params) for _ in range(1000)]

    def one(param: str) -> str:
        values, fields_out, fields_in = DEFAULT_PARAMS[param]
        payload = {"param": param, "type": "r", "values": values, "fields_out": fields_out, "fields_in": fields_in}
        try:
            bus.call("samd", "transact", payload, timeout=30)
            return "ok"
        except BusError as error:
            return error.code

    with ThreadPoolExecutor(4) as pool:  # four callers at once: the line serves them one at a time
        outcomes = list(pool.map(one, plan))

    assert len(outcomes) == 1000
    assert set(outcomes) <= {"ok", "hardware_error"}, set(outcomes)  # every request answered, none lost
    tcp_emulator.clear_faults()
    state = bus.wait_for(bus.topic("samd", "state", "bus"),
                         lambda _t, d: d["ok"] + d["failed"] == 1000, 10)[1]
    assert state["ok"] == outcomes.count("ok")
    assert state["failed"] == outcomes.count("hardware_error")
    assert state["unavailable"] == 0
    for param, counters in state["params"].items():
        assert counters["requests"] == plan.count(param)
        assert counters["requests"] == counters["ok"] + counters["failed"] + counters["unavailable"]
        assert counters["attempts"] == counters["ok"] + sum(counters["errors"].values())
    failed_attempts = sum(sum(c["errors"].values()) for c in state["params"].values())
    # each injected fault was caught as what it is, and nothing else failed (per board and kind, so a mismatch
    # names the failure that was not injected, or the fault that was not caught)
    caught = Counter((param, kind) for param, c in state["params"].items() for kind, n in c["errors"].items()
                     for _ in range(n))
    injected = Counter((param, FAULT_ERROR_KIND[fault]) for param, fault in tcp_emulator.faults_fired)
    assert caught == injected, (caught - injected, injected - caught)
    assert len(errors) == failed_attempts
    # every successful transaction was applied exactly once on its board
    def unapplied() -> dict[str, tuple[int, int]]:  # param -> (the board's acks, the bridge's successes)
        pairs = {p: (tcp_emulator.acks(p), state["params"].get(p, {}).get("ok", 0)) for p in DEFAULT_PARAMS}
        return {p: pair for p, pair in pairs.items() if pair[0] != pair[1]}
    # (the last `a` reaches the emulator's thread a moment after its call returned)
    wait_until(lambda: not unapplied(), 5, "every successful transaction applied")
    assert not unapplied(), unapplied()
    assert bridge.process.poll() is None  # the service never restarted
    lifecycle = bus.wait_for(f"benchbus/{device}/samd/$state", lambda _t, d: True, 5)[1]
    assert lifecycle["state"] == "ready" and lifecycle["pid"] == bridge.pid
