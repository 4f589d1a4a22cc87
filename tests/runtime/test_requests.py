"""Request/reply through the runtime, against the real broker."""
import json
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchbus import BusClient, BusError
from benchbus.demo import DemoService, DemoSettings


@pytest.fixture
def demo(make_settings, serve):
    return serve(DemoService, make_settings(DemoSettings))


def raw_request(broker, device, command, payload: bytes, timeout=5.0):
    """Send bytes exactly as given (no client helper), return the decoded reply."""
    reply_topic = f"benchbus/{device}/_client/dev/raw-{uuid.uuid4().hex[:6]}/reply"
    got = threading.Event()
    replies = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, m: (replies.append((m.payload, m.properties.CorrelationData)), got.set())
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(reply_topic, qos=1)[0]
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_topic
    props.CorrelationData = b"corr-1"
    client.publish(f"benchbus/{device}/demo/cmd/{command}/dev", payload, qos=1, properties=props).wait_for_publish()
    assert got.wait(timeout), "no reply"
    client.loop_stop()
    client.disconnect()
    body, correlation = replies[0]
    assert correlation == b"corr-1"
    return json.loads(body)


def test_round_trip(demo, bus):
    assert bus.call("demo", "echo", {"text": "hello", "count": 3}) == {"text": "hello", "count": 3}


def test_schema_violation_names_the_field(demo, bus):
    with pytest.raises(BusError) as caught:
        bus.call("demo", "echo", {"text": "x", "count": 0})
    assert caught.value.code == "invalid_request"
    assert "count" in caught.value.message
    assert caught.value.detail["errors"][0]["field"] == "count"


def test_unknown_field_is_refused_by_name(demo, bus):
    with pytest.raises(BusError) as caught:
        bus.call("demo", "echo", {"text": "x", "colour": "red"})
    assert caught.value.code == "invalid_request" and "colour" in caught.value.message


def test_invalid_json_gets_invalid_request(demo, broker, device):
    reply = raw_request(broker, device, "echo", b"{not json")
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_request"
    assert "JSON" in reply["error"]["message"]


def test_unknown_command_gets_a_reply(demo, bus):
    with pytest.raises(BusError) as caught:
        bus.call("demo", "launch_rockets", {})
    assert caught.value.code == "not_found"
    assert "echo" in caught.value.message  # it lists what is known


def test_handler_exception_is_internal_and_service_survives(demo, bus):
    with pytest.raises(BusError) as caught:
        bus.call("demo", "fail", {"message": "kaput"})
    assert caught.value.code == "internal" and "kaput" in caught.value.message
    assert bus.call("demo", "echo", {"text": "still here"})["text"] == "still here"


def test_request_without_response_topic_is_handled(demo, bus, broker, device):
    """Fire-and-forget: no reply possible, but the command still runs."""
    seen = threading.Event()
    bus.subscribe(f"benchbus/{device}/demo/event/ticked", lambda *_: seen.set())
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(f"benchbus/{device}/demo/cmd/increment/dev", b"{}", qos=1).wait_for_publish()
    assert seen.wait(5)
    client.loop_stop()
    client.disconnect()
    assert bus.call("demo", "increment")["value"] == 2


def test_retained_state_and_events(demo, bus, device):
    _topic, first = bus.wait_for(f"benchbus/{device}/demo/state/counter")
    assert first == {"value": 0}
    events = []
    arrived = threading.Event()
    bus.subscribe(f"benchbus/{device}/demo/event/ticked", lambda _t, d, _m: (events.append(d), arrived.set()))
    bus.call("demo", "increment")
    _topic, now = bus.wait_for(f"benchbus/{device}/demo/state/counter", lambda _t, d: d["value"] == 1)
    assert now == {"value": 1}
    assert arrived.wait(5)
    assert events == [{"value": 1, "extra": {}}]


def test_lifecycle_state_is_ready_with_version_pid_since(demo, bus, device):
    _topic, state = bus.wait_for(f"benchbus/{device}/demo/$state", lambda _t, d: d["state"] == "ready")
    assert state["pid"] > 0 and state["version"] and state["since"].endswith("Z")


def test_thousand_concurrent_requests_from_several_clients(demo, broker, device):
    clients = [BusClient(device, broker.settings(), name=f"c{i}") for i in range(5)]
    for client in clients:
        client.start()
    answers: dict[str, list] = {c.name: [] for c in clients}
    errors = []

    def worker(client, start):
        for n in range(start, start + 100):
            try:
                reply = client.call("demo", "echo", {"text": f"{client.name}:{n}"}, timeout=30)
                answers[client.name].append(reply["text"])
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c, k * 100)) for c in clients for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for client in clients:
        client.close()
    assert errors == []
    for name, texts in answers.items():
        assert len(texts) == 200
        assert all(t.startswith(f"{name}:") for t in texts), "a reply reached the wrong client"
        assert sorted(int(t.split(":")[1]) for t in texts) == list(range(200))
