"""Every command of the calibration-store over the real broker, on files in a temporary directory."""
import json
import shutil
import threading
from pathlib import Path

import pytest

from benchbus import BusError
from benchbus_calibration.service import CalibrationService
from benchbus_calibration.settings import CalibrationSettings
from benchbus_schemas import topics

RIG_FILE = Path(__file__).parent / "data" / "rig-calibrations.json"


@pytest.fixture
def start(make_settings, serve, tmp_path):
    def start_service(**fields):
        fields.setdefault("data_dir", tmp_path / "calibration")
        return serve(CalibrationService, make_settings(CalibrationSettings, **fields))
    return start_service


@pytest.fixture
def rig(start, tmp_path):
    """The service on a copy of a real rig's calibrations.json."""
    (tmp_path / "calibration").mkdir()
    shutil.copy(RIG_FILE, tmp_path / "calibration" / "calibrations.json")
    return start()


def on_disk(tmp_path) -> list:
    return json.loads((tmp_path / "calibration" / "calibrations.json").read_bytes())


def call_error(bus, command, payload):
    with pytest.raises(BusError) as caught:
        bus.call("calibration", command, payload)
    return caught.value


def a_calibration(name="od_new", fits=None, calibration_type="od"):
    calibration = {"name": name, "calibrationType": calibration_type, "timeCollected": 1710000000000,
                   "measuredData": [[0.0, 0.5, 1.0]] * 2,
                   "raw": [{"param": "od_90", "vialData": [[[60000], [50000], [40000]]] * 2}]}
    if fits is not None:
        calibration["fits"] = fits
    return calibration


def a_fit(name, active=False, scale=1.0):
    return {"name": name, "type": "linear", "params": ["temp"], "active": active, "timeFit": 1710000001.5,
            "coefficients": [[-0.028 * scale, 83.0], [-0.028, 83.0]]}


# -- a real rig's file -------------------------------------------------------------------------------------------------

def test_a_real_rig_file_loads_and_lists(rig, bus):
    names = bus.call("calibration", "list_calibrations")["calibrations"]
    assert names == [{"name": "yeast_20240312_by4741", "calibrationType": "od"},
                     {"name": "temp_20240310", "calibrationType": "temperature"},
                     {"name": "pumpcal_20240301", "calibrationType": "pump"},
                     {"name": "ecoli_20240401_unfitted", "calibrationType": "od"}]
    fit_names = bus.call("calibration", "list_fits")["fits"]
    assert {"name": "yeast_20240312_by4741_3d", "calibrationType": "od"} in fit_names and len(fit_names) == 4


def test_a_real_rig_file_round_trips_with_clean_numbers(rig, bus, tmp_path):
    original = json.loads(RIG_FILE.read_bytes())
    pump = bus.call("calibration", "get_calibration", {"name": "pumpcal_20240301"})["calibration"]
    assert pump["fits"][0]["coefficients"] == [float(c) for c in original[2]["fits"][0]["coefficients"]]
    assert pump["measuredData"] == [10] * 48
    assert pump["raw"][0]["vialData"][0] == [float(original[2]["raw"][0]["vialData"][0][0])]
    bus.call("calibration", "set_raw", pump)  # a write: the whole file is written back
    written = on_disk(tmp_path)
    assert [c["name"] for c in written] == [c["name"] for c in original]
    for before, after in zip(original, written, strict=True):
        before.setdefault("fits", [])  # a calibration without fits is written with an empty list, as readers expect
        assert _numbers(before) == _numbers(after), f"{before['name']} changed in a round trip"
    assert not any(isinstance(c, str) for f in written[0]["fits"] for row in f["coefficients"] for c in row)


def _numbers(value):
    """Every value with numeric strings read as numbers: what must survive a round trip."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


# -- the eVOLVER commands ------------------------------------------------------------------------------------------

def test_set_raw_adds_then_replaces_by_name(start, bus, tmp_path):
    start()
    first = bus.call("calibration", "set_raw", a_calibration())
    assert first["status"] == "success" and first["replaced"] is False
    changed = a_calibration()
    changed["measuredData"] = [[0.0, 0.4, 1.1]] * 2
    second = bus.call("calibration", "set_raw", changed)
    assert second["replaced"] is True and second["version"] == first["version"] + 1
    assert on_disk(tmp_path) == [bus.call("calibration", "get_calibration", {"name": "od_new"})["calibration"]]
    assert on_disk(tmp_path)[0]["measuredData"] == [[0.0, 0.4, 1.1]] * 2


def test_get_calibration_of_an_unknown_name_is_not_found(start, bus):
    start()
    error = call_error(bus, "get_calibration", {"name": "nope"})
    assert error.code == "not_found" and "nope" in error.message


def test_regression_set_fit_replaces_an_existing_fit(start, bus, tmp_path):
    """The original server indexed the fits list with a string: re-fitting under an existing name did nothing."""
    start()
    bus.call("calibration", "set_raw", a_calibration(fits=[a_fit("t1"), a_fit("t2")]))
    reply = bus.call("calibration", "set_fit", {"name": "od_new", "fit": a_fit("t1", scale=2.0)})
    assert reply["replaced"] is True
    fits = on_disk(tmp_path)[0]["fits"]
    assert [f["name"] for f in fits] == ["t1", "t2"]
    assert fits[0]["coefficients"][0] == [-0.056, 83.0]


def test_regression_set_fit_on_a_calibration_without_fits(rig, bus, tmp_path):
    """The original stored `"fits": null` ([].append returns None) and broke every later fit command."""
    reply = bus.call("calibration", "set_fit", {"name": "ecoli_20240401_unfitted", "fit": a_fit("ecoli_fit")})
    assert reply["replaced"] is False
    stored = [c for c in on_disk(tmp_path) if c["name"] == "ecoli_20240401_unfitted"][0]
    assert [f["name"] for f in stored["fits"]] == ["ecoli_fit"]
    assert {"name": "ecoli_fit", "calibrationType": "od"} in bus.call("calibration", "list_fits")["fits"]
    assert bus.call("calibration", "set_active", {"calibration_names": ["ecoli_fit"]})["activecalibrations"]


def test_a_file_with_null_fits_written_by_the_original_still_loads(start, bus, tmp_path):
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "calibrations.json").write_text(json.dumps([a_calibration(fits=None) | {"fits": None}]))
    start()
    assert bus.call("calibration", "list_fits")["fits"] == []
    assert bus.call("calibration", "get_active")["activecalibrations"] == []


def test_set_fit_on_an_unknown_calibration_is_not_found(start, bus):
    start()
    assert call_error(bus, "set_fit", {"name": "ghost", "fit": a_fit("x")}).code == "not_found"


def test_set_active_by_fit_names_as_the_gui_sends_them(rig, bus, tmp_path):
    active = bus.call("calibration", "set_active",
                      {"calibration_names": ["yeast_20240312_by4741_3d", "temp_20240310", "pumpcal_20240301"]})
    assert [c["name"] for c in active["activecalibrations"]] == ["yeast_20240312_by4741", "temp_20240310",
                                                                 "pumpcal_20240301"]
    yeast = on_disk(tmp_path)[0]
    assert {f["name"]: f["active"] for f in yeast["fits"]} == {"yeast_20240312_by4741_od90": False,
                                                               "yeast_20240312_by4741_3d": True}
    assert bus.call("calibration", "get_active") == active


def test_set_active_with_an_unknown_fit_name_changes_nothing(rig, bus, tmp_path):
    before = on_disk(tmp_path)
    version = bus.call("calibration", "history")["versions"][0]["version"]
    error = call_error(bus, "set_active", {"calibration_names": ["temp_20240310", "no_such_fit"]})
    assert error.code == "not_found" and "no_such_fit" in error.message
    assert on_disk(tmp_path) == before
    assert bus.call("calibration", "history")["versions"][0]["version"] == version


def test_state_active_carries_what_a_consumer_applies(rig, bus, device):
    topic = topics.topic(device, "calibration", "state", "active")
    _topic, state = bus.wait_for(topic, lambda _t, d: bool(d), 5)
    assert set(state["by_type"]) == {"od", "temperature", "pump"}
    od = state["by_type"]["od"]
    assert od["type"] == "sigmoid" and od["params"] == ["od_90"] and len(od["coefficients"]) == 16
    assert all(isinstance(c, (int, float)) for c in od["coefficients"][0])
    bus.call("calibration", "set_active", {"calibration_names": ["temp_20240310"]})
    updated = bus.wait_for(topic, lambda _t, d: d and set(d["by_type"]) == {"temperature"}, 5)
    assert updated


def test_delete(rig, bus, tmp_path):
    reply = bus.call("calibration", "delete", {"name": "temp_20240310"})
    assert reply["name"] == "temp_20240310"
    assert "temp_20240310" not in [c["name"] for c in on_disk(tmp_path)]
    assert call_error(bus, "delete", {"name": "temp_20240310"}).code == "not_found"


def test_fit_command_stores_a_fit_computed_from_the_raw_data(rig, bus, tmp_path):
    reply = bus.call("calibration", "fit", {"name": "yeast_20240312_by4741", "fit_name": "refit", "type": "sigmoid"})
    assert reply["fit"]["params"] == ["od_90"] and len(reply["fit"]["coefficients"]) == 16
    assert all(q["rms"] < 0.02 for q in reply["quality"]), "the rig data fit within 0.02 OD"
    stored = [f for f in on_disk(tmp_path)[0]["fits"] if f["name"] == "refit"][0]
    truth = [f for f in on_disk(tmp_path)[0]["fits"] if f["name"] == "yeast_20240312_by4741_od90"][0]
    for got, expected in zip(stored["coefficients"], truth["coefficients"], strict=True):
        assert got[2] == pytest.approx(float(expected[2]), abs=0.1)  # the midpoint OD, per vial
    assert call_error(bus, "fit", {"name": "yeast_20240312_by4741", "fit_name": "refit", "type": "sigmoid",
                                   "replace": False}).code == "conflict"
    temp = bus.call("calibration", "fit", {"name": "temp_20240310", "fit_name": "temp_refit", "type": "linear"})
    assert temp["fit"]["coefficients"][0][0] == pytest.approx(-0.028, abs=0.002)


def test_fit_that_cannot_work_is_invalid_and_stores_nothing(rig, bus, tmp_path):
    before = on_disk(tmp_path)
    error = call_error(bus, "fit", {"name": "temp_20240310", "fit_name": "x", "type": "3d"})
    assert error.code == "invalid_request" and "od_90" in error.message
    assert on_disk(tmp_path) == before


@pytest.mark.parametrize("payload, field", [
    ({"name": "x", "calibrationType": "ph"}, "calibrationType"),
    ({"name": "x", "calibrationType": "od", "measuredData": ["lots"]}, "measuredData"),
    ({"name": "x", "calibrationType": "od", "colour": "red"}, "colour"),
    ({"name": "", "calibrationType": "od"}, "name"),
])
def test_malformed_calibrations_are_refused_by_field(start, bus, tmp_path, payload, field):
    start()
    error = call_error(bus, "set_raw", payload)
    assert error.code == "invalid_request" and field in error.message
    assert on_disk(tmp_path) == []


# -- durability over the bus ---------------------------------------------------------------------------------------

def test_history_and_restore(start, bus, tmp_path):
    start(keep_versions=3)
    for n in range(4):
        bus.call("calibration", "set_raw", a_calibration(f"c{n}"))
    history = bus.call("calibration", "history")
    assert history["keep"] == 3 and [v["version"] for v in history["versions"]] == [5, 4, 3]
    assert history["versions"][0]["current"]
    restored = bus.call("calibration", "restore", {"version": 3})
    assert restored == {"store": "evolver", "restored_from": 3, "version": 6}
    assert [c["name"] for c in on_disk(tmp_path)] == ["c0", "c1"]
    assert call_error(bus, "restore", {"version": 1}).code == "not_found"


def test_a_corrupt_file_at_start_is_recovered_and_announced(start, bus, device, tmp_path):
    service = start()
    bus.call("calibration", "set_raw", a_calibration("kept"))
    service.stop()
    (tmp_path / "calibration" / "calibrations.json").write_bytes(b'[{"name": "half')  # a torn write
    seen = []
    bus.subscribe(topics.topic(device, "calibration", "event", "recovered"), lambda _t, d, _m: seen.append(d))
    start()
    assert bus.call("calibration", "list_calibrations")["calibrations"] == [{"name": "kept", "calibrationType": "od"}]
    recovered = seen[0]  # emitted during start, before the service answered the call above
    assert recovered["store"] == "evolver" and recovered["loaded_version"] == 2 and not recovered["started_empty"]
    aside = Path(recovered["moved_aside"][0])
    assert aside.read_bytes() == b'[{"name": "half', "the corrupt file is kept"


def test_concurrent_writes_are_serialized_and_none_is_lost(start, bus, tmp_path):
    start()
    errors = []

    def writer(k):
        try:
            for n in range(10):
                bus.call("calibration", "set_raw", a_calibration(f"w{k}-{n}"), timeout=20)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = {c["name"] for c in on_disk(tmp_path)}
    assert names == {f"w{k}-{n}" for k in range(6) for n in range(10)}
    assert bus.call("calibration", "history")["versions"][0]["version"] == 61


# -- robot calibrations ---------------------------------------------------------------------------------------------

DECK = {"kind": "deck", "attitude": [[1.0, 0.001, 0.0], [-0.001, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "pipette_calibrated_with": "P3HMV202020041605", "tiprack": "opentrons/opentrons_96_tiprack_300ul/1"}
OFFSET = {"kind": "pipette_offset", "mount": "left", "pipette_id": "P3HMV202020041605", "offset": [0.5, -1.2, 0.3],
          "uri": "opentrons/opentrons_96_tiprack_20ul/1"}
TIP = {"kind": "tip_length", "pipette_id": "P3HMV202020041605", "tiprack": "opentrons/opentrons_96_tiprack_20ul/1",
       "tip_length": 39.2}


def test_robot_records_set_get_list_delete(start, bus, tmp_path):
    start()
    for record in (DECK, OFFSET, TIP):
        assert bus.call("calibration", "robot_set", {"record": record})["store"] == "robot"
    deck = bus.call("calibration", "robot_get", {"kind": "deck"})["record"]
    assert deck["attitude"][0] == [1.0, 0.001, 0.0] and deck["schema_version"] == 1 and deck["last_modified"]
    moved = dict(OFFSET, offset=[0.6, -1.1, 0.2])
    assert bus.call("calibration", "robot_set", {"record": moved})["replaced"] is True
    got = bus.call("calibration", "robot_get", {"kind": "pipette_offset", "mount": "left",
                                                "pipette_id": "P3HMV202020041605"})["record"]
    assert got["offset"] == [0.6, -1.1, 0.2]
    assert len(bus.call("calibration", "robot_list")["records"]) == 3
    tip_lengths = bus.call("calibration", "robot_list", {"kind": "tip_length"})["records"]
    assert [r["kind"] for r in tip_lengths] == ["tip_length"]
    key = {"kind": "tip_length", "pipette_id": "P3HMV202020041605", "tiprack": "opentrons/opentrons_96_tiprack_20ul/1"}
    bus.call("calibration", "robot_delete", key)
    assert call_error(bus, "robot_get", key).code == "not_found"
    stored = json.loads((tmp_path / "calibration" / "robot-calibrations.json").read_bytes())
    assert stored["schema_version"] == 1 and [r["kind"] for r in stored["records"]] == ["deck", "pipette_offset"]
    assert bus.call("calibration", "history", {"store": "robot"})["versions"][0]["version"] == 6


@pytest.mark.parametrize("payload, field", [
    ({"record": dict(DECK, attitude=[[1, 0], [0, 1]])}, "attitude"),
    ({"record": dict(OFFSET, mount="middle")}, "mount"),
    ({"record": dict(TIP, tip_length=-3)}, "tip_length"),
    ({"record": dict(TIP, schema_version=2)}, "schema_version"),
])
def test_malformed_robot_records_are_refused_by_field(start, bus, payload, field):
    start()
    error = call_error(bus, "robot_set", payload)
    assert error.code == "invalid_request" and field in error.message


def test_a_robot_key_missing_its_fields_is_refused(start, bus):
    start()
    error = call_error(bus, "robot_get", {"kind": "pipette_offset", "mount": "left"})
    assert error.code == "invalid_request" and "pipette_id" in error.message


def test_benchbus_up_seeds_the_shipped_example_and_its_fits_apply(start, bus):
    from benchbus_calibration import fits

    start(seed_example=True)
    names = [c["name"] for c in bus.call("calibration", "list_calibrations")["calibrations"]]
    assert names == ["example_od", "example_temp", "example_pump"]
    temp = bus.call("calibration", "get_calibration", {"name": "example_temp"})["calibration"]
    celsius = fits.apply_fit(temp["fits"][0], 0, {"temp": ["2000"]})
    assert 25 < celsius.value < 31  # about -0.028 C per count from 83 C
    od = bus.call("calibration", "get_calibration", {"name": "example_od"})["calibration"]
    point = od["raw"][0]["vialData"][0][3][0]
    assert fits.apply_fit(od["fits"][0], 0, {"od_90": [point]}).value == pytest.approx(od["measuredData"][0][3],
                                                                                       abs=0.05)
