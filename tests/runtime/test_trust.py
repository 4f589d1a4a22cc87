"""The runtime's side of trust, on the development broker: the principal comes from the topic, replies go only
into the caller's namespace, retained and empty commands never run, and every request leaves an audit record."""
from __future__ import annotations

import json
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from benchbus.demo import DemoService, DemoSettings
from benchbus.testing import wait_until


@pytest.fixture
def demo(make_settings, serve):
    return serve(DemoService, make_settings(DemoSettings))


class Raw:
    """A bare paho session that sees everything under the device (the development broker has no ACL)."""

    def __init__(self, broker, device):
        self.device = device
        self.seen: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, m: self._keep(m)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.subscribe(f"benchbus/{device}/#", options=SubscribeOptions(qos=1))
        assert subscribed.wait(5)

    def _keep(self, message):
        with self.lock:
            self.seen.append(message)

    def topics(self) -> list[str]:
        with self.lock:
            return [m.topic for m in self.seen]

    def audits(self) -> list[dict]:
        with self.lock:
            return [record for m in self.seen if m.topic.endswith("/$audit")
                    for record in json.loads(m.payload)["records"]]

    def send(self, topic: str, payload: bytes, response_topic: str | None = None, retain: bool = False) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if response_topic:
            props.ResponseTopic = response_topic
            props.CorrelationData = b"c"
        self.client.publish(topic, payload, qos=1, retain=retain, properties=props).wait_for_publish(5)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def raw(broker, device):
    session = Raw(broker, device)
    yield session
    session.close()


def test_the_principal_is_the_topics_last_level_and_is_audited(demo, raw, device):
    reply = f"benchbus/{device}/_client/alice/s1/reply"
    raw.send(f"benchbus/{device}/demo/cmd/echo/alice", b'{"text": "hi"}', response_topic=reply)
    wait_until(lambda: reply in raw.topics(), what="the reply in alice's namespace")
    wait_until(lambda: raw.audits(), what="an audit record")
    record = raw.audits()[0]
    assert record["principal"] == "alice" and record["command"] == "echo" and record["ok"] is True
    assert record["request"] == {"text": "hi"} and record["service"] == "demo"


@pytest.mark.parametrize("target", ["demo/state/counter", "gpio/state/door", "_client/bob/s1/reply",
                                    "_client/alice", "_client/alice/s1/reply/more"])
def test_a_reply_aimed_outside_the_callers_namespace_is_never_published(demo, raw, device, target):
    aimed = f"benchbus/{device}/{target}"
    raw.send(f"benchbus/{device}/demo/cmd/increment/alice", b"{}", response_topic=aimed)
    wait_until(lambda: raw.audits(), what="the refusal's audit record")
    record = raw.audits()[0]
    assert record["ok"] is False and record["error"]["code"] == "unauthorized"
    with raw.lock:
        on_aimed = [m.payload for m in raw.seen if m.topic == aimed]
        counters = [json.loads(m.payload)["value"] for m in raw.seen if m.topic.endswith("/demo/state/counter")]
    assert not any(b'"ok"' in payload for payload in on_aimed), "a reply was published on the chosen topic"
    assert demo.refused["foreign_response_topic"] == 1
    assert set(counters) <= {0}, "the refused command ran"


def test_a_retained_command_never_runs_again(make_settings, serve, raw, device, bus):
    raw.send(f"benchbus/{device}/demo/cmd/increment/dev", b"{}", retain=True)
    service = serve(DemoService, make_settings(DemoSettings))  # subscribes after: the broker hands it the retained copy
    wait_until(lambda: service.refused["retained"] == 1, what="the retained command refused")
    assert bus.call("demo", "increment")["value"] == 1  # the retained one never counted
    wait_until(lambda: [a for a in raw.audits() if not a["ok"]], what="the refusal's audit record")
    audits = [a for a in raw.audits() if not a["ok"]]
    assert "retained" in audits[0]["error"]["message"]


def test_an_empty_payload_is_invalid_not_an_empty_object(demo, raw, device):
    reply = f"benchbus/{device}/_client/dev/s{uuid.uuid4().hex[:4]}/reply"
    raw.send(f"benchbus/{device}/demo/cmd/increment/dev", b"", response_topic=reply)
    wait_until(lambda: reply in raw.topics(), what="the reply")
    body = json.loads(next(m.payload for m in raw.seen if m.topic == reply))
    assert body["ok"] is False and body["error"]["code"] == "invalid_request" and "empty" in body["error"]["message"]
    with raw.lock:
        assert all(json.loads(m.payload)["value"] == 0 for m in raw.seen if m.topic.endswith("/state/counter"))


def test_a_request_without_a_principal_level_is_ignored(demo, raw, device, bus):
    raw.send(f"benchbus/{device}/demo/cmd/increment", b"{}", response_topic=f"benchbus/{device}/_client/dev/x/reply")
    assert bus.call("demo", "increment")["value"] == 1  # the bare topic was never a command
    assert bus.principal == "dev"


def test_a_record_that_cannot_be_built_is_logged_and_auditing_goes_on(demo, raw, device, caplog, monkeypatch):
    build_record = demo._audit_record

    def fails_for_broken(at, context, outcome, raw_request, duration_ms):
        if b"broken" in raw_request:
            raise ValueError("cannot build this one")
        return build_record(at, context, outcome, raw_request, duration_ms)

    monkeypatch.setattr(demo, "_audit_record", fails_for_broken)
    reply = f"benchbus/{device}/_client/alice/s1/reply"
    raw.send(f"benchbus/{device}/demo/cmd/echo/alice", b'{"text": "broken"}', response_topic=reply)
    wait_until(lambda: "could not be built" in caplog.text, what="the lost record logged")
    raw.send(f"benchbus/{device}/demo/cmd/echo/alice", b'{"text": "fine"}', response_topic=reply)
    wait_until(lambda: raw.audits(), what="the next request's audit record")
    assert [a["request"] for a in raw.audits()] == [{"text": "fine"}]
    assert "echo from alice" in caplog.text
