"""A real PostgreSQL server for the recorder's tests: Debian's initdb and pg_ctl in a temporary folder, on a free port.

PostgreSQL refuses to run as root; as root the cluster belongs to `nobody` and runs through runuser. Where
BENCHBUS_TEST_POSTGRES_URL is set, that server is used instead (a database per test is made on it either way).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

from benchbus.testing.broker import free_port


def pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


class PostgresServer:
    def __init__(self) -> None:
        self.url_from_env = os.environ.get("BENCHBUS_TEST_POSTGRES_URL")
        self.workdir: Path | None = None
        self.port = 0
        self._as_user: list[str] = []

    @property
    def admin_url(self) -> str:
        if self.url_from_env:
            return self.url_from_env
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if self.url_from_env:
            return
        initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL's initdb/pg_ctl are not installed: ./dev bootstrap installs Debian's "
                               "postgresql (services/recorder/debian-packages.txt), or set BENCHBUS_TEST_POSTGRES_URL")
        self.workdir = Path(tempfile.mkdtemp(prefix="benchbus-postgres-"))
        self.workdir.chmod(0o755)
        data = self.workdir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "nobody", "nogroup")
            self._as_user = ["runuser", "-u", "nobody", "--"]
        self.port = free_port()
        self._run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        self.pg_ctl("start", "-w")

    def pg_ctl(self, *action: str) -> None:
        """pg_ctl on this cluster (start, stop -m immediate, ...)."""
        assert self.workdir is not None, "a server given by URL is not ours to control"
        options = f"-p {self.port} -k {self.workdir} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run([str(pg_binary("pg_ctl")), "-D", str(self.workdir / "data"), "-o", options,
                   "-l", str(self.workdir / "postgres.log"), *action])

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(self._as_user + argv, capture_output=True, text=True, cwd=self.workdir)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def new_database(self) -> str:
        """A fresh, empty database on the server; its SQLAlchemy URL."""
        name = f"recorder_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return sa.engine.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.workdir is None:
            return
        pg_ctl = pg_binary("pg_ctl")
        if pg_ctl is not None:
            subprocess.run(self._as_user + [pg_ctl, "-D", str(self.workdir / "data"), "-m", "immediate", "stop"],
                           capture_output=True, cwd=self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
