"""The tables at the newest schema revision, for queries (the migrations in migrations/versions create them)."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

series = sa.Table(
    "series", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device", sa.String(100), nullable=False),
    sa.Column("param", sa.String(64), nullable=False),
    sa.Column("vial", sa.Integer, nullable=False),
    sa.UniqueConstraint("device", "param", "vial", name="uq_series"),
)
fits = sa.Table(
    "fits", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
)
readings = sa.Table(
    "readings", metadata,
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("time", sa.Double, primary_key=True),
    sa.Column("raw", sa.Double),
    sa.Column("calibrated", sa.Double),
    sa.Column("fit_id", sa.Integer),
)
configs = sa.Table(
    "configs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("digest", sa.String(40), nullable=False, unique=True),
    sa.Column("body", sa.Text, nullable=False),
)
broadcasts = sa.Table(
    "broadcasts", metadata,
    sa.Column("device", sa.String(100), primary_key=True),
    sa.Column("time", sa.Double, primary_key=True),
    sa.Column("cycle", sa.Integer),
    sa.Column("cycle_s", sa.Double),
    sa.Column("broadcast_timing", sa.Double),
    sa.Column("status", sa.Text),
    sa.Column("errors", sa.Text),
    sa.Column("calibration", sa.Text),
    sa.Column("config_id", sa.Integer),
    sa.Column("ip", sa.String(100)),
)
events = sa.Table(
    "events", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("device", sa.String(100), nullable=False),
    sa.Column("service", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("time", sa.Double, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("digest", sa.String(40), nullable=False),
)
audit = sa.Table(
    "audit", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("device", sa.String(100), nullable=False),
    sa.Column("time", sa.Double, nullable=False),
    sa.Column("service", sa.String(64), nullable=False),
    sa.Column("command", sa.String(64), nullable=False),
    sa.Column("principal", sa.String(200), nullable=False),
    sa.Column("on_behalf_of", sa.String(200)),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("request", sa.Text),
    sa.Column("duration_ms", sa.Double),
    sa.Column("digest", sa.String(40), nullable=False, unique=True),
)
service_states = sa.Table(
    "service_states", metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("device", sa.String(100), nullable=False),
    sa.Column("service", sa.String(64), nullable=False),
    sa.Column("time", sa.Double, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("digest", sa.String(40), nullable=False, unique=True),
)
rollups = sa.Table(
    "rollups", metadata,
    sa.Column("level", sa.Integer, primary_key=True),
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("bucket", sa.Double, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("raw", sa.Double),
    sa.Column("calibrated", sa.Double),
)
