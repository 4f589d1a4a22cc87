"""FastProperties decodes every packet exactly as paho's own Properties does: same values, same refusals."""
from __future__ import annotations

import pytest
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import benchbus.connection  # noqa: F401 - installs the speedup, as every service does
from benchbus.paho_speedups import FastProperties


def encoded(packet_type: int, **values: object) -> bytes:
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return bytes(props.pack())


def raw(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return bytes([len(body)]) + body


def decoded(cls: type[Properties], packet_type: int, data: bytes) -> tuple[str, object]:
    try:
        props, length = cls(packet_type).unpack(data)
    except Exception as exc:  # the refusal itself is what is compared
        return type(exc).__name__, str(exc)
    return "ok", ({k: v for k, v in vars(props).items() if k not in {"packetType", "types", "names", "properties"}},
                  length, str(props), props.json(), props.isEmpty())


CASES = [
    ("nothing", PacketTypes.PUBLISH, b"\x00"),
    ("request", PacketTypes.PUBLISH, encoded(PacketTypes.PUBLISH, ResponseTopic="benchbus/d/_client/dev/x/reply",
                                             CorrelationData=bytes(range(16)), MessageExpiryInterval=5)),
    ("every publish property", PacketTypes.PUBLISH, encoded(
        PacketTypes.PUBLISH, PayloadFormatIndicator=1, MessageExpiryInterval=2**32 - 1, TopicAlias=7,
        ResponseTopic="r/é", CorrelationData=b"", UserProperty=[("on_behalf_of", "alice"), ("a", "b")],
        SubscriptionIdentifier=[1, 268435455], ContentType="application/json")),
    ("puback with reason", PacketTypes.PUBACK, encoded(PacketTypes.PUBACK, ReasonString="not authorized")),
    ("connack", PacketTypes.CONNACK, encoded(PacketTypes.CONNACK, ReceiveMaximum=20, TopicAliasMaximum=10,
                                             MaximumPacketSize=1000, AssignedClientIdentifier="x")),
    ("property of another packet type", PacketTypes.PUBLISH, raw(b"\x21\x00\x14")),  # Receive Maximum
    ("single property twice", PacketTypes.PUBLISH, raw(b"\x02\x00\x00\x00\x05", b"\x02\x00\x00\x00\x06")),
    ("value out of range", PacketTypes.PUBLISH, raw(b"\x01\x02")),  # Payload Format Indicator 2
    ("topic alias zero", PacketTypes.PUBLISH, raw(b"\x23\x00\x00")),
    ("unknown identifier", PacketTypes.PUBLISH, raw(b"\x7f\x00")),
]


@pytest.mark.parametrize(("packet_type", "data"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decodes_as_paho_does(packet_type: int, data: bytes) -> None:
    assert decoded(FastProperties, packet_type, data) == decoded(Properties, packet_type, data)


def test_set_by_hand_as_paho_does() -> None:
    for cls in (FastProperties, Properties):
        props = cls(PacketTypes.PUBLISH)
        props.UserProperty = ("a", "1")
        props.UserProperty = ("b", "2")
        assert props.UserProperty == [("a", "1"), ("b", "2")]
    with pytest.raises(Exception, match="does not apply to packet type"):
        FastProperties(PacketTypes.PUBLISH).ReasonString = "x"
    with pytest.raises(Exception, match="must be one of"):
        FastProperties(PacketTypes.PUBLISH).NoSuchThing = 1


def test_installed_for_decoding() -> None:
    assert _packet.Properties is FastProperties
