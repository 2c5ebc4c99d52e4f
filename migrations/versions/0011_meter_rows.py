"""a meter channel's total and phases in one row; views `meter_totals` and `meter_readings` read them

`meter_data` had a row per phase series and time. It now has a row per channel (the total's series) and
time, with four slots of columns side by side: the total's under the values' names, L1's prefixed `l1_`,
and so on; a slot is empty (watts NULL) when its phase had no new reading then. A total's amps and counters
are stored minus the phases in its row; a counter that is exactly imported minus exported is not
stored (NULL), nor a phase's frequency that is the total's, nor a total's voltage that is the mean of three
phases' (-1 where such a value is unknown but the others known). `meter_totals` gives the totals as
`meter_readings` gave them; `meter_readings` gives every slot as a row of its phase's series, as before. Every
reading comes back as it was. The Grafana views of 0008 are made again; `envoylog_meter` and `envoylog_energy_steps` read
the slots of `meter_data` themselves (a union over `meter_readings` would be read whole for every row's
previous row).

A channel with phases but no total series gets one (phase 0): its rows hang on it.

`inverter_data` is made again with its currents in two bytes (milliamperes up to 32.767 A: the collector
keeps inverter currents within 32 A now, and no micro-inverter carries more) and its columns widest first.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from envoylog.db.types import UtcDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = ("eim", "meters", "api_v1", "inverters")
KINDS = ("production", "consumption", "net_consumption")
SLOTS = ("", "l1_", "l2_", "l3_")
COUNTERS = ("wh_lifetime", "wh_imported_lifetime", "wh_exported_lifetime")
MEASURES = ("watts", "volts", "amps", "hz")
RATIOS = ("power_factor",)
VALUES = (*COUNTERS, *MEASURES, *RATIOS)
# A total's watts stay whole: reports order a day's rows by them (the peak), which a sum per row would slow.
RESIDUAL = ("wh_lifetime", "wh_imported_lifetime", "wh_exported_lifetime", "amps")
UNKNOWN = -1  # a voltage or frequency that is unknown where the others in the row would give one
# The three phases' mean voltage to the millivolt, half up: how the collector makes a total's.
_MEAN = "((CAST({prefix}1{sep}volts AS BIGINT) + {prefix}2{sep}volts + {prefix}3{sep}volts + 1) / 3)"
# The readings' columns, in the order of the tables and views before.
VIEW_COLUMNS = (
    "source",
    "watts",
    "wh_lifetime",
    "wh_imported_lifetime",
    "wh_exported_lifetime",
    "volts",
    "amps",
    "hz",
    "power_factor",
)
OLD_TYPES = {**dict.fromkeys(COUNTERS, sa.BigInteger()), **dict.fromkeys(MEASURES, sa.Integer())}


# The inverters' table, made again: its currents in two bytes (readings/plausible.py bounds them to 32 A),
# its columns widest first. (column, new type, old type), in the order of the view.
INVERTER = (
    ("watts", sa.Integer(), sa.Integer()),
    ("max_watts", sa.Integer(), sa.Integer()),
    ("joules_lifetime", sa.BigInteger(), sa.BigInteger()),
    ("ac_volts", sa.Integer(), sa.Integer()),
    ("ac_amps", sa.SmallInteger(), sa.Integer()),
    ("dc_volts", sa.Integer(), sa.Integer()),
    ("dc_amps", sa.SmallInteger(), sa.Integer()),
    ("hz", sa.Integer(), sa.Integer()),
    ("temperature_c", sa.Integer(), sa.Integer()),
)
SMALL = 32_767


def _grafana_views() -> ModuleType:
    """Migration 0008, whose views read `meter_readings` and are made again over the new one."""
    path = Path(__file__).with_name("0008_grafana_views.py")
    spec = importlib.util.spec_from_file_location("envoylog_migration_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rename_data(to: str, table: str = "meter_data") -> None:
    op.rename_table(table, to)
    if op.get_bind().dialect.name == "postgresql":  # the key's index keeps its name, wanted by the new table
        op.execute(f"ALTER TABLE {to} RENAME CONSTRAINT pk_{table} TO pk_{to}")


def _rebuild_inverters(new: bool) -> None:
    """inverter_data made again with the new (or, going down, the old) column types and order."""
    op.execute("DROP VIEW inverter_readings")
    _rename_data("inverter_data_old", "inverter_data")
    types = {name: (newer if new else older) for name, newer, older in INVERTER}
    width = {sa.BigInteger: 0, sa.Integer: 1, sa.SmallInteger: 2}
    order = sorted(types, key=lambda name: width[type(types[name])])
    op.create_table(
        "inverter_data",
        sa.Column("reported_at", UtcDateTime(), nullable=False),
        *[
            sa.Column(name, types[name], nullable=name != "watts")
            for name in order
            if types[name].__class__ is sa.BigInteger
        ],
        sa.Column("series_id", sa.Integer(), nullable=False),
        *[
            sa.Column(name, types[name], nullable=name != "watts")
            for name in order
            if types[name].__class__ is not sa.BigInteger
        ],
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_inverter_data_series_id_series"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("series_id", "reported_at", name=op.f("pk_inverter_data")),
        sqlite_with_rowid=False,
    )
    names = [name for name, _, _ in INVERTER]
    # Going up, a current beyond two bytes (more than 32 A: no micro-inverter's) is unknown, as now collected.
    values = [
        f"CASE WHEN ABS({name}) > {SMALL} THEN NULL ELSE {name} END"
        if new and isinstance(types[name], sa.SmallInteger)
        else name
        for name in names
    ]
    op.execute(
        f"INSERT INTO inverter_data (series_id, reported_at, {', '.join(names)})"
        f" SELECT series_id, reported_at, {', '.join(values)} FROM inverter_data_old ORDER BY series_id, reported_at"
    )
    op.drop_table("inverter_data_old")
    decoded = ", ".join(
        f"CAST({name} AS DOUBLE PRECISION)" + ("" if name == "joules_lifetime" else " / 1000") + f" AS {name}"
        for name in names
    )
    op.execute(
        f"CREATE VIEW inverter_readings AS SELECT series_id, reported_at, {decoded} FROM inverter_data"
    )


def _big(column: str) -> str:
    return f"CAST({column} AS BIGINT)"


# --- the encoding, from a row of the phases' plain values p0_watts, p1_watts, ... ---


def _encoded(phase: int, name: str) -> str:
    value = f"p{phase}_{name}"
    if name == "wh_lifetime":
        derived = f"{value} = p{phase}_wh_imported_lifetime - p{phase}_wh_exported_lifetime"
        kept = f"{value} - ({_phases(name, 'p{p}_' + name)})" if phase == 0 else value
        return f"CASE WHEN {derived} THEN NULL ELSE {kept} END"
    if phase == 0 and name in RESIDUAL:
        return f"{value} - ({_phases(name, 'p{p}_' + name)})"
    if phase and name == "hz":
        return (
            f"CASE WHEN p{phase}_watts IS NULL OR p0_watts IS NULL OR p0_hz IS NULL THEN {value}"
            f" WHEN {value} IS NULL THEN {UNKNOWN} WHEN {value} = p0_hz THEN NULL ELSE {value} END"
        )
    if phase == 0 and name == "volts":
        known = " AND ".join(f"p{p}_volts IS NOT NULL" for p in (1, 2, 3))
        return (
            f"CASE WHEN p0_watts IS NULL OR NOT ({known}) THEN {value} WHEN {value} IS NULL THEN {UNKNOWN}"
            f" WHEN {value} = {_MEAN.format(prefix='p', sep='_')} THEN NULL ELSE {value} END"
        )
    return value


def _phases(name: str, pattern: str) -> str:
    return " + ".join(f"COALESCE({pattern.format(p=phase)}, 0)" for phase in (1, 2, 3))


# --- the decoding, from a stored row d ---


def _decoded(phase: int, name: str) -> str:
    stored = _big(f"d.{SLOTS[phase]}{name}")
    if name == "wh_lifetime":
        plain = f"{stored} + {_decoded_phases(name)}" if phase == 0 else stored
        difference = f"{_decoded(phase, 'wh_imported_lifetime')} - {_decoded(phase, 'wh_exported_lifetime')}"
        return f"COALESCE({plain}, {difference})"
    if phase == 0 and name in RESIDUAL:
        return f"({stored} + {_decoded_phases(name)})"
    if phase and name == "hz":
        return f"CASE WHEN {stored} IS NULL THEN {_big('d.hz')} WHEN {stored} = {UNKNOWN} THEN NULL ELSE {stored} END"
    if phase == 0 and name == "volts":
        mean = _MEAN.format(prefix="d.l", sep="_")
        return f"CASE WHEN {stored} IS NULL THEN {mean} WHEN {stored} = {UNKNOWN} THEN NULL ELSE {stored} END"
    return stored


def _decoded_phases(name: str) -> str:
    return " + ".join(f"COALESCE({_decoded(phase, name)}, 0)" for phase in (1, 2, 3))


def _select(phase: int) -> str:
    """One slot's readings as rows of its phase's series, in the readings' columns and units."""
    sources = " ".join(f"WHEN {code} THEN '{name}'" for code, name in enumerate(SOURCES))
    columns = [f"CASE d.source {sources} END AS source"]
    columns += [
        f"CAST({_decoded(phase, name)} AS DOUBLE PRECISION) / 1000 AS {name}"
        for name in VIEW_COLUMNS
        if name != "source"
    ]
    if phase == 0:
        return f"SELECT d.series_id, d.read_at, {', '.join(columns)} FROM meter_data AS d WHERE d.watts IS NOT NULL"
    return (
        f"SELECT ph.id AS series_id, d.read_at, {', '.join(columns)} FROM meter_data AS d"
        " JOIN series AS t ON t.id = d.series_id"
        " JOIN series AS ph ON ph.gateway_id = t.gateway_id AND ph.kind = t.kind AND ph.device = t.device"
        f" AND ph.phase = {phase}"
        f" WHERE d.{SLOTS[phase]}watts IS NOT NULL"
    )


def _create_views() -> None:
    op.execute(f"CREATE VIEW meter_totals AS {_select(0)}")
    op.execute(f"CREATE VIEW meter_readings AS {' UNION ALL '.join(_select(phase) for phase in range(4))}")


# --- the Grafana views of 0008 that read the meters ---
# Over `meter_readings` (a union) the energy steps' lookup of each row's previous row would read the whole union
# for every row. They read each phase's slot of `meter_data` instead, one arm of a union per phase: a relation
# both databases flatten into the query, so that a filter on time stays a range of the key, and the previous
# row with a reading of that phase is one more descent of the key.


def _slot(phase: int) -> str:
    """A phase's readings from the rows that hold one, keyed by their channel, in the readings' units."""
    sources = " ".join(f"WHEN {code} THEN '{name}'" for code, name in enumerate(SOURCES))
    values = ", ".join(
        f"CAST({_decoded(phase, name)} AS DOUBLE PRECISION) / 1000 AS {name}" for name in VIEW_COLUMNS[1:]
    )
    return (
        f"SELECT d.series_id AS channel_id, d.read_at, CASE d.source {sources} END AS source, {values}"
        f" FROM meter_data AS d WHERE d.{SLOTS[phase]}watts IS NOT NULL"
    )


def _phase_series(phase: int, kinds: str) -> str:
    """The series `s` of the phase whose slot `c` is, from the row's channel. (The arms give their phase as a
    constant: a reader's `phase = 0` then skips the other arms before reading a row.)"""
    if phase == 0:
        return f"JOIN series AS s ON s.id = c.channel_id AND s.kind IN ({kinds})"
    return (
        "JOIN series AS t ON t.id = c.channel_id"
        " JOIN series AS s ON s.gateway_id = t.gateway_id AND s.kind = t.kind AND s.device = t.device"
        f" AND s.phase = {phase} AND s.kind IN ({kinds})"
    )


def _grafana_meter_views(grafana: ModuleType, dialect: str) -> dict[str, str]:
    """`envoylog_meter` and `envoylog_energy_steps` over the slots, as 0008 made them over the rows."""
    kinds = ", ".join(f"'{kind}'" for kind in KINDS)
    rows, steps = [], []
    for phase in range(4):
        slot, series = _slot(phase), _phase_series(phase, kinds)
        rows.append(
            f"SELECT c.read_at AS time, g.serial AS gateway, g.name AS gateway_name, s.kind, {phase} AS phase,"
            " c.source, c.watts, c.wh_lifetime, c.wh_imported_lifetime, c.wh_exported_lifetime,"
            f" c.volts, c.amps, c.hz, c.power_factor FROM ({slot}) AS c {series}"
            " JOIN gateways AS g ON g.id = s.gateway_id"
        )
        newest_before = (
            f"FROM ({slot}) AS q WHERE q.channel_id = c.channel_id AND q.read_at < c.read_at"
            " ORDER BY q.read_at DESC LIMIT 1"
        )
        if dialect == "sqlite":
            local = "date(c.read_at - 1, 'unixepoch', 'localtime')"
            day, day_start = local, f"CAST(strftime('%s', {local}, 'utc') AS INTEGER)"
            seconds = "(c.read_at - p.read_at)"
            previous = (
                f"JOIN ({slot}) AS p ON p.channel_id = c.channel_id"
                f" AND p.read_at = (SELECT q.read_at {newest_before})"
            )
        else:
            local = "CAST(c.read_at - interval '1 second' AS date)"
            day, day_start = local, f"CAST({local} AS timestamptz)"
            seconds = "date_part('epoch', c.read_at - p.read_at)"
            counters = "q.source, q.wh_lifetime, q.wh_imported_lifetime, q.wh_exported_lifetime"
            previous = f"JOIN LATERAL (SELECT q.read_at, {counters} {newest_before}) AS p ON true"
        step = grafana._site_step
        steps.append(
            f"SELECT c.read_at AS time, {day} AS day, {day_start} AS day_start,"
            f" g.serial AS gateway, g.name AS gateway_name, s.kind, {phase} AS phase,"
            f" CASE WHEN s.kind = 'production' THEN {step('wh_lifetime', seconds)} END AS production_wh,"
            f" CASE WHEN s.kind = 'consumption' THEN {step('wh_lifetime', seconds)} END AS consumption_wh,"
            " CASE WHEN s.kind = 'net_consumption' THEN"
            f" {step('wh_imported_lifetime', seconds)} END AS import_wh,"
            " CASE WHEN s.kind = 'net_consumption' THEN"
            f" {step('wh_exported_lifetime', seconds)} END AS export_wh"
            f" FROM ({slot}) AS c {series} JOIN gateways AS g ON g.id = s.gateway_id {previous}"
        )
    return {"envoylog_meter": " UNION ALL ".join(rows), "envoylog_energy_steps": " UNION ALL ".join(steps)}


def _create_grafana_views(grafana: ModuleType) -> None:
    dialect = op.get_bind().dialect.name
    views = {**grafana._common(), **(grafana._sqlite() if dialect == "sqlite" else grafana._postgresql())}
    views.update(_grafana_meter_views(grafana, dialect))
    for name in reversed(grafana.VIEWS):
        op.execute(f"CREATE VIEW {name} AS {views[name]}")


def upgrade() -> None:
    grafana = _grafana_views()
    grafana.downgrade()
    op.execute("DROP VIEW meter_readings")
    kinds = ", ".join(f"'{kind}'" for kind in KINDS)
    op.execute(
        "INSERT INTO series (gateway_id, kind, phase, device)"
        " SELECT DISTINCT s.gateway_id, s.kind, 0, s.device FROM series AS s"
        f" WHERE s.phase > 0 AND s.kind IN ({kinds}) AND NOT EXISTS (SELECT 1 FROM series AS a"
        " WHERE a.gateway_id = s.gateway_id AND a.kind = s.kind AND a.device = s.device AND a.phase = 0)"
    )
    _rename_data("meter_data_0010")
    _create_table()
    pivot = ", ".join(
        f"MAX(CASE WHEN s.phase = {phase} THEN m.{name} END) AS p{phase}_{name}"
        for phase in range(4)
        for name in VALUES
    )
    grouped = (
        f"SELECT a.id AS series_id, m.read_at, {pivot}, MIN(m.source) AS source,"
        " COUNT(DISTINCT m.source) AS sources"
        " FROM meter_data_0010 AS m JOIN series AS s ON s.id = m.series_id"
        " JOIN series AS a ON a.gateway_id = s.gateway_id AND a.kind = s.kind AND a.device = s.device"
        " AND a.phase = 0 GROUP BY a.id, m.read_at"
    )
    mixed = op.get_bind().execute(sa.text(f"SELECT COUNT(*) FROM ({grouped}) AS g WHERE g.sources > 1"))
    if mixed.scalar_one():
        raise RuntimeError(
            "meter readings of one channel and time from two sources: cannot be stored as one row"
        )
    names = [f"{prefix}{name}" for prefix in SLOTS for name in VALUES]
    encoded = [_encoded(phase, name) for phase in range(4) for name in VALUES]
    op.execute(
        f"INSERT INTO meter_data (series_id, read_at, {', '.join(names)}, source)"
        f" SELECT series_id, read_at, {', '.join(encoded)}, source FROM ({grouped}) AS g"
        " ORDER BY series_id, read_at"
    )
    op.drop_table("meter_data_0010")
    _create_views()
    _rebuild_inverters(new=True)
    _create_grafana_views(grafana)


def _create_table() -> None:
    kinds = ((COUNTERS, sa.BigInteger()), (MEASURES, sa.Integer()), (RATIOS, sa.SmallInteger()))
    columns: list[sa.Column[object]] = [sa.Column("read_at", UtcDateTime(), nullable=False)]
    for names, kind in kinds:
        if isinstance(kind, sa.Integer) and not isinstance(kind, sa.BigInteger | sa.SmallInteger):
            columns.append(sa.Column("series_id", sa.Integer(), nullable=False))
        columns += [sa.Column(f"{prefix}{name}", kind, nullable=True) for prefix in SLOTS for name in names]
    op.create_table(
        "meter_data",
        *columns,
        sa.Column("source", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_meter_data_series_id_series"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("series_id", "read_at", name=op.f("pk_meter_data")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    grafana = _grafana_views()
    grafana.downgrade()
    op.execute("DROP VIEW meter_readings")
    op.execute("DROP VIEW meter_totals")
    _rebuild_inverters(new=False)
    _rename_data("meter_data_0011")
    old = sorted(VALUES, key=lambda name: (name not in COUNTERS, name in RATIOS))
    op.create_table(
        "meter_data",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("read_at", UtcDateTime(), nullable=False),
        *[
            sa.Column(name, OLD_TYPES.get(name, sa.SmallInteger()), nullable=name != "watts")
            for name in old
            if name != "power_factor"
        ],
        sa.Column("source", sa.SmallInteger(), nullable=False),
        sa.Column("power_factor", sa.SmallInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_meter_data_series_id_series"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("series_id", "read_at", name=op.f("pk_meter_data")),
        sqlite_with_rowid=False,
    )
    branches = []
    for phase in range(4):
        values = ", ".join(_decoded(phase, name) for name in VALUES)
        if phase == 0:
            branches.append(
                f"SELECT d.series_id, d.read_at, {values}, d.source FROM meter_data_0011 AS d"
                " WHERE d.watts IS NOT NULL"
            )
        else:
            branches.append(
                f"SELECT ph.id, d.read_at, {values}, d.source FROM meter_data_0011 AS d"
                " JOIN series AS t ON t.id = d.series_id"
                " JOIN series AS ph ON ph.gateway_id = t.gateway_id AND ph.kind = t.kind"
                f" AND ph.device = t.device AND ph.phase = {phase} WHERE d.{SLOTS[phase]}watts IS NOT NULL"
            )
    op.execute(
        f"INSERT INTO meter_data (series_id, read_at, {', '.join(VALUES)}, source)"
        f" SELECT * FROM ({' UNION ALL '.join(branches)}) AS r ORDER BY 1, 2"
    )
    op.drop_table("meter_data_0011")
    sources = " ".join(f"WHEN {code} THEN '{name}'" for code, name in enumerate(SOURCES))
    decoded = ", ".join(
        f"CASE source {sources} END AS source"
        if name == "source"
        else f"CAST({name} AS DOUBLE PRECISION) / 1000 AS {name}"
        for name in VIEW_COLUMNS
    )
    op.execute(f"CREATE VIEW meter_readings AS SELECT series_id, read_at, {decoded} FROM meter_data")
    grafana.upgrade()
