"""views for Grafana and other SQL readers: tidy series, energy steps, daily yields, inverters against the median

Plain views over the readings tables, so that a read-only role (or a read-only SQLite file) sees rows with
names instead of ids. Times stay as stored: `timestamptz` on PostgreSQL, epoch seconds on SQLite.

The row views (`envoylog_meter`, `envoylog_inverters`, `envoylog_batteries`, and the energy steps) are joins
the database flattens into the query that reads them: a filter on `time` becomes a range of the (series_id,
time) key. The energy steps pair each row with its series' previous row by one more lookup of that key (a
window function would hide the time filter from the index), and count the counter's rise when it is
plausible: the same source, not down (a reset or a wrap counts nothing for that step), and not faster than
any Envoy site (500 kW) or micro-inverter (2 kW) can produce. An inverter read without a joules counter
(`/api/v1/production/inverters`, most sites) counts its watts instead, as `envoylog report` does: a report's
watts are those of the interval that ends at it (at most 15 minutes), and reports not stored before it repeated
the previous row's watts. Rows are stored when a reading changes, and at least every half hour while an inverter
reports, so a longer interval is a silence of the logger: the previous watts hold for an hour at most. A step
belongs to the local day of its last second. Local days are the reader's: the session's TimeZone on PostgreSQL, the reading process's local time
on SQLite (which has no named zones).

The daily views group the steps over the whole history: fine for a query by hand; dashboards group the steps
of their time range themselves, which the key can serve.

SQLite's batch mode (a table rebuilt and renamed back) works with these views in place: env.py has SQLite
leave views alone on a rename. A later migration that drops or renames a column read here, or changes its type
on PostgreSQL, drops the views that read it first and creates them again after.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Dependents first: the order views are dropped in, reversed to create them.
VIEWS = (
    "envoylog_inverter_days",
    "envoylog_daily_yields",
    "envoylog_inverter_steps",
    "envoylog_energy_steps",
    "envoylog_batteries",
    "envoylog_inverters",
    "envoylog_meter",
    "envoylog_series",
    "envoylog_gateways",
)

MAX_SITE_WH_PER_S = 500_000 / 3600
MAX_INVERTER_J_PER_S = 2_000
JITTER_WH = 10  # a counter may step back by a little without a reset; a step up by it is allowed too
# An inverter's report covers at most the 15 minutes before it (the report's MAX_HOLD_S).
REPORT_S = 900
# Unchanged reports are stored every 30 minutes, so up to ~35 minutes between rows is normal; the views cannot
# see the run log, so any interval up to an hour counts as watched, and a longer one holds the power an hour.
MAX_HOLD_S = 3600


def _common() -> dict[str, str]:
    """The views whose SQL both databases share."""
    series = "JOIN series AS s ON s.id = {r}.series_id JOIN gateways AS g ON g.id = s.gateway_id"
    return {
        "envoylog_gateways": (
            "SELECT serial AS gateway, name AS gateway_name, firmware, part_number, metered,"
            " first_seen_at, last_seen_at FROM gateways"
        ),
        "envoylog_series": (
            "SELECT g.serial AS gateway, g.name AS gateway_name, s.kind, s.phase, s.device"
            " FROM series AS s JOIN gateways AS g ON g.id = s.gateway_id"
        ),
        "envoylog_meter": (
            "SELECT m.read_at AS time, g.serial AS gateway, g.name AS gateway_name, s.kind, s.phase,"
            " m.source, m.watts, m.wh_lifetime, m.wh_imported_lifetime, m.wh_exported_lifetime,"
            " m.volts, m.amps, m.hz, m.power_factor"
            f" FROM meter_readings AS m {series.format(r='m')}"
        ),
        "envoylog_inverters": (
            "SELECT r.reported_at AS time, g.serial AS gateway, g.name AS gateway_name, s.device AS inverter,"
            " r.watts, r.max_watts, r.joules_lifetime / 3600.0 AS wh_lifetime, r.ac_volts, r.ac_amps,"
            " r.dc_volts, r.dc_amps, r.hz, r.temperature_c"
            f" FROM inverter_readings AS r {series.format(r='r')}"
        ),
        "envoylog_batteries": (
            "SELECT b.read_at AS time, g.serial AS gateway, g.name AS gateway_name, s.device AS battery,"
            " b.soc_percent, b.watts, b.wh_available"
            f" FROM battery_readings AS b {series.format(r='b')}"
        ),
        "envoylog_daily_yields": (
            "SELECT gateway, gateway_name, day, day_start, SUM(production_wh) AS production_wh,"
            " SUM(consumption_wh) AS consumption_wh, SUM(import_wh) AS import_wh, SUM(export_wh) AS export_wh"
            " FROM envoylog_energy_steps WHERE phase = 0"
            " GROUP BY gateway, gateway_name, day, day_start"
        ),
        # The median of a gateway's inverters on a day: the middle one, or the mean of the middle two.
        "envoylog_inverter_days": (
            "WITH days AS (SELECT gateway, gateway_name, day, day_start, inverter, SUM(wh) AS wh"
            " FROM envoylog_inverter_steps GROUP BY gateway, gateway_name, day, day_start, inverter),"
            " ranked AS (SELECT gateway, day, wh,"
            " ROW_NUMBER() OVER (PARTITION BY gateway, day ORDER BY wh) AS k,"
            " COUNT(*) OVER (PARTITION BY gateway, day) AS n FROM days),"
            " medians AS (SELECT gateway, day, AVG(wh) AS median_wh FROM ranked"
            " WHERE k IN ((n + 1) / 2, (n + 2) / 2) GROUP BY gateway, day)"
            " SELECT d.gateway, d.gateway_name, d.day, d.day_start, d.inverter, d.wh, m.median_wh,"
            " 100.0 * d.wh / NULLIF(m.median_wh, 0) AS percent_of_median"
            " FROM days AS d JOIN medians AS m ON m.gateway = d.gateway AND m.day = d.day"
        ),
    }


def _step(counter: str, seconds: str, *, per_second: float, jitter: float, per_wh: float = 1.0) -> str:
    """A counter's plausible rise since the previous row, in Wh; 0 for a drop, a jump or a change of source."""
    rise = f"(c.{counter} - p.{counter})"
    source = "c.source = p.source AND " if per_wh == 1.0 else ""  # inverter reports have no source
    scale = "" if per_wh == 1.0 else f" / {per_wh!r}"
    return (
        f"CASE WHEN {source}{rise} > 0 AND {rise} <= {seconds} * {per_second!r} + {jitter!r}"
        f" THEN {rise}{scale} ELSE 0.0 END"
    )


def _site_step(counter: str, seconds: str) -> str:
    return _step(counter, seconds, per_second=MAX_SITE_WH_PER_S, jitter=float(JITTER_WH))


def _meter_steps(day: str, day_start: str, seconds: str, previous: str) -> str:
    site = "c.series_id = s.id AND s.kind IN ('production', 'consumption', 'net_consumption')"
    return (
        f"SELECT c.read_at AS time, {day} AS day, {day_start} AS day_start,"
        " g.serial AS gateway, g.name AS gateway_name, s.kind, s.phase,"
        f" CASE WHEN s.kind = 'production' THEN {_site_step('wh_lifetime', seconds)} END"
        " AS production_wh,"
        f" CASE WHEN s.kind = 'consumption' THEN {_site_step('wh_lifetime', seconds)} END"
        " AS consumption_wh,"
        " CASE WHEN s.kind = 'net_consumption' THEN"
        f" {_site_step('wh_imported_lifetime', seconds)} END AS import_wh,"
        " CASE WHEN s.kind = 'net_consumption' THEN"
        f" {_site_step('wh_exported_lifetime', seconds)} END AS export_wh"
        f" FROM meter_readings AS c JOIN series AS s ON {site}"
        f" JOIN gateways AS g ON g.id = s.gateway_id {previous}"
    )


def _inverter_steps(day: str, day_start: str, seconds: str, previous: str, least: str) -> str:
    counter = _step(
        "joules_lifetime", seconds, per_second=MAX_INVERTER_J_PER_S, jitter=JITTER_WH * 3600.0, per_wh=3600.0
    )
    # Without a counter on either row: the row's watts over its report, the previous row's over the rest.
    report, held = f"{least}({seconds}, {REPORT_S})", f"{least}({seconds}, {MAX_HOLD_S})"
    power = (
        f"(CASE WHEN c.watts > 0 THEN c.watts ELSE 0.0 END * {report}"
        f" + CASE WHEN p.watts > 0 THEN p.watts ELSE 0.0 END * ({held} - {report})) / 3600.0"
    )
    wh = f"CASE WHEN c.joules_lifetime IS NULL OR p.joules_lifetime IS NULL THEN {power} ELSE {counter} END"
    return (
        f"SELECT c.reported_at AS time, {day} AS day, {day_start} AS day_start,"
        " g.serial AS gateway, g.name AS gateway_name, s.device AS inverter,"
        f" {wh} AS wh"
        " FROM inverter_readings AS c JOIN series AS s ON s.id = c.series_id"
        f" JOIN gateways AS g ON g.id = s.gateway_id {previous}"
    )


def _sqlite() -> dict[str, str]:
    """SQLite: epoch seconds; the day in the local time of the process that reads; max() finds the previous row."""

    def day(at: str) -> tuple[str, str]:
        local = f"date({at} - 1, 'unixepoch', 'localtime')"
        return local, f"CAST(strftime('%s', {local}, 'utc') AS INTEGER)"

    def previous(table: str, at: str) -> str:
        return (
            f"JOIN {table} AS p ON p.series_id = c.series_id AND p.{at} = (SELECT max(q.{at})"
            f" FROM {table} AS q WHERE q.series_id = c.series_id AND q.{at} < c.{at})"
        )

    return {
        "envoylog_energy_steps": _meter_steps(
            *day("c.read_at"), "(c.read_at - p.read_at)", previous("meter_readings", "read_at")
        ),
        "envoylog_inverter_steps": _inverter_steps(
            *day("c.reported_at"),
            "(c.reported_at - p.reported_at)",
            previous("inverter_readings", "reported_at"),
            "min",
        ),
    }


def _postgresql() -> dict[str, str]:
    """PostgreSQL: the day in the session's TimeZone; a LATERAL top-1 finds the previous row."""

    def day(at: str) -> tuple[str, str]:
        local = f"CAST({at} - interval '1 second' AS date)"
        return local, f"CAST({local} AS timestamptz)"

    def previous(table: str, at: str, columns: str) -> str:
        return (
            f"JOIN LATERAL (SELECT q.{at}, {columns} FROM {table} AS q"
            f" WHERE q.series_id = c.series_id AND q.{at} < c.{at} ORDER BY q.{at} DESC LIMIT 1) AS p ON true"
        )

    meter_columns = "q.source, q.wh_lifetime, q.wh_imported_lifetime, q.wh_exported_lifetime"
    return {
        "envoylog_energy_steps": _meter_steps(
            *day("c.read_at"),
            "date_part('epoch', c.read_at - p.read_at)",
            previous("meter_readings", "read_at", meter_columns),
        ),
        "envoylog_inverter_steps": _inverter_steps(
            *day("c.reported_at"),
            "date_part('epoch', c.reported_at - p.reported_at)",
            previous("inverter_readings", "reported_at", "q.watts, q.joules_lifetime"),
            "LEAST",
        ),
    }


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    views = {**_common(), **(_sqlite() if dialect == "sqlite" else _postgresql())}
    for name in reversed(VIEWS):
        op.execute(f"CREATE VIEW {name} AS {views[name]}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
