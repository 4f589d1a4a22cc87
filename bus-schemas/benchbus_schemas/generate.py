"""Write the contract out: one JSON Schema per model under bus-schemas/json/, and bus-schemas/asyncapi.yaml.

    python -m benchbus_schemas.generate [--check] [OUTPUT_DIR]

`--check` writes nothing and exits 1 naming the stale files (tests/test_schemas_fresh.py runs the same check).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .envelope import AuditBatch, ErrorReply, OkReply, ServiceState
from .registry import TopicSpec, specs

DEFAULT_DIR = Path(__file__).resolve().parent.parent
ENVELOPES: dict[str, type[BaseModel]] = {"ServiceState": ServiceState, "AuditBatch": AuditBatch,
                                         "OkReply": OkReply, "ErrorReply": ErrorReply}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/$defs/{model}")


def _json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _schema_files() -> dict[str, str]:
    files = {f"json/envelope/{name}.json": _json_text(_schema(model)) for name, model in ENVELOPES.items()}
    for spec in specs():
        base = f"json/{spec.service}/{spec.kind}.{spec.name}"
        files[f"{base}.json"] = _json_text(_schema(spec.model))
        if spec.result is not None:
            files[f"{base}.result.json"] = _json_text(_schema(spec.result))
    return files


def _channel_address(spec: TopicSpec) -> str:
    suffix = "/{principal}" if spec.kind == "cmd" else ""
    return f"benchbus/{{device}}/{spec.service}/{spec.kind}/{spec.name}{suffix}"


def _component(schemas: dict[str, Any], name: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = _schema(model)
    for def_name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(def_name, definition)
    schemas[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def _ref_fix(text: str) -> str:
    return text.replace("#/$defs/", "#/components/schemas/")


def _asyncapi() -> str:
    device = {"device": {"description": "the configured device id (default: the host name)"}}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name, model in ENVELOPES.items():
        messages[name] = {"name": name, "payload": _component(schemas, name, model)}
    channels["lifecycle"] = {
        "address": "benchbus/{device}/{service}/$state",
        "parameters": {**device, "service": {"description": "the service's MQTT segment"}},
        "messages": {"ServiceState": {"$ref": "#/components/messages/ServiceState"}},
        "description": "Retained lifecycle state; the broker publishes `offline` as the last will.",
    }
    channels["audit"] = {
        "address": "benchbus/{device}/{service}/$audit",
        "parameters": {**device, "service": {"description": "the service's MQTT segment"}},
        "messages": {"AuditBatch": {"$ref": "#/components/messages/AuditBatch"}},
        "description": "A record per handled or refused command (batched over a short window): the broker-proven "
        "principal and the outcome.",
    }
    principal = {"principal": {"description": "the caller's broker username; the ACL pins it to the publisher"}}
    for spec in specs():
        cid = f"{spec.service}.{spec.kind}.{spec.name}".replace("/", "_")
        msg_name = f"{cid}.payload"
        messages[msg_name] = {"name": msg_name, "payload": _component(schemas, msg_name, spec.model)}
        channels[cid] = {
            "address": _channel_address(spec),
            "parameters": {**device, **principal} if spec.kind == "cmd" else dict(device),
            "messages": {msg_name: {"$ref": f"#/components/messages/{msg_name}"}},
            "description": spec.description,
        }
        op: dict[str, Any] = {
            "action": "send" if spec.kind == "cmd" else "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": spec.description,
        }
        if spec.kind == "state":
            op["bindings"] = {"mqtt": {"retain": True, "qos": 1}}
        if spec.timeout_s is not None:
            op["x-benchbus-timeout-s"] = spec.timeout_s  # how long a caller waits for the reply by default
        if spec.result is not None:
            result_name = f"{cid}.result"
            messages[result_name] = {"name": result_name, "payload": _component(schemas, result_name, spec.result)}
            op["reply"] = {
                "address": {"location": "$message.header#/responseTopic"},
                "messages": [{"$ref": f"#/components/messages/{result_name}"}],
            }
        operations[cid] = op
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "benchbus",
            "version": "0.1.0",
            "description": "Every topic of the benchbus MQTT 5 bus. Commands carry a Response Topic and Correlation "
            "Data; the reply is an OkReply whose `result` is the command's result payload, or an ErrorReply.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    return _ref_fix(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120))


def expected_files() -> dict[str, str]:
    files = _schema_files()
    files["asyncapi.yaml"] = _asyncapi()
    return files


def stale_files(directory: Path) -> list[str]:
    expected = expected_files()
    stale = [name for name, text in expected.items() if not (directory / name).is_file()
             or (directory / name).read_text() != text]
    json_dir = directory / "json"
    existing = {str(p.relative_to(directory)) for p in json_dir.rglob("*.json")} if json_dir.is_dir() else set()
    stale += sorted(existing - set(expected))
    return stale


def write(directory: Path) -> None:
    expected = expected_files()
    if (directory / "json").is_dir():
        for old in (directory / "json").rglob("*.json"):
            if str(old.relative_to(directory)) not in expected:
                old.unlink()
    for name, text in expected.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if any generated file is stale")
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.directory)
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    write(args.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
