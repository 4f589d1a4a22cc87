"""A tiny JSON-over-HTTP control interface for emulators run as separate processes (tests, `benchbus up`).

    serve_json_control("samd-emulator", "127.0.0.1", port,
                       get={"/state": lambda query: emulator.snapshot()},
                       post={"/clear": lambda body: emulator.clear_faults()})

GET handlers take the parsed query string ({name: first value}) and return a JSON object; POST handlers take the
JSON body and return nothing (the answer is {"ok": true}) or an object. A bad body or argument is a 400 naming
the problem, an unknown path a 404 listing the known ones.
"""
from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

JsonObject = dict[str, Any]
GetHandler = Callable[[dict[str, str]], JsonObject]
PostHandler = Callable[[JsonObject], JsonObject | None]


def serve_json_control(name: str, host: str, port: int, get: Mapping[str, GetHandler],
                       post: Mapping[str, PostHandler]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def _answer(self, status: int, body: JsonObject) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _run(self, routes: Mapping[str, Callable[[Any], JsonObject | None]],
                 argument_of: Callable[[Any], Any]) -> None:
            url = urlsplit(self.path)
            handler = routes.get(url.path)
            if handler is None:
                return self._answer(404, {"error": f"{self.command} one of {sorted(routes)}"})
            try:
                result = handler(argument_of(url))
            except (ValueError, KeyError, TypeError) as exc:
                return self._answer(400, {"error": f"{type(exc).__name__}: {exc}"})
            self._answer(200, result if result is not None else {"ok": True})

        def do_GET(self) -> None:
            self._run(get, lambda url: {k: v[0] for k, v in parse_qs(url.query).items()})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._run(post, lambda _url: json.loads(self.rfile.read(length) or b"{}"))

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name=f"{name}-control", daemon=True).start()
    return server


def run_until_signalled(close: Callable[[], None]) -> int:
    """The end of an emulator program: serve until SIGTERM or SIGINT, then `close` and exit 0."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    close()
    return 0
