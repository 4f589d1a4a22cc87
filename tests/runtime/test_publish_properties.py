"""Our own encoding of a request's and a reply's MQTT 5 properties gives the very bytes paho's Properties gives."""
from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchbus.connection import reply_properties, request_properties


def paho_request(topic: str, correlation: bytes, expiry: int, on_behalf_of: str | None) -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = topic
    props.CorrelationData = correlation
    if on_behalf_of:
        props.UserProperty = [("on_behalf_of", on_behalf_of)]
    props.MessageExpiryInterval = expiry
    return bytes(props.pack())


@pytest.mark.parametrize(("topic", "correlation", "expiry_s", "on_behalf_of", "expiry"), [
    ("benchbus/rig/_client/dev/cli-1/reply", bytes(range(16)), 4.2, None, 5),
    ("benchbus/rig/_client/gateway/web/reply", b"c" * 300, 0.001, "alice@lab", 1),  # length > 127: 2-byte prefix
    ("réponse/ünïcode", b"", 86_400.0, "Zoë", 86_400),
])
def test_request_properties_are_pahos_bytes(topic: str, correlation: bytes, expiry_s: float,
                                             on_behalf_of: str | None, expiry: int) -> None:
    packed = request_properties(topic, correlation, expiry_s, on_behalf_of).pack()
    assert packed == paho_request(topic, correlation, expiry, on_behalf_of)
    decoded = Properties(PacketTypes.PUBLISH)
    decoded.unpack(packed)
    assert (decoded.ResponseTopic, decoded.CorrelationData) == (topic, correlation)


def test_reply_properties_are_pahos_bytes() -> None:
    expected = Properties(PacketTypes.PUBLISH)
    expected.CorrelationData = b"\x00\xff" * 8
    assert reply_properties(b"\x00\xff" * 8).pack() == expected.pack()
    assert reply_properties(None).pack() == Properties(PacketTypes.PUBLISH).pack() == b"\x00"


def test_a_value_too_long_for_mqtt_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="65535"):
        request_properties("t", b"x" * 70_000, 1.0)
