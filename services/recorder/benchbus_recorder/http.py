"""The recorder's small HTTP endpoint (localhost by default; the gateway proxies it on its own port).

    GET /api/history?start=&end=&limit=&device=         recent broadcasts, the gateway's /api/history shape
    GET /api/recorder/query?start=&end=&vials=0,1&params=od,temp&points=1000&device=
    GET /api/recorder/export?format=csv_tidy|csv_wide|dpu_zip&start=&end=&vials=&params=&device=   streamed
    GET /api/recorder/audit?start=&end=&principal=&service=&command=&ok=&limit=
    GET /api/recorder/events?start=&end=&service=&name=&limit=
    GET /api/recorder/status
    GET /metrics                                        Prometheus text, or OpenMetrics when asked for

Query parameters are validated by the same models as the bus commands; a bad one is a 400 naming the field.
Exports are sent with chunked transfer encoding, a chunk at a time from the database.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import exposition
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel, ValidationError

from benchbus import BusError
from benchbus.service import describe_validation_error
from benchbus_schemas.recorder import AuditQuery, EventQuery, ExportRequest, QueryRequest

from .api import RecorderApi

log = logging.getLogger("benchbus.recorder.http")
STATUS_OF = {"invalid_request": 400, "not_found": 404, "unavailable": 503, "internal": 500}
LIST_FIELDS = {"vials", "params"}


def parse_query(model: type[BaseModel], query: str) -> Any:
    pairs = urllib.parse.parse_qs(query, keep_blank_values=False)
    data: dict[str, Any] = {}
    for key, values in pairs.items():
        value = values[-1]
        if key in LIST_FIELDS:
            data[key] = [v for v in value.split(",") if v]
        elif key == "ok":
            data[key] = value.lower() in ("1", "true", "yes")
        else:
            data[key] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, problems = describe_validation_error(exc)
        raise BusError("invalid_request", message, {"errors": problems}) from None


class Handler(BaseHTTPRequestHandler):
    api: RecorderApi
    registry: CollectorRegistry
    protocol_version = "HTTP/1.1"
    server_version = "benchbus-recorder"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        url = urllib.parse.urlsplit(self.path)
        routes = {"/api/history": self._history, "/api/recorder/query": self._query,
                  "/api/recorder/export": self._export, "/api/recorder/audit": self._audit,
                  "/api/recorder/events": self._events, "/api/recorder/status": self._status,
                  "/metrics": self._metrics}
        route = routes.get(url.path.rstrip("/") or "/")
        try:
            if route is None:
                raise BusError("not_found", f"no route {url.path}; known: {', '.join(sorted(routes))}")
            route(url.query)
        except BusError as error:
            self._json({"ok": False, "error": error.body().model_dump()}, STATUS_OF.get(error.code, 500))
        except (BrokenPipeError, ConnectionResetError):
            log.info("client went away during %s", url.path)
        except Exception as exc:  # a bug costs this request, never the endpoint
            log.exception("GET %s failed", self.path)
            self._json({"ok": False, "error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}}, 500)

    # -- routes ------------------------------------------------------------------------------------------------------

    def _history(self, query: str) -> None:
        pairs = dict(urllib.parse.parse_qsl(query))
        try:
            start = float(pairs["start"]) if "start" in pairs else None
            end = float(pairs["end"]) if "end" in pairs else None
            limit = int(pairs.get("limit", 5000))
        except ValueError as exc:
            raise BusError("invalid_request", f"start, end and limit are numbers: {exc}") from None
        if not 0 <= limit <= 100_000:
            raise BusError("invalid_request", "field 'limit': 0..100000")
        self._json(self.api.history(pairs.get("device"), start, end, limit))

    def _query(self, query: str) -> None:
        self._json({"ok": True, "result": self.api.query(parse_query(QueryRequest, query))})

    def _audit(self, query: str) -> None:
        self._json({"ok": True, "result": self.api.audit(parse_query(AuditQuery, query))})

    def _events(self, query: str) -> None:
        self._json({"ok": True, "result": self.api.events(parse_query(EventQuery, query))})

    def _status(self, _query: str) -> None:
        self._json({"ok": True, "result": self.api.status()})

    def _export(self, query: str) -> None:
        export = self.api.export(parse_query(ExportRequest, query))
        self.send_response(200)
        self.send_header("Content-Type", export.media_type)
        self.send_header("Content-Disposition", f'attachment; filename="{export.filename()}"')
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in export:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:
            # the headers are gone: cut the response without its last chunk, so the client sees it incomplete
            log.exception("export %s failed after %d rows; response cut", export.format, export.rows)
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def _metrics(self, _query: str) -> None:
        encoder, content_type = exposition.choose_encoder(self.headers.get("Accept", ""))
        body = encoder(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HttpEndpoint:
    def __init__(self, api: RecorderApi, registry: CollectorRegistry, host: str, port: int):
        handler = type("RecorderHandler", (Handler,), {"api": api, "registry": registry})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="recorder-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"  # listening everywhere: this host reaches it on the loopback
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
