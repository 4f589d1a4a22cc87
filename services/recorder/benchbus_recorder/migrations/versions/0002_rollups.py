"""Downsampled readings (rollups) per level: charts of long ranges read them, and they outlive the raw rows.

Revision ID: 0002_rollups
Revises: 0001_initial
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_rollups"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollups",
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("bucket", sa.Double, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("raw", sa.Double),
        sa.Column("calibrated", sa.Double),
        sa.PrimaryKeyConstraint("level", "series_id", "bucket", name="pk_rollups"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("rollups")
