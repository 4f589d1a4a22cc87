"""Export of a long run (a 16-vial broadcast every 20 s) in every format, on both databases, in bounded memory.

SQLite, the device's database, holds a 7-day run (30,240 broadcasts, 1.9 million readings); PostgreSQL, a lab's,
holds one day of it (4,320 broadcasts): the same exports, tests and streaming rule, at a size that fills its tables
in seconds rather than a minute. The data goes in through the recorder's own path (broadcast JSON -> records ->
Store.write), only faster than the bus would bring it. The DPU-layout files are read the way the eVOLVER DPU reads
its own: np.genfromtxt on `time,value` lines after the header line.
"""
from __future__ import annotations

import csv
import io
import tracemalloc
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest

from benchbus_recorder.exports import Export
from benchbus_recorder.store import Store

from .conftest import RAW_PARAMS, VIALS, broadcast, write_run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("recorder-kept-run")]  # its data is built once
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
INTERVAL = 20.0
BROADCASTS = {"sqlite": 7 * 86400 // 20, "postgresql": 86400 // 20}


@dataclass
class KeptRun:
    store: Store
    count: int  # broadcasts

    @property
    def rows(self) -> int:
        return self.count * VIALS * (len(RAW_PARAMS) + 1)  # raw od_90, od_135, temp and the calibrated od series

    @property
    def end(self) -> float:
        return START + self.count * INTERVAL


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kept(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('week') / 'recorder.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    store = Store(url)
    count = BROADCASTS[request.param]
    write_run(store, "rig1", START, count, INTERVAL, per_batch=2000)
    yield KeptRun(store, count)
    store.close()


TRACED_BYTES = 12_000_000  # the export's first 12 MB are traced: past the first query, long enough to show any build-up
BUDGET_BYTES = 16_000_000  # what streaming may hold; a day's rows as Python objects alone would be several times it


def read_dpu_file(data: bytes) -> np.ndarray:
    """How the DPU reads OD/vialN_OD.txt: comma-separated `time,value` rows under one header line."""
    return np.genfromtxt(io.BytesIO(data), delimiter=",", skip_header=1)


def test_csv_tidy_holds_every_reading_in_bounded_memory(kept):
    """Traced from before the query to 12 MB out (all of PostgreSQL's day; tracing all 78 MB of the week would take
    ten times as long): an export that built its result before the first chunk, or grew with it, goes over budget
    there. The rest streams untraced and is counted line by line."""
    export = Export(kept.store, "csv_tidy", "rig1", START, kept.end)
    tracemalloc.start()
    lines = size = 0
    head = b""
    peak = None
    for chunk in export:
        head = head or chunk
        lines += chunk.count(b"\n")
        size += len(chunk)
        if peak is None and size > TRACED_BYTES:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    if peak is None:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert lines == kept.rows + 1 and export.rows == kept.rows
    assert peak < BUDGET_BYTES, f"peak {peak} bytes over the first {min(size, TRACED_BYTES)} exported: not streamed"
    rows = list(csv.reader(io.StringIO(head[:2000].decode())))
    assert rows[0] == ["time", "device", "param", "vial", "raw", "calibrated", "fit"]
    assert rows[1][:4] == [repr(START), "rig1", "od", "0"] and rows[1][4] == "" and rows[1][6] == "od_fit_a"


def test_csv_wide_has_a_row_per_broadcast_and_a_column_per_vial(kept):
    export = Export(kept.store, "csv_wide", "rig1", START, kept.end)
    text = b"".join(export).decode()
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert len(rows) == kept.count + 1 and export.rows == kept.count
    raw_columns = [f"{p}_{v}" for p in sorted(RAW_PARAMS) for v in range(VIALS)]
    assert header[1:1 + len(raw_columns)] == raw_columns
    assert [h for h in header if "_cal_" in h] == [f"od_cal_{v}" for v in range(VIALS)] + \
        [f"temp_cal_{v}" for v in range(VIALS)]
    cycle = 1234
    expected = broadcast(START + cycle * INTERVAL, cycle)
    row = dict(zip(header, rows[1 + cycle], strict=True))
    assert float(row["time"]) == START + cycle * INTERVAL
    assert float(row["od_135_7"]) == float(expected["data"]["od_135"][7])
    assert float(row["temp_cal_7"]) == expected["calibrated"]["temp"][7]


def test_dpu_layout_reads_as_the_dpu_reads_it(kept):
    export = Export(kept.store, "dpu_zip", "rig1", START, kept.end)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(export)))
    names = set(archive.namelist())
    for vial in range(VIALS):
        assert {f"OD/vial{vial}_OD.txt", f"temp/vial{vial}_temp.txt", f"od_90_raw/vial{vial}_od_90_raw.txt"} <= names
    od = read_dpu_file(archive.read("OD/vial5_OD.txt"))
    assert od.shape == (kept.count, 2)
    assert od[0, 0] == 0.0 and od[-1, 0] == pytest.approx((kept.count - 1) * INTERVAL / 3600, abs=1e-6)
    cycle = 4111  # within the day PostgreSQL holds too
    assert od[cycle, 1] == broadcast(START + cycle * INTERVAL, cycle)["calibrated"]["od"][5]
    temp = read_dpu_file(archive.read("temp/vial15_temp.txt"))
    assert temp.shape == (kept.count, 2) and set(temp[:, 1]) == {round(30.0 + 0.1 * 15, 3)}
    header = archive.read("OD/vial5_OD.txt").split(b"\n", 1)[0]
    assert header.startswith(b"Experiment: rig1 vial 5, 2026-01-01 00:00:00")


def test_a_range_vials_and_params_narrow_the_export(kept):
    export = Export(kept.store, "csv_tidy", "rig1", START + 3600, START + 7200, params=["temp"], vials=[0, 9])
    rows = list(csv.reader(io.StringIO(b"".join(export).decode())))
    assert len(rows) == 1 + 2 * 180
    assert {(r[2], r[3]) for r in rows[1:]} == {("temp", "0"), ("temp", "9")}
    assert min(float(r[0]) for r in rows[1:]) == START + 3600
