"""paho's MQTT 5 Properties with its lookup tables made once, for decoding every packet paho receives.

paho decodes the properties of each packet it receives into a new Properties, whose __init__ builds its three
tables (names, types, the packet types each property may travel in) and whose __setattr__ and name lookups scan
all 27 names in Python: 18.5 us for a packet without properties, 86 us for a request's three (Response Topic,
Correlation Data, expiry) on this machine. callgrind: 37 % of a demo service's instructions per request.

FastProperties keeps paho's decoder and every one of its rules: known names only, a property only in the packet
types that allow it, the value ranges, repeatable properties collected in a list, a single one refused twice (a
test holds it to paho's own class, error for error). Only the lookups are dictionaries made once. It is installed
for decoding (paho.mqtt._packet) when paho is the version it was checked against; otherwise paho stays as it is.
"""
from __future__ import annotations

from typing import Any

import paho.mqtt
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

CHECKED_PAHO = ("2.2.",)  # releases whose Properties this was checked against

_TABLES = Properties(PacketTypes.PUBLISH)  # paho's own tables, made once
_IDS: dict[str, int] = {name.replace(" ", ""): ident for name, ident in _TABLES.names.items()}
_SPACED_NAMES: dict[int, str] = {ident: name for name, ident in _TABLES.names.items()}
_REPEATABLE = {11, 38}  # Subscription Identifier, User Property
_PRIVATE = {"packetType", "types", "names", "properties"}
# Names whose values paho range-checks, and repeatable ones: rare in our traffic, so left to paho's own __setattr__.
_PAHOS_OWN_CHECKS = {"ReceiveMaximum", "TopicAlias", "TopicAliasMaximum", "MaximumPacketSize",
                     "SubscriptionIdentifier", "RequestResponseInformation", "RequestProblemInformation",
                     "PayloadFormatIndicator", "UserProperty"}


class FastProperties(Properties):
    names = _TABLES.names
    types = _TABLES.types
    properties = _TABLES.properties

    def __init__(self, packetType: int):  # noqa: N803 - paho's name
        object.__setattr__(self, "packetType", packetType)

    def __setattr__(self, name: str, value: Any) -> None:
        name = name.replace(" ", "")
        if name in _PRIVATE:
            object.__setattr__(self, name, value)
            return
        if name in _PAHOS_OWN_CHECKS:
            super().__setattr__(name, value)  # type: ignore[no-untyped-call]
            return
        ident = _IDS.get(name)
        if ident is None:
            raise MQTTException(f"Property name must be one of {self.names.keys()}")
        if self.packetType not in self.properties[ident][1]:
            raise MQTTException(f"Property {name} does not apply to packet type {PacketTypes.Names[self.packetType]}")
        object.__setattr__(self, name, value)

    def getIdentFromName(self, compressedName: str) -> int:  # noqa: N802, N803 - paho's names
        return _IDS.get(compressedName, -1)

    def getNameFromIdent(self, identifier: int) -> str | None:  # noqa: N802 - paho's name
        return _SPACED_NAMES.get(identifier)

    def allowsMultiple(self, compressedName: str) -> bool:  # noqa: N802, N803 - paho's names
        return _IDS.get(compressedName, -1) in _REPEATABLE

    def clear(self) -> None:
        for name in [n for n in vars(self) if n not in _PRIVATE]:
            delattr(self, name)


def install() -> bool:
    """Decode received properties with FastProperties; True when installed (paho is a checked release)."""
    if _packet.Properties in (Properties, FastProperties) and paho.mqtt.__version__.startswith(CHECKED_PAHO):
        _packet.Properties = FastProperties  # type: ignore[misc]  # paho's module global, read at each decode
        return True
    return False
