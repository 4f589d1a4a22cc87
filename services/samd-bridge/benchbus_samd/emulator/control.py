"""The SAMD emulator's JSON HTTP interface on 127.0.0.1:PORT, for tests that run the emulator as a separate process:

    GET  /state                  boards (staged, applied, acks), pumps running, frames, faults fired, ignored frames
    GET  /frames?param=P         every frame that board understood, oldest first
    GET  /culture                {model_s, vials}: each vial's true state (with --calibrations)
    POST /fault {param, kind, probability, count}
    POST /clear                  no faults armed
    POST /drop  {down_s}         the port closes and comes back
"""
from __future__ import annotations

from benchbus.control import serve_json_control

from .line import SamdEmulator


def serve_control(emulator: SamdEmulator, port: int):
    def frames(query: dict) -> dict:
        return {"frames": [{"t": f.t, "param": f.param, "type": f.type, "values": f.values}
                           for f in emulator.frames(query.get("param"))]}

    post = {
        "/fault": lambda body: emulator.inject(body["param"], body["kind"], float(body.get("probability", 1.0)),
                                               body.get("count")),
        "/clear": lambda _body: emulator.clear_faults(),
        "/drop": lambda body: emulator.drop_port(float(body.get("down_s", 0.5))),
    }
    return serve_json_control("samd-emulator", "127.0.0.1", port,
                              get={"/state": lambda _query: emulator.snapshot(), "/frames": frames,
                                   "/culture": lambda _query: {"model_s": emulator.model_time(),
                                                               "vials": emulator.culture()}},
                              post=post)
