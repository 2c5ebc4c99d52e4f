"""readings stored as integers in thousandths of their units, shown as before by views of the same names

`meter_readings`, `inverter_readings` and `battery_readings` become views over new tables `meter_data`,
`inverter_data` and `battery_data`, whose values are integers: thousandths of a watt, watt-hour, volt,
ampere, hertz, power factor, percent or degree; an inverter's energy in whole joules; a meter's source as a
code (0 eim, 1 meters, 2 api_v1, 3 inverters). The gateway reports nothing finer (at most three decimals in
its JSON, mV/mA/mHz in device data), so every stored value comes back as the same float. The views divide in
the database; the Grafana views of 0008 read them as they read the tables.

Rows are copied in key order, so a migrated SQLite file stores them densely; the space the old tables held
is reused as the history grows (`VACUUM` returns it at once). PostgreSQL frees it when the old tables are
dropped.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from envoylog.db.types import UtcDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = ("eim", "meters", "api_v1", "inverters")

# (table, time column, [(column, stored type, scale, old type nullable)] in the old tables' order)
TABLES = (
    (
        "meter",
        "read_at",
        [
            ("source", sa.SmallInteger(), None, False),
            ("watts", sa.Integer(), 1000, False),
            ("wh_lifetime", sa.BigInteger(), 1000, True),
            ("wh_imported_lifetime", sa.BigInteger(), 1000, True),
            ("wh_exported_lifetime", sa.BigInteger(), 1000, True),
            ("volts", sa.Integer(), 1000, True),
            ("amps", sa.Integer(), 1000, True),
            ("hz", sa.Integer(), 1000, True),
            ("power_factor", sa.SmallInteger(), 1000, True),
        ],
    ),
    (
        "inverter",
        "reported_at",
        [
            ("watts", sa.Integer(), 1000, False),
            ("max_watts", sa.Integer(), 1000, True),
            ("joules_lifetime", sa.BigInteger(), 1, True),
            ("ac_volts", sa.Integer(), 1000, True),
            ("ac_amps", sa.Integer(), 1000, True),
            ("dc_volts", sa.Integer(), 1000, True),
            ("dc_amps", sa.Integer(), 1000, True),
            ("hz", sa.Integer(), 1000, True),
            ("temperature_c", sa.Integer(), 1000, True),
        ],
    ),
    (
        "battery",
        "read_at",
        [
            ("soc_percent", sa.Integer(), 1000, True),
            ("watts", sa.Integer(), 1000, True),
            ("wh_available", sa.BigInteger(), 1000, True),
        ],
    ),
)

# PostgreSQL lays a row out in column order: the eight-byte columns first, then the four- and two-byte ones.
_WIDTH = {sa.BigInteger: 0, sa.Integer: 1, sa.SmallInteger: 2}


def _grafana_views() -> ModuleType:
    """Migration 0008, whose views read the readings and are made again over the new ones."""
    path = Path(__file__).with_name("0008_grafana_views.py")
    spec = importlib.util.spec_from_file_location("envoylog_migration_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _decoded(column: str, scale: int | None) -> str:
    if scale is None:  # the source
        cases = " ".join(f"WHEN {code} THEN '{name}'" for code, name in enumerate(SOURCES))
        return f"CASE {column} {cases} END"
    divided = "" if scale == 1 else f" / {scale}"
    return f"CAST({column} AS DOUBLE PRECISION){divided}"


def _encoded(column: str, scale: int | None) -> str:
    if scale is None:
        cases = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(SOURCES))
        return f"CASE {column} {cases} END"
    return f"CAST(ROUND({column} * {scale}) AS BIGINT)"


def upgrade() -> None:
    grafana = _grafana_views()
    grafana.downgrade()
    for name, time, columns in TABLES:
        stored = sorted(columns, key=lambda c: _WIDTH[type(c[1])])
        op.create_table(
            f"{name}_data",
            sa.Column("series_id", sa.Integer(), nullable=False),
            sa.Column(time, UtcDateTime(), nullable=False),
            *[sa.Column(column, kind, nullable=nullable) for column, kind, _, nullable in stored],
            sa.ForeignKeyConstraint(
                ["series_id"],
                ["series.id"],
                name=op.f(f"fk_{name}_data_series_id_series"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("series_id", time, name=op.f(f"pk_{name}_data")),
            sqlite_with_rowid=False,
        )
        names = ", ".join(column for column, *_ in columns)
        values = ", ".join(_encoded(column, scale) for column, _, scale, _ in columns)
        op.execute(
            f"INSERT INTO {name}_data (series_id, {time}, {names})"
            f" SELECT series_id, {time}, {values} FROM {name}_readings ORDER BY series_id, {time}"
        )
        op.drop_table(f"{name}_readings")
        decoded = ", ".join(f"{_decoded(column, scale)} AS {column}" for column, _, scale, _ in columns)
        op.execute(f"CREATE VIEW {name}_readings AS SELECT series_id, {time}, {decoded} FROM {name}_data")
    grafana.upgrade()


def downgrade() -> None:
    grafana = _grafana_views()
    grafana.downgrade()
    for name, time, columns in TABLES:
        op.execute(f"DROP VIEW {name}_readings")
        op.create_table(
            f"{name}_readings",
            sa.Column("series_id", sa.Integer(), nullable=False),
            sa.Column(time, UtcDateTime(), nullable=False),
            *[
                sa.Column(column, sa.String(length=16) if scale is None else sa.Double(), nullable=nullable)
                for column, _, scale, nullable in columns
            ],
            sa.ForeignKeyConstraint(
                ["series_id"],
                ["series.id"],
                name=op.f(f"fk_{name}_readings_series_id_series"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("series_id", time, name=op.f(f"pk_{name}_readings")),
            sqlite_with_rowid=False,
        )
        names = ", ".join(column for column, *_ in columns)
        decoded = ", ".join(_decoded(column, scale) for column, _, scale, _ in columns)
        op.execute(
            f"INSERT INTO {name}_readings (series_id, {time}, {names})"
            f" SELECT series_id, {time}, {decoded} FROM {name}_data ORDER BY series_id, {time}"
        )
        op.drop_table(f"{name}_data")
    grafana.upgrade()
