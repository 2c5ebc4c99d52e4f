"""Write the Grafana dashboards beside this script, one per data source, from one list of panels.

    python grafana/dashboards.py          # rewrites envoylog-postgresql.json and envoylog-sqlite.json
    python grafana/dashboards.py --check  # exits 1 when a committed file differs from what this writes

The panels read envoylog's views (the migration `0008`). PostgreSQL's data source and the SQLite plugin
(frser-sqlite-datasource) differ in how a query names the time range: PostgreSQL's macros give timestamps,
the plugin has Grafana's `$__from`/`$__to` in milliseconds, compared here with the epoch seconds SQLite
stores. Every time filter is a range of the view's `time`, which the readings' (series, time) key serves.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = "${DS_ENVOYLOG}"


@dataclass(frozen=True)
class Flavour:
    """What differs between the two dashboards."""

    name: str  # the file's suffix
    plugin: str
    plugin_name: str
    range_filter: str  # a filter on `time` for the panel's range, both ends included
    steps_filter: str  # the same, the start excluded: a step ending at the range's start belongs before it


POSTGRESQL = Flavour(
    "postgresql",
    "grafana-postgresql-datasource",
    "PostgreSQL",
    "$__timeFilter(time)",
    "time > $__timeFrom() AND time <= $__timeTo()",
)

SQLITE = Flavour(
    "sqlite",
    "frser-sqlite-datasource",
    "SQLite",
    "time >= $__from / 1000 AND time <= $__to / 1000",
    "time > $__from / 1000 AND time <= $__to / 1000",
)


@dataclass(frozen=True)
class Panel:
    """A panel: its SQL (with {range} or {steps} for the time filter) and how Grafana shows it."""

    title: str
    sql: str
    kind: str  # "timeseries" | "table"
    unit: str
    bars: bool = False
    time_from: str | None = None  # a panel's own range, else the dashboard's
    description: str = ""


GATEWAY = "gateway = '$gateway'"

PANELS = (
    Panel(
        "Power today",
        "SELECT time,"
        " MAX(CASE WHEN kind = 'production' THEN watts END) AS production,"
        " MAX(CASE WHEN kind = 'consumption' THEN watts END) AS consumption,"
        " MAX(CASE WHEN kind = 'net_consumption' THEN watts END) AS net"
        f" FROM envoylog_meter WHERE {GATEWAY} AND phase = 0"
        " AND kind IN ('production', 'consumption', 'net_consumption') AND {range}"
        " GROUP BY time ORDER BY time",
        "timeseries",
        "watt",
        time_from="now/d",
        description="Site power as stored: a row when a reading changes, so a value holds until the next "
        "one. Net: import positive, export negative.",
    ),
    Panel(
        "Daily energy",
        "SELECT day_start AS time, SUM(production_wh) / 1000 AS production,"
        " SUM(consumption_wh) / 1000 AS consumption"
        f" FROM envoylog_energy_steps WHERE {GATEWAY} AND phase = 0 AND {{steps}}"
        " GROUP BY day_start ORDER BY day_start",
        "timeseries",
        "kwatth",
        bars=True,
        description="Energy per local day from the lifetime counters (the database session's time zone).",
    ),
    Panel(
        "Import and export",
        "SELECT day_start AS time, SUM(import_wh) / 1000 AS import, -SUM(export_wh) / 1000 AS export"
        f" FROM envoylog_energy_steps WHERE {GATEWAY} AND phase = 0 AND {{steps}}"
        " GROUP BY day_start ORDER BY day_start",
        "timeseries",
        "kwatth",
        bars=True,
        description="Energy bought from the grid (up) and sold to it (down), per local day.",
    ),
    Panel(
        "Inverters against the median",
        "WITH produced AS (SELECT inverter, SUM(wh) AS wh FROM envoylog_inverter_steps"
        f" WHERE {GATEWAY} AND {{steps}} GROUP BY inverter),"
        " inverters AS (SELECT i.device AS inverter, COALESCE(p.wh, 0) AS wh"
        " FROM envoylog_series AS i LEFT JOIN produced AS p ON p.inverter = i.device"
        " WHERE i.gateway = '$gateway' AND i.kind = 'inverter'),"
        " ranked AS (SELECT wh, ROW_NUMBER() OVER (ORDER BY wh) AS k, COUNT(*) OVER () AS n FROM inverters),"
        " median AS (SELECT AVG(wh) AS wh FROM ranked WHERE k IN ((n + 1) / 2, (n + 2) / 2))"
        " SELECT inverters.inverter, inverters.wh / 1000 AS energy,"
        " 100.0 * inverters.wh / NULLIF(median.wh, 0) AS percent_of_median"
        " FROM inverters CROSS JOIN median ORDER BY percent_of_median, inverters.inverter",
        "table",
        "percent",
        description="Each inverter's energy in the time range against the median inverter's: a shaded or "
        "failing panel stands out low. From the inverters' joules counters where the gateway gives them, "
        "else from their reported watts over time.",
    ),
)


def panel_sql(panel: Panel, flavour: Flavour) -> str:
    """The panel's SQL as the flavour's data source takes it."""
    return panel.sql.format(range=flavour.range_filter, steps=flavour.steps_filter)


def grafana_sql(sql: str, start: datetime, end: datetime, gateway: str) -> str:
    """`sql` with the macros and `$gateway` replaced as Grafana replaces them, for tests and benchmarks."""
    iso = {name: f"'{at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}'" for name, at in (("from", start), ("to", end))}
    millis = {name: str(int(at.timestamp() * 1000)) for name, at in (("from", start), ("to", end))}
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN {iso['from']} AND {iso['to']}", sql)
    sql = sql.replace("$__timeFrom()", iso["from"]).replace("$__timeTo()", iso["to"])
    sql = sql.replace("$__from", millis["from"]).replace("$__to", millis["to"])
    sql = sql.replace("$gateway", gateway)
    if "$" in sql:
        raise ValueError(f"a macro this function does not know: {sql}")
    return sql


def dashboard(flavour: Flavour) -> dict[str, Any]:
    """The dashboard JSON for one data source, ready for Grafana's import."""
    source = {"type": flavour.plugin, "uid": DATASOURCE}
    panels = []
    for index, panel in enumerate(PANELS):
        sql = panel_sql(panel, flavour)
        time_series = panel.kind == "timeseries"
        if flavour is SQLITE:
            target: dict[str, Any] = {
                "queryType": "time series" if time_series else "table",
                "rawQueryText": sql,
                "queryText": sql,
                "timeColumns": ["time"] if time_series else [],
            }
        else:
            target = {
                "format": "time_series" if time_series else "table",
                "rawQuery": True,
                "editorMode": "code",
                "rawSql": sql,
            }
        custom: dict[str, Any] = {}
        overrides: list[dict[str, Any]] = []
        if time_series:
            custom = (
                {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1}
                if panel.bars
                else {
                    "drawStyle": "line",
                    "lineInterpolation": "stepAfter",
                    "spanNulls": True,
                    "fillOpacity": 10,
                }
            )
            unit = panel.unit
        else:
            unit = "kwatth"
            overrides = [
                {
                    "matcher": {"id": "byName", "options": "percent_of_median"},
                    "properties": [
                        {"id": "unit", "value": panel.unit},
                        {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}},
                        {"id": "min", "value": 0},
                        {"id": "max", "value": 120},
                    ],
                }
            ]
        entry: dict[str, Any] = {
            "id": index + 1,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "datasource": source,
            "gridPos": {"h": 9, "w": 12, "x": 12 * (index % 2), "y": 9 * (index // 2)},
            "targets": [{"refId": "A", "datasource": source, **target}],
            "fieldConfig": {
                "defaults": {"unit": unit, "decimals": 1, "custom": custom},
                "overrides": overrides,
            },
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        }
        if panel.time_from is not None:
            entry["timeFrom"] = panel.time_from
        panels.append(entry)
    gateways = "SELECT gateway FROM envoylog_gateways ORDER BY gateway"
    # The SQLite plugin keeps a variable's query as it keeps a panel's.
    variable_query: Any = (
        gateways if flavour is POSTGRESQL else {"rawQueryText": gateways, "queryText": gateways}
    )
    return {
        "__inputs": [
            {
                "name": "DS_ENVOYLOG",
                "label": "envoylog database",
                "type": "datasource",
                "pluginId": flavour.plugin,
                "pluginName": flavour.plugin_name,
            }
        ],
        "title": f"envoylog ({flavour.plugin_name})",
        "uid": f"envoylog-{flavour.name}",
        "description": "Solar production, consumption and the grid from envoylog's database views.",
        "tags": ["envoylog", "solar"],
        "editable": True,
        "schemaVersion": 39,
        "time": {"from": "now-7d/d", "to": "now"},
        "refresh": "5m",
        "templating": {
            "list": [
                {
                    "name": "gateway",
                    "label": "Gateway",
                    "type": "query",
                    "datasource": source,
                    "query": variable_query,
                    "definition": gateways,
                    "refresh": 1,
                    "sort": 1,
                    "options": [],
                    "current": {},
                }
            ]
        },
        "panels": panels,
    }


def render(flavour: Flavour) -> str:
    """The file's text: stable key order and a final newline, so that a diff shows only what changed."""
    return json.dumps(dashboard(flavour), indent=2) + "\n"


def path_of(flavour: Flavour) -> Path:
    """Where the flavour's dashboard is kept."""
    return HERE / f"envoylog-{flavour.name}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for flavour in (POSTGRESQL, SQLITE):
        path = path_of(flavour)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != render(flavour):
                stale.append(path.name)
        else:
            path.write_text(render(flavour), encoding="utf-8")
    if stale:
        sys.exit(f"out of date: {', '.join(stale)} (run python grafana/dashboards.py)")


if __name__ == "__main__":
    main()
