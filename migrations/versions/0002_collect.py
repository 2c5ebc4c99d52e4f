"""collect: auth, series, readings, runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from envoylog.db.types import UtcDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.Column("enphase_user", sa.String(length=16), nullable=True),
        sa.Column("issued_at", UtcDateTime(), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("cloud_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cloud_retry_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_auth_gateway_id_gateways"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth")),
        sa.UniqueConstraint("gateway_id", "kind", name=op.f("uq_auth_gateway_id_kind")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=True),
        sa.Column("gateway_name", sa.String(length=100), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("cloud_requests", sa.Integer(), nullable=False),
        sa.Column("rows_added", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_runs_gateway_id_gateways"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_gateway_started", ["gateway_id", "started_at"], unique=False)

    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("phase", sa.SmallInteger(), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_series_gateway_id_gateways"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint(
            "gateway_id", "kind", "phase", "device", name=op.f("uq_series_gateway_id_kind_phase_device")
        ),
    )
    op.create_table(
        "battery_readings",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("read_at", UtcDateTime(), nullable=False),
        sa.Column("soc_percent", sa.Double(), nullable=True),
        sa.Column("watts", sa.Double(), nullable=True),
        sa.Column("wh_available", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name=op.f("fk_battery_readings_series_id_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("series_id", "read_at", name=op.f("pk_battery_readings")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "inverter_readings",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("reported_at", UtcDateTime(), nullable=False),
        sa.Column("watts", sa.Double(), nullable=False),
        sa.Column("max_watts", sa.Double(), nullable=True),
        sa.Column("joules_lifetime", sa.Double(), nullable=True),
        sa.Column("ac_volts", sa.Double(), nullable=True),
        sa.Column("ac_amps", sa.Double(), nullable=True),
        sa.Column("dc_volts", sa.Double(), nullable=True),
        sa.Column("dc_amps", sa.Double(), nullable=True),
        sa.Column("hz", sa.Double(), nullable=True),
        sa.Column("temperature_c", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name=op.f("fk_inverter_readings_series_id_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("series_id", "reported_at", name=op.f("pk_inverter_readings")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "meter_readings",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("read_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("watts", sa.Double(), nullable=False),
        sa.Column("wh_lifetime", sa.Double(), nullable=True),
        sa.Column("wh_imported_lifetime", sa.Double(), nullable=True),
        sa.Column("wh_exported_lifetime", sa.Double(), nullable=True),
        sa.Column("volts", sa.Double(), nullable=True),
        sa.Column("amps", sa.Double(), nullable=True),
        sa.Column("hz", sa.Double(), nullable=True),
        sa.Column("power_factor", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_meter_readings_series_id_series"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("series_id", "read_at", name=op.f("pk_meter_readings")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(sa.Column("discovery", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("discovery")

    op.drop_table("meter_readings")
    op.drop_table("inverter_readings")
    op.drop_table("battery_readings")
    op.drop_table("series")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_gateway_started")

    op.drop_table("runs")
    op.drop_table("auth")
