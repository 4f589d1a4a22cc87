"""What one bus message becomes in the database: pure functions, no MQTT and no SQL here.

A scheduler broadcast becomes one reading per vial and param (raw value, calibrated value where a fit made one, the
fit's name) plus one broadcast row (cycle, timing, status); an `$audit` record one audit row; an event one event row;
a `$state` one state row. Each carries the key that makes a redelivered message a no-op (readings: device, param,
vial, time; audit and `$state`: a digest of topic and payload; events: a digest checked only for redeliveries,
since two identical events can both be real).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Iterator
from typing import Any, NamedTuple

from pydantic import ConfigDict, ValidationError

from benchbus_schemas import AuditBatch, AuditRecord, ServiceState, topics
from benchbus_schemas.scheduler import Broadcast


class AuditIn(AuditRecord):
    """The contract's audit record (issue 15), read tolerantly: a newer runtime's extra fields (here or in `error`)
    do not cost the record."""

    model_config = ConfigDict(extra="ignore")
    error: dict[str, Any] | None = None  # type: ignore[assignment]  # any error shape a newer runtime sends


class AuditBatchIn(AuditBatch):
    """`$audit`'s payload: the records of one short window."""

    model_config = ConfigDict(extra="ignore")
    records: list[AuditIn]  # type: ignore[assignment]  # the tolerant record in place of the strict one


class Reading(NamedTuple):
    device: str
    param: str
    vial: int
    time: float
    raw: float | None
    calibrated: float | None
    fit: str | None


@dataclass
class Block:
    """One param of one broadcast: a value per vial (kept as lists: a broadcast is 80+ readings, and the store turns
    a block into rows in C through zip, not one Python object per reading)."""

    device: str
    param: str
    time: float
    raw: list[float | None]
    calibrated: list[float | None] | None
    fit: str | None

    def readings(self) -> Iterator[Reading]:
        calibrated = self.calibrated or [None] * len(self.raw)
        for vial, (raw, cal) in enumerate(zip(self.raw, calibrated, strict=True)):
            yield Reading(self.device, self.param, vial, self.time, raw, cal, self.fit)


@dataclass
class Rows:
    """Everything one batch of messages writes."""

    blocks: list[Block] = field(default_factory=list)
    broadcasts: list[dict] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)  # digest -> body
    events: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    states: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.blocks) + len(self.broadcasts) + len(self.events) + len(self.audit) + len(self.states)

    @property
    def readings(self) -> list[Reading]:
        """Every reading, one by one (for tests and tools; the store writes the blocks)."""
        return [reading for block in self.blocks for reading in block.readings()]


@dataclass
class Skip:
    reason: str


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def number(text: Any) -> float | None:
    """A board value as a float; None for what is not a finite number (the raw text is in the event log anyway)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_time(value: str | float) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def add_broadcast(rows: Rows, device: str, payload: bytes) -> None:
    model = Broadcast.model_validate_json(payload)
    when = model.timestamp
    calibrated = model.calibrated
    for param, values in model.data.items():
        raw = [number(text) for text in values]
        own = calibrated.get(param)
        if own is not None and len(own) != len(raw):
            own = (own + [None] * len(raw))[:len(raw)]
        fit = model.calibration.get(param) if own is not None else None
        rows.blocks.append(Block(device, param, when, raw, own, fit))
    # Calibrated values with no raw param of the same name (OD from od_90, or od_90 and od_135) are a series of
    # their own: raw is empty there, the fit's name says what made them.
    for key, series in calibrated.items():
        if key not in model.data:
            rows.blocks.append(Block(device, key, when, [None] * len(series), list(series), model.calibration.get(key)))
    config_text = json.dumps(model.config, sort_keys=True, separators=(",", ":"))
    config_digest = digest(config_text)
    rows.configs[config_digest] = config_text
    rows.broadcasts.append({
        "device": device, "time": when, "cycle": model.cycle, "cycle_s": model.cycle_s,
        "broadcast_timing": model.broadcast_timing, "status": json.dumps(model.status),
        "errors": json.dumps(model.errors), "calibration": json.dumps(model.calibration),
        "config_digest": config_digest, "ip": model.ip[:100],
    })


def add_audit(rows: Rows, device: str, topic_name: str, payload: bytes, skip: set[str],
              service_principals: set[str]) -> Skip | None:
    """A `$audit` message is a batch of records (AuditBatch); each becomes one row, keyed by its own digest."""
    batch = AuditBatchIn.model_validate_json(payload)
    kept = 0
    for record in batch.records:
        principal = record.principal.removeprefix("benchbus-")
        if (f"{record.service}/{record.command}" in skip and principal in service_principals
                and not record.on_behalf_of):
            continue
        kept += 1
        rows.audit.append({
            "device": device, "time": parse_time(record.time), "service": record.service[:64],
            "command": record.command[:64], "principal": record.principal[:200],
            "on_behalf_of": record.on_behalf_of[:200] if record.on_behalf_of else None, "ok": record.ok,
            "error": json.dumps(record.error) if record.error is not None else None,
            "request": json.dumps(record.request) if record.request is not None else None,
            "duration_ms": record.duration_ms,
            "digest": digest(topic_name, record.model_dump_json().encode()),
        })
    return None if kept else Skip("internal")


def add_state(rows: Rows, device: str, service: str, topic_name: str, payload: bytes, received: float) -> None:
    state = ServiceState.model_validate_json(payload)
    when = parse_time(state.since) if state.since else received
    rows.states.append({"device": device, "service": service[:64], "time": when, "state": state.state,
                        "payload": payload.decode(), "digest": digest(topic_name, payload)})


TIME_KEYS = ("at", "time", "timestamp", "since")


def event_time(data: Any, received: float) -> float:
    """When the event happened: its own time field where it has one (`at`, `time`, `timestamp`, `since`; a
    redelivered event keeps its real time), else when the recorder received it."""
    if isinstance(data, dict):
        for key in TIME_KEYS:
            value = data.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and 1e9 < value < 1e11:
                return float(value)
            if isinstance(value, str):
                try:
                    return parse_time(value)
                except ValueError:
                    continue
    return received


def add_event(rows: Rows, device: str, service: str, name: str, topic_name: str, payload: bytes, received: float,
              redelivered: bool) -> None:
    text = payload.decode()
    data = json.loads(text or "null")  # refuse what is not JSON (the caller counts it as rejected)
    rows.events.append({"device": device, "service": service[:64], "name": name[:200],
                        "time": event_time(data, received), "payload": text, "digest": digest(topic_name, payload),
                        "redelivered": redelivered})


def add_message(rows: Rows, topic_name: str, payload: bytes, redelivered: bool, skip: set[str],
                service_principals: set[str], received: float | None = None) -> Skip | None:
    """Add one message's rows; a Skip says why nothing was added. Raises ValueError/ValidationError on bad input."""
    received = time.time() if received is None else received
    parsed = topics.parse(topic_name)
    parts = topic_name.split("/")
    if len(parts) == 4 and parts[0] == topics.ROOT and parts[3] == "$audit":
        return add_audit(rows, parts[1], topic_name, payload, skip, service_principals)
    if parsed is None:
        return Skip("not a benchbus topic")
    device, service, kind, name = parsed
    if not payload:
        return Skip("empty payload")  # a cleared retained message
    if kind == "$state":
        add_state(rows, device, service, topic_name, payload, received)
    elif kind == "event" and service == "scheduler" and name == "broadcast":
        add_broadcast(rows, device, payload)
    elif kind == "event":
        add_event(rows, device, service, name, topic_name, payload, received, redelivered)
    else:
        return Skip(f"{kind} is not recorded")
    return None


BAD_INPUT = (ValueError, ValidationError, UnicodeDecodeError)
