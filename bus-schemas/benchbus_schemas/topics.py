"""Topic names: benchbus/<device>/<service>/{$state,state/<name>,event/<name>,cmd/<name>}."""
from __future__ import annotations

ROOT = "benchbus"
KINDS = ("state", "event", "cmd")


def service_prefix(device: str, service: str) -> str:
    return f"{ROOT}/{device}/{service}"


def lifecycle_topic(device: str, service: str) -> str:
    return f"{service_prefix(device, service)}/$state"


def topic(device: str, service: str, kind: str, name: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}; expected one of {KINDS}")
    return f"{service_prefix(device, service)}/{kind}/{name}"


def reply_topic(device: str, client_id: str) -> str:
    """Where a client's replies arrive (sent as the MQTT 5 Response Topic of its requests)."""
    return f"{ROOT}/{device}/_client/{client_id}/reply"


def parse(topic_name: str) -> tuple[str, str, str, str] | None:
    """Split a benchbus topic into (device, service, kind, name); kind is `$state` for lifecycle topics."""
    parts = topic_name.split("/")
    if len(parts) < 4 or parts[0] != ROOT:
        return None
    if len(parts) == 4 and parts[3] == "$state":
        return parts[1], parts[2], "$state", ""
    if len(parts) >= 5 and parts[3] in KINDS:
        return parts[1], parts[2], parts[3], "/".join(parts[4:])
    return None
