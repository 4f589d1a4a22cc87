"""What one bus message becomes (pure: no broker, no database)."""
from __future__ import annotations

import json

import pytest

from benchbus_recorder.records import BAD_INPUT, Rows, add_message

from .conftest import VIALS, audit_record, broadcast, broadcast_topic

SERVICES = {"scheduler", "samd"}


def one(topic: str, payload, dup: bool = False, skip: set[str] | None = None, received: float = 1_800_000_000.0):
    rows = Rows()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    outcome = add_message(rows, topic, body, dup, skip if skip is not None else {"samd/transact"}, SERVICES, received)
    return rows, outcome


def test_a_broadcast_is_a_reading_per_vial_and_param_with_its_fit():
    rows, outcome = one(broadcast_topic("rig1"), broadcast(1_800_000_000.0, 7))
    assert outcome is None
    by_key = {(r.param, r.vial): r for r in rows.readings}
    assert len(rows.readings) == VIALS * 4
    temp = by_key[("temp", 2)]
    assert (temp.raw, temp.calibrated, temp.fit) == (1000 + 20 + 7 + 2, 30.2, "temp_fit_b")
    od90 = by_key[("od_90", 2)]
    assert od90.calibrated is None and od90.fit is None  # the od fit is its own series
    od = by_key[("od", 2)]
    assert od.raw is None and od.fit == "od_fit_a" and od.calibrated is not None
    assert rows.broadcasts[0]["cycle"] == 7 and rows.broadcasts[0]["device"] == "rig1"


def test_a_value_that_is_not_a_number_is_kept_as_missing():
    payload = broadcast(1_800_000_000.0, 1, calibrated=False)
    payload["data"]["od_90"][0] = "NaN"
    payload["data"]["od_90"][1] = "garbled"
    rows, _ = one(broadcast_topic("rig1"), payload)
    raws = {r.vial: r.raw for r in rows.readings if r.param == "od_90"}
    assert raws[0] is None and raws[1] is None and raws[2] == 1000 + 20 + 1


def test_the_scheduler_s_own_transacts_are_skipped_and_everyone_else_s_kept():
    rows, outcome = one("benchbus/rig1/samd/$audit", audit_record("samd", "transact", "benchbus-scheduler"))
    assert outcome is not None and rows.audit == []
    for principal, behalf in (("alice", None), ("gateway", "bob")):
        rows, outcome = one("benchbus/rig1/samd/$audit", audit_record("samd", "transact", principal,
                                                                      on_behalf_of=behalf))
        assert outcome is None and rows.audit[0]["principal"] == principal
    rows, outcome = one("benchbus/rig1/samd/$audit", audit_record("samd", "transact", "scheduler"), skip=set())
    assert outcome is None and len(rows.audit) == 1, "the skip is a setting"


def test_an_event_keeps_its_own_time_when_it_has_one():
    rows, _ = one("benchbus/rig1/samd/event/error", {"param": "od_90", "at": "2026-11-30T10:00:00Z"})
    assert rows.events[0]["time"] == 1_796_032_800.0
    rows, _ = one("benchbus/rig1/gpio/event/button", {"action": "pressed"}, received=1_800_000_123.0)
    assert rows.events[0]["time"] == 1_800_000_123.0


@pytest.mark.parametrize("topic,payload", [
    ("benchbus/rig1/scheduler/event/broadcast", b"{not json"),
    ("benchbus/rig1/scheduler/event/broadcast", {"data": {}}),
    ("benchbus/rig1/samd/$audit", {"service": "samd"}),
    ("benchbus/rig1/gpio/$state", {"state": "sleeping"}),
    ("benchbus/rig1/gpio/event/button", b"\xff\xfe"),
])
def test_bad_input_is_refused_with_a_reason(topic, payload):
    with pytest.raises(BAD_INPUT):
        one(topic, payload)


def test_what_is_not_recorded_says_why():
    assert one("benchbus/rig1/gpio/state/lights", {"on": True})[1].reason == "state is not recorded"
    assert one("other/topic", {})[1].reason == "not a benchbus topic"
    assert one("benchbus/rig1/gpio/$state", b"")[1].reason == "empty payload"
