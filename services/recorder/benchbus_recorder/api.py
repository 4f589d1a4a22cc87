"""What the recorder answers, the same on the bus (service.py) and over HTTP (http.py): queries, exports, status."""
from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

from benchbus import BusError
from benchbus_schemas.recorder import AuditQuery, EventQuery, ExportRequest, QueryRequest

from .exports import Export
from .ingest import Ingest
from .store import Store

HISTORY_DEFAULT_S = 86400.0


class RecorderApi:
    def __init__(self, store: Store, device: str, export_dir: Path, ingest: Ingest | None = None):
        self.store = store
        self.device = device
        self.export_dir = export_dir
        self.ingest = ingest
        self.http_url: str | None = None

    def _range(self, device: str | None, start: float | None, end: float | None) -> tuple[str, float, float]:
        who = device or self.device
        end = end if end is not None else time.time() + 1.0
        if start is None:
            oldest, _newest = self.store.time_bounds(who)
            start = oldest if oldest is not None else end - HISTORY_DEFAULT_S
        if end <= start:
            end = start + 1.0
        return who, float(start), float(end)

    def query(self, request: QueryRequest) -> dict:
        device, start, end = self._range(request.device, request.start, request.end)
        return self.store.query(device, start, end, request.points, request.params, request.vials)

    def export(self, request: ExportRequest) -> Export:
        device, start, end = self._range(request.device, request.start, request.end)
        export = Export(self.store, request.format, device, start, end, request.params, request.vials)
        if not export.series:
            raise BusError("not_found", f"no readings of device '{device}' match the params and vials asked for")
        return export

    def export_to_file(self, request: ExportRequest) -> dict:
        """Write the export under export_dir (temp file, fsync, rename: a kill leaves no half file)."""
        export = self.export(request)
        self.export_dir.mkdir(parents=True, exist_ok=True)
        final = self.export_dir / export.filename()
        partial = final.with_name(final.name + ".partial")
        size = 0
        with open(partial, "wb") as out:
            for chunk in export:
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)
        query = {k: v for k, v in request.model_dump(exclude_none=True).items()}
        query.update(start=export.start, end=export.end, device=export.device)
        encoded = urllib.parse.urlencode({k: ",".join(map(str, v)) if isinstance(v, list) else v
                                          for k, v in query.items()})
        return {"path": str(final), "bytes": size, "rows": export.rows, "format": request.format,
                "http_path": f"/api/recorder/export?{encoded}"}

    def audit(self, request: AuditQuery) -> dict:
        device, start, end = self._range(request.device, request.start if request.start is not None else 0.0,
                                         request.end)
        return {"records": self.store.audit_records(device, start, end, request.limit, request.principal,
                                                    request.service, request.command, request.ok)}

    def events(self, request: EventQuery) -> dict:
        device, start, end = self._range(request.device, request.start if request.start is not None else 0.0,
                                         request.end)
        return {"records": self.store.event_records(device, start, end, request.limit, request.service,
                                                    request.name)}

    def history(self, device: str | None, start: float | None, end: float | None, limit: int) -> dict:
        """The gateway's /api/history shape, from the database (it survives restarts and spans days)."""
        who = device or self.device
        end = end if end is not None else time.time() + 1.0
        start = start if start is not None else end - HISTORY_DEFAULT_S
        return {"size": limit, "max_age_s": end - start, "source": "recorder",
                "broadcasts": self.store.broadcasts_between(who, start, end, limit)}

    def status(self) -> dict[str, Any]:
        ingest = self.ingest
        return {"backend": self.store.backend, "database": self.store.describe(),
                "schema_revision": self.store.revision(), "bytes": self.store.file_bytes(),
                "tables": self.store.table_status(), "devices": self.store.devices(),
                "pending": ingest.pending if ingest else 0, "committed": ingest.committed if ingest else 0,
                "last_commit": ingest.last_commit if ingest else None,
                "commit_lag_p99_s": ingest.lag_p99() if ingest else None, "http_url": self.http_url}
