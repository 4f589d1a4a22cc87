"""The Smoothieboard emulator's JSON HTTP interface, for tests that run the emulator as a separate process.

`benchbus-smoothie-emulator --tcp PORT --control-port CPORT` (as `benchbus up` starts it) serves on 127.0.0.1:CPORT:

    GET  /state              {url, position, homed, engaged, halted, lines, moved_s}    lines: how many so far;
                             moved_s: wall seconds the axes spent moving (at the emulator's speedup)
    GET  /lines?since=N      {lines: [...], next: M}    the G-code log from line N on
    POST /fault {kind, count}    kind: silence, garble, drop_ok, limit_alarm or close
    POST /clear                  no faults armed
    POST /drop  {down_s}         the port closes and listens again
"""
from __future__ import annotations

from benchbus.control import serve_json_control

from .board import SmoothieEmulator


def snapshot(emulator: SmoothieEmulator) -> dict:
    return {"url": emulator.url, "position": emulator.position, "homed": dict(emulator.homed),
            "engaged": dict(emulator.engaged), "halted": emulator.halted.is_set(), "lines": len(emulator.lines),
            "moved_s": emulator.moved_s}


def serve_control(emulator: SmoothieEmulator, port: int, host: str = "127.0.0.1"):
    def lines(query: dict) -> dict:
        since = int(query.get("since", "0"))
        found = list(emulator.lines[since:])
        return {"lines": found, "next": since + len(found)}

    post = {
        "/fault": lambda body: emulator.inject(str(body["kind"]), int(body.get("count", 1))),
        "/clear": lambda _body: emulator.clear_faults(),
        "/drop": lambda body: emulator.drop_port(float(body.get("down_s", 0.5))),
    }
    return serve_json_control("smoothie-emulator", host, port,
                              get={"/state": lambda _query: snapshot(emulator), "/lines": lines}, post=post)
