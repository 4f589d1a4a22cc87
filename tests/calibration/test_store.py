"""The durable versioned file: atomic writes, kept versions, recovery at start (files on a real disk)."""
import json

import pytest

from benchbus_calibration.store import VersionedFile


def parse_list(data: bytes):
    value = json.loads(data)
    if not isinstance(value, list):
        raise ValueError("not a list")
    return value


def opened(path, keep=5):
    store = VersionedFile(path, parse_list, keep)
    recovery = store.open(b"[]")
    return store, recovery


def test_fresh_store_starts_empty_as_version_1(tmp_path):
    store, recovery = opened(tmp_path / "c.json")
    assert recovery is None and store.value == [] and store.version == 1
    assert json.loads((tmp_path / "c.json").read_bytes()) == []


def test_writes_are_on_disk_and_the_last_n_versions_are_kept(tmp_path):
    store, _ = opened(tmp_path / "c.json", keep=3)
    for n in range(1, 6):
        assert store.write(json.dumps([n]).encode()) == n + 1
    assert json.loads((tmp_path / "c.json").read_bytes()) == [5]
    assert [v["version"] for v in store.history()] == [6, 5, 4]
    assert store.history()[0]["current"] and not store.history()[1]["current"]
    assert json.loads(store.read_version(4)) == [3]
    with pytest.raises(KeyError, match="not kept"):
        store.read_version(2)
    assert not list(tmp_path.glob(".*tmp*")), "no temp file is left behind"


def test_restore_is_a_new_version(tmp_path):
    store, _ = opened(tmp_path / "c.json")
    store.write(b"[1]")
    store.write(b"[2]")
    assert store.restore(2) == 4
    assert store.value == [1] and json.loads((tmp_path / "c.json").read_bytes()) == [1]


def test_an_invalid_write_is_refused_and_changes_nothing(tmp_path):
    store, _ = opened(tmp_path / "c.json")
    store.write(b"[1]")
    with pytest.raises(ValueError):
        store.write(b'{"not": "a list"}')
    assert store.value == [1] and store.version == 2
    assert (tmp_path / "c.json").read_bytes() == b"[1]"


@pytest.mark.parametrize("damage", [b"", b"[1, 2", b'{"a": 1}', b"\x00\x00\x00"])
def test_a_corrupt_file_is_moved_aside_and_the_newest_valid_version_loaded(tmp_path, damage):
    path = tmp_path / "c.json"
    store, _ = opened(path)
    store.write(b"[1]")
    store.write(b"[1, 2]")
    path.write_bytes(damage)  # what a truncate-then-write crash or a bad hand edit leaves
    store, recovery = opened(path)
    assert store.value == [1, 2] and store.version == 3
    assert recovery.loaded_version == 3 and not recovery.started_empty
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == damage, "the bad file is kept, never deleted"
    assert recovery.moved_aside == [str(aside[0])]
    assert json.loads(path.read_bytes()) == [1, 2]


def test_corrupt_history_versions_are_skipped_and_kept_aside(tmp_path):
    path = tmp_path / "c.json"
    store, _ = opened(path)
    store.write(b"[1]")
    store.write(b"[2]")
    (store.history_dir / "v00000003.json").write_bytes(b"garbage")
    path.write_bytes(b"garbage")
    store, recovery = opened(path)
    assert store.value == [1] and recovery.loaded_version == 2
    assert len(recovery.moved_aside) == 2
    assert any(p.name.startswith("v00000003.json.corrupt-") for p in store.history_dir.iterdir())


def test_nothing_valid_starts_empty_and_says_so(tmp_path):
    path = tmp_path / "c.json"
    store, _ = opened(path)
    (store.history_dir / "v00000001.json").write_bytes(b"{}")
    path.write_bytes(b"{}")
    store, recovery = opened(path)
    assert recovery.started_empty and recovery.loaded_version is None
    assert store.value == [] and store.version == 2, "version numbers are never reused"


def test_a_missing_current_file_is_restored_from_history(tmp_path):
    path = tmp_path / "c.json"
    store, _ = opened(path)
    store.write(b"[7]")
    path.unlink()
    store, recovery = opened(path)
    assert store.value == [7] and "missing" in recovery.reason


def test_a_hand_edited_file_is_adopted_as_a_new_version(tmp_path):
    path = tmp_path / "c.json"
    store, _ = opened(path)
    store.write(b"[1]")
    path.write_bytes(b"[1, 99]")
    store, recovery = opened(path)
    assert recovery is None and store.value == [1, 99] and store.version == 3
    assert json.loads(store.read_version(3)) == [1, 99] and json.loads(store.read_version(2)) == [1]


def test_leftover_temp_files_of_an_interrupted_write_are_removed(tmp_path):
    path = tmp_path / "c.json"
    store, _ = opened(path)
    (tmp_path / ".c.json.tmp-123-0").write_bytes(b"[half")
    store, recovery = opened(path)
    assert recovery is None and not (tmp_path / ".c.json.tmp-123-0").exists()
