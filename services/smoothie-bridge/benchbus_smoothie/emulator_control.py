"""The Smoothieboard emulator's JSON HTTP interface, for tests that run the emulator as a separate process.

`benchbus-smoothie-emulator --tcp PORT --control-port CPORT` (as `benchbus up` starts it) serves on 127.0.0.1:CPORT:

    GET  /state              {url, position, homed, engaged, halted, lines}    lines: how many so far
    GET  /lines?since=N      {lines: [...], next: M}    the G-code log from line N on
    POST /fault {kind, count}    kind: silence, garble, drop_ok, limit_alarm or close
    POST /clear                  no faults armed
    POST /drop  {down_s}         the port closes and listens again
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .emulator import SmoothieEmulator


class _NoSuchPath(Exception):
    pass


def snapshot(emulator: SmoothieEmulator) -> dict:
    return {"url": emulator.url, "position": emulator.position, "homed": dict(emulator.homed),
            "engaged": dict(emulator.engaged), "halted": emulator.halted.is_set(), "lines": len(emulator.lines)}


def _post(emulator: SmoothieEmulator, path: str, body: dict) -> None:
    if path == "/fault":
        emulator.inject(str(body["kind"]), int(body.get("count", 1)))
    elif path == "/clear":
        emulator.clear_faults()
    elif path == "/drop":
        emulator.drop_port(float(body.get("down_s", 0.5)))
    else:
        raise _NoSuchPath("POST /fault, /clear or /drop")


def serve_control(emulator: SmoothieEmulator, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/state":
                return self._answer(200, snapshot(emulator))
            if url.path == "/lines":
                since = int(parse_qs(url.query).get("since", ["0"])[0])
                lines = list(emulator.lines[since:])
                return self._answer(200, {"lines": lines, "next": since + len(lines)})
            self._answer(404, {"error": "GET /state or /lines?since=N"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                _post(emulator, urlsplit(self.path).path, json.loads(self.rfile.read(length) or b"{}"))
            except _NoSuchPath as exc:
                return self._answer(404, {"error": str(exc)})
            except (ValueError, TypeError, KeyError) as exc:
                return self._answer(400, {"error": str(exc)})
            self._answer(200, {"ok": True})

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="smoothie-emulator-control", daemon=True).start()
    return server
