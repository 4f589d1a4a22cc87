"""A database written by an older recorder opens in this one: the schema is upgraded, the data kept and used."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from benchbus_recorder import tables
from benchbus_recorder.store import HEAD, Store, alembic_config, make_engine, upgrade

from .conftest import VIALS, run_rows


def write_as_first_revision(url: str) -> None:
    """What the first released schema (0001_initial, no rollups) held: rows put in with plain SQL of that time."""
    engine = make_engine(url)
    with engine.begin() as connection:
        upgrade(connection, "0001_initial")
        assert "rollups" not in sa.inspect(connection).get_table_names()
        connection.execute(sa.text("INSERT INTO series (device, param, vial) VALUES ('old', 'od_90', 0)"))
        series_id = connection.execute(sa.text("SELECT id FROM series WHERE device = 'old'")).scalar()
        connection.execute(sa.text("INSERT INTO readings (series_id, time, raw) VALUES (:s, :t, :r)"),
                           [{"s": series_id, "t": 1_700_000_000.0 + 20 * i, "r": 1000.0 + i} for i in range(30)])
        connection.execute(sa.text("INSERT INTO broadcasts (device, time, cycle) VALUES ('old', :t, :c)"),
                           [{"t": 1_700_000_000.0 + 20 * i, "c": i} for i in range(30)])
        connection.execute(sa.text(
            "INSERT INTO audit (device, time, service, command, principal, ok, digest) "
            "VALUES ('old', 1700000000.5, 'scheduler', 'command', 'alice', :ok, 'd1')"), {"ok": True})
    engine.dispose()


def test_a_database_of_the_first_schema_opens_and_is_upgraded(database_url):
    write_as_first_revision(database_url)
    store = Store(database_url)  # upgrades to the newest revision
    try:
        assert store.revision() == "0002_rollups"
        old = store.query("old", 1_700_000_000.0, 1_700_000_600.0, 1000, ["od_90"], [0])
        assert old["series"][0]["raw"] == [1000.0 + i for i in range(30)]
        assert store.audit_records("old", 0, 2e9, 10)[0]["principal"] == "alice"
        store.load_rollup_marks([300])
        store.refresh_rollups(now=1_700_010_000.0)
        with store.engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.sum(tables.rollups.c.n))).scalar() == 30
        store.write(run_rows("new", 1_700_000_000.0, 2, 20.0))  # and the new version writes on
        assert len(store.series("new")) == VIALS * 4
    finally:
        store.close()


def test_opening_twice_changes_nothing(database_url):
    Store(database_url).close()
    store = Store(database_url)
    try:
        assert store.revision() == "0002_rollups"
    finally:
        store.close()


def test_head_is_the_newest_migration():
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD


OPEN_CURRENT = textwrap.dedent("""
    import sys
    from benchbus_recorder.store import Store
    store = Store(sys.argv[1])
    print(store.revision(), "alembic" in sys.modules)
""")


def test_a_current_database_opens_without_alembic(tmp_path):
    """alembic is imported only to upgrade (issue 21: 3.5 MB resident and more), not by a recorder whose database
    is at the newest revision already."""
    url = f"sqlite:///{tmp_path / 'recorder.db'}"
    Store(url).close()  # made and migrated
    out = subprocess.run([sys.executable, "-c", OPEN_CURRENT, url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [HEAD, "False"]
