"""Topic names: benchbus/<device>/<service>/{$state,$audit,state/<name>,event/<name>,cmd/<name>/<principal>}.

A request's topic ends with its caller's principal (the broker username); the broker's ACL lets a user publish only
under its own name, so a service reads who called from the topic, which the broker proved, never from a claim.
Replies go to benchbus/<device>/_client/<principal>/<session>/reply, which only that principal may read.
"""
from __future__ import annotations

import re

ROOT = "benchbus"
KINDS = ("state", "event", "cmd")
CLIENTS = "_client"
DEV_PRINCIPAL = "dev"  # every caller on the anonymous development broker (`benchbus up`)
# A principal or session is one plain topic level: no wildcards, no separators, none of the reserved level names.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
_RESERVED = {"$state", "$audit", "state", "event", "cmd", CLIENTS, "reply"}


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name)) and name not in _RESERVED


def service_prefix(device: str, service: str) -> str:
    return f"{ROOT}/{device}/{service}"


def lifecycle_topic(device: str, service: str) -> str:
    return f"{service_prefix(device, service)}/$state"


def topic(device: str, service: str, kind: str, name: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}; expected one of {KINDS}")
    return f"{service_prefix(device, service)}/{kind}/{name}"


def audit_topic(device: str, service: str) -> str:
    """Where a service publishes one AuditRecord per handled command (not retained)."""
    return f"{service_prefix(device, service)}/$audit"


def command_topic(device: str, service: str, command: str, principal: str) -> str:
    return f"{topic(device, service, 'cmd', command)}/{principal}"


def reply_namespace(device: str, principal: str) -> str:
    """Every reply to `principal` lies under this prefix; the ACL lets only that principal read it."""
    return f"{ROOT}/{device}/{CLIENTS}/{principal}/"


def reply_topic(device: str, principal: str, session: str) -> str:
    """Where one client session's replies arrive (sent as the MQTT 5 Response Topic of its requests)."""
    return f"{reply_namespace(device, principal)}{session}/reply"


def parse_command(topic_name: str) -> tuple[str, str, str, str] | None:
    """(device, service, command, principal) of a request topic, or None when it is not one."""
    parts = topic_name.split("/")
    if len(parts) != 6 or parts[0] != ROOT or parts[3] != "cmd" or not valid_name(parts[5]):
        return None
    return parts[1], parts[2], parts[4], parts[5]


def session_of(response_topic: str, device: str, principal: str) -> str | None:
    """The session of a response topic inside `principal`'s own reply namespace; None when it lies elsewhere."""
    prefix = reply_namespace(device, principal)
    if not response_topic.startswith(prefix) or not response_topic.endswith("/reply"):
        return None
    session = response_topic[len(prefix):-len("/reply")]
    return session if valid_name(session) else None


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
