"""Export of a 7-day, 16-vial run (a broadcast every 20 s) in every format, on both databases, in bounded memory.

The data goes in through the recorder's own path (broadcast JSON -> records -> Store.write), only faster than the
bus would bring it. The DPU-layout files are read the way the eVOLVER DPU reads its own: np.genfromtxt on
`time,value` lines after the header line.
"""
from __future__ import annotations

import csv
import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from benchbus_recorder.exports import Export
from benchbus_recorder.store import Store

from .conftest import RAW_PARAMS, VIALS, broadcast, write_run

pytestmark = pytest.mark.slow
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
INTERVAL = 20.0
COUNT = 7 * 86400 // 20  # 30,240 broadcasts
ROWS = COUNT * VIALS * (len(RAW_PARAMS) + 1)  # raw od_90, od_135, temp and the calibrated od series


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def week(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('week') / 'recorder.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").new_database()
    store = Store(url)
    write_run(store, "rig1", START, COUNT, INTERVAL, per_batch=2000)
    yield store
    store.close()


def read_dpu_file(data: bytes) -> np.ndarray:
    """How the DPU reads OD/vialN_OD.txt: comma-separated `time,value` rows under one header line."""
    return np.genfromtxt(io.BytesIO(data), delimiter=",", skip_header=1)


def test_csv_tidy_holds_every_reading_in_bounded_memory(week):
    export = Export(week, "csv_tidy", "rig1", START, START + COUNT * INTERVAL)
    tracemalloc.start()
    lines = 0
    size = 0
    head = b""
    for chunk in export:
        if not head:
            head = chunk[:2000]
        lines += chunk.count(b"\n")
        size += len(chunk)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert lines == ROWS + 1 and export.rows == ROWS
    assert peak < size / 4, f"peak {peak} bytes while exporting {size} bytes: not streamed"
    rows = list(csv.reader(io.StringIO(head.decode())))
    assert rows[0] == ["time", "device", "param", "vial", "raw", "calibrated", "fit"]
    assert rows[1][:4] == [repr(START), "rig1", "od", "0"] and rows[1][4] == "" and rows[1][6] == "od_fit_a"


def test_csv_wide_has_a_row_per_broadcast_and_a_column_per_vial(week):
    export = Export(week, "csv_wide", "rig1", START, START + COUNT * INTERVAL)
    text = b"".join(export).decode()
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert len(rows) == COUNT + 1 and export.rows == COUNT
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


def test_dpu_layout_reads_as_the_dpu_reads_it(week):
    export = Export(week, "dpu_zip", "rig1", START, START + COUNT * INTERVAL)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(export)))
    names = set(archive.namelist())
    for vial in range(VIALS):
        assert {f"OD/vial{vial}_OD.txt", f"temp/vial{vial}_temp.txt", f"od_90_raw/vial{vial}_od_90_raw.txt"} <= names
    od = read_dpu_file(archive.read("OD/vial5_OD.txt"))
    assert od.shape == (COUNT, 2)
    assert od[0, 0] == 0.0 and od[-1, 0] == pytest.approx((COUNT - 1) * INTERVAL / 3600, abs=1e-6)
    cycle = 4321
    assert od[cycle, 1] == broadcast(START + cycle * INTERVAL, cycle)["calibrated"]["od"][5]
    temp = read_dpu_file(archive.read("temp/vial15_temp.txt"))
    assert temp.shape == (COUNT, 2) and set(temp[:, 1]) == {round(30.0 + 0.1 * 15, 3)}
    header = archive.read("OD/vial5_OD.txt").split(b"\n", 1)[0]
    assert header.startswith(b"Experiment: rig1 vial 5, 2026-01-01 00:00:00")


def test_a_range_vials_and_params_narrow_the_export(week):
    export = Export(week, "csv_tidy", "rig1", START + 3600, START + 7200, params=["temp"], vials=[0, 9])
    rows = list(csv.reader(io.StringIO(b"".join(export).decode())))
    assert len(rows) == 1 + 2 * 180
    assert {(r[2], r[3]) for r in rows[1:]} == {("temp", "0"), ("temp", "9")}
    assert min(float(r[0]) for r in rows[1:]) == START + 3600
