"""Streamed exports: CSV tidy, CSV wide and the DPU's per-vial files in a zip, of any size in bounded memory.

Each export is a generator of byte chunks read from the database a chunk at a time, so the HTTP endpoint and the
file writer never hold more than one chunk.

- csv_tidy: `time,device,param,vial,raw,calibrated,fit`, one row per reading, series after series (param, vial),
  each in time order; time in UNIX seconds.
- csv_wide: one row per broadcast time; a column `<param>_<vial>` with the raw value of every param that has raw
  values, and `<param>_cal_<vial>` where calibrated values exist (od and temp from the active fits).
- dpu_zip: the eVOLVER DPU's own layout, read unchanged by its analysis scripts: `OD/vial<N>_OD.txt` (calibrated
  OD), `temp/vial<N>_temp.txt` (calibrated degrees C) and `<param>_raw/vial<N>_<param>_raw.txt` (raw board values);
  each file a header line (`Experiment: <device> vial <N>, <start>`, as the DPU writes it) then `time,value` lines,
  time in hours since the export's start, as the DPU counts it.
"""
from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import datetime, UTC

from .store import SeriesKey, Store

CHUNK_BYTES = 256 * 1024
TIDY_HEADER = ["time", "device", "param", "vial", "raw", "calibrated", "fit"]
DPU_FOLDERS = {"od": ("OD", "OD"), "temp": ("temp", "temp")}  # param -> (folder, file suffix), calibrated values


class Export:
    """One export: iterate it for byte chunks; `rows` counts the data rows written so far."""

    media_types = {"csv_tidy": "text/csv", "csv_wide": "text/csv", "dpu_zip": "application/zip"}
    suffixes = {"csv_tidy": "csv", "csv_wide": "csv", "dpu_zip": "zip"}

    def __init__(self, store: Store, format: str, device: str, start: float, end: float,
                 params: list[str] | None = None, vials: list[int] | None = None):
        self.store = store
        self.format = format
        self.device = device
        self.start = start
        self.end = end
        self.series = store.series(device, params, vials)
        self.rows = 0

    @property
    def media_type(self) -> str:
        return self.media_types[self.format]

    def filename(self) -> str:
        stamp = datetime.fromtimestamp(self.start, UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{self.device}-{stamp}-{self.format}.{self.suffixes[self.format]}"

    def __iter__(self) -> Iterator[bytes]:
        chunks = {"csv_tidy": self._tidy, "csv_wide": self._wide, "dpu_zip": self._dpu}[self.format]()
        return chunks

    # -- CSV tidy ------------------------------------------------------------------------------------------------------

    def _tidy(self) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(TIDY_HEADER)
        for series in self.series:
            for rows in self.store.stream_series(series, self.start, self.end, labelled=True):
                writer.writerows(rows)
                self.rows += len(rows)
                if buffer.tell() >= CHUNK_BYTES:
                    yield _take(buffer)
        yield _take(buffer)

    # -- CSV wide ------------------------------------------------------------------------------------------------------

    def _wide_columns(self) -> list[tuple[SeriesKey, int]]:
        """(series, 2 for raw or 3 for calibrated) per column, in header order."""
        columns: list[tuple[SeriesKey, int]] = []
        has = self.store.value_kinds([s.id for s in self.series], self.start, self.end)
        for series in self.series:
            raw, calibrated = has.get(series.id, (False, False))
            if raw:
                columns.append((series, 2))
        for series in self.series:
            if has.get(series.id, (False, False))[1]:
                columns.append((series, 3))
        return columns

    def _wide(self) -> Iterator[bytes]:
        columns = self._wide_columns()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["time"] + [f"{s.param}_{s.vial}" if kind == 2 else f"{s.param}_cal_{s.vial}"
                                    for s, kind in columns])
        position = {(s.id, kind): i for i, (s, kind) in enumerate(columns)}
        ids = sorted({s.id for s, _ in columns})
        width = len(columns)
        for times in self.store.broadcast_times(self.device, self.start, self.end):
            table: dict[float, list] = {when: [None] * width for when in times}
            for series_id, when, raw, cal in self.store.stream_window(ids, times[0], times[-1] + 1e-6):
                row = table.get(when)
                if row is None:
                    continue
                at = position.get((series_id, 2))
                if at is not None:
                    row[at] = raw
                at = position.get((series_id, 3))
                if at is not None:
                    row[at] = cal
            writer.writerows([when, *table[when]] for when in times)
            self.rows += len(times)
            if buffer.tell() >= CHUNK_BYTES:
                yield _take(buffer)
        yield _take(buffer)

    # -- the DPU's files -----------------------------------------------------------------------------------------------

    def _dpu_files(self) -> list[tuple[str, SeriesKey, int]]:
        """(path in the zip, series, 2 raw or 3 calibrated)."""
        files = []
        has = self.store.value_kinds([s.id for s in self.series], self.start, self.end)
        for series in self.series:
            raw, calibrated = has.get(series.id, (False, False))
            if series.param in DPU_FOLDERS and calibrated:
                folder, suffix = DPU_FOLDERS[series.param]
                files.append((f"{folder}/vial{series.vial}_{suffix}.txt", series, 3))
            if raw:
                files.append((f"{series.param}_raw/vial{series.vial}_{series.param}_raw.txt", series, 2))
        return files

    def _dpu(self) -> Iterator[bytes]:
        sink = _Sink()
        stamp = datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for path, series, kind in self._dpu_files():
                with archive.open(path, "w", force_zip64=True) as member:
                    member.write(f"Experiment: {self.device} vial {series.vial}, {stamp}\n".encode())
                    for rows in self.store.stream_series(series, self.start, self.end):
                        lines = [f"{(row[0] - self.start) / 3600.0:.6f},{row[kind - 1]!r}\n"
                                 for row in rows if row[kind - 1] is not None]
                        member.write("".join(lines).encode())
                        self.rows += len(lines)
                        if sink.size >= CHUNK_BYTES:
                            yield sink.take()
                yield sink.take()
        yield sink.take()


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream the zip is written to; the generator hands its bytes on as they come."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._position = 0
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        self.size += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        self.size = 0
        return out


def _take(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data
