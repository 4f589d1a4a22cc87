"""The first schema: readings keyed by series (device, param, vial) and time, broadcasts, events, audit, $state.

Revision ID: 0001_initial
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

# A bigint id that is SQLite's rowid alias there (only INTEGER PRIMARY KEY autoincrements in SQLite).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("vial", sa.Integer, nullable=False),
        sa.UniqueConstraint("device", "param", "vial", name="uq_series"),
    )
    op.create_table(
        "fits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
    )
    # One row per vial, param and broadcast; the key makes a redelivered broadcast a no-op. Without a rowid in
    # SQLite the rows sit in key order: a series' time range is one contiguous read.
    op.create_table(
        "readings",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("time", sa.Double, nullable=False),
        sa.Column("raw", sa.Double),
        sa.Column("calibrated", sa.Double),
        sa.Column("fit_id", sa.Integer),
        sa.PrimaryKeyConstraint("series_id", "time", name="pk_readings"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "configs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(40), nullable=False, unique=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "broadcasts",
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("time", sa.Double, nullable=False),
        sa.Column("cycle", sa.Integer),
        sa.Column("cycle_s", sa.Double),
        sa.Column("broadcast_timing", sa.Double),
        sa.Column("status", sa.Text),
        sa.Column("errors", sa.Text),
        sa.Column("calibration", sa.Text),
        sa.Column("config_id", sa.Integer),
        sa.Column("ip", sa.String(100)),
        sa.PrimaryKeyConstraint("device", "time", name="pk_broadcasts"),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("time", sa.Double, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("digest", sa.String(40), nullable=False),
    )
    op.create_index("ix_events_device_time", "events", ["device", "time"])
    op.create_index("ix_events_digest", "events", ["digest"])
    op.create_table(
        "audit",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
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
    op.create_index("ix_audit_device_time", "audit", ["device", "time"])
    op.create_table(
        "service_states",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("time", sa.Double, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("digest", sa.String(40), nullable=False, unique=True),
    )
    op.create_index("ix_service_states_device_time", "service_states", ["device", "time"])


def downgrade() -> None:
    for table in ("service_states", "audit", "events", "broadcasts", "configs", "readings", "fits", "series"):
        op.drop_table(table)
