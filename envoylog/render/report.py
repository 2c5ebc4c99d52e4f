"""`envoylog report` for people and spreadsheets: the period options, the text table and the CSV."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Hashable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from envoylog.render.text import printable
from envoylog.reports.columns import DAILY_COLUMNS
from envoylog.times import iso_z

NO_VALUE = "-"
_ENERGY_COLUMNS = ("production_wh", "consumption_wh", "import_wh", "export_wh", "self_consumed_wh")
_HEADINGS = (
    "day",
    "produced",
    "consumed",
    "imported",
    "exported",
    "self-used",
    "peak W",
    "peak at",
    "coverage",
    "notes",
)


def render(
    days: pd.DataFrame,
    inverters: pd.DataFrame | None,
    timezone: str,
    format: str,
    names: Mapping[str, str] | None = None,
) -> str:
    """The report as `table`, `csv` or `json` text."""
    if format == "json":
        return json.dumps(report_document(days, inverters, timezone), indent=2)
    if format == "csv":
        return format_csv(days, inverters)
    return format_table(days, inverters, timezone, names)


def gateway_title(serial: str, names: Mapping[str, str] | None) -> str:
    """A gateway as people know it: its serial, and its configured name where that says more."""
    name = (names or {}).get(serial)
    return printable(f"{serial} ({name})" if name and name != serial else serial)


def format_table(
    days: pd.DataFrame,
    inverters: pd.DataFrame | None,
    timezone: str,
    names: Mapping[str, str] | None = None,
) -> str:
    """The daily report as aligned text, one block per gateway, with totals for a range of days."""
    zone = ZoneInfo(timezone)
    if days.empty:
        return "no gateways in the database yet: run `envoylog collect` first"
    blocks = []
    for gateway, rows in days.groupby("gateway", sort=True):
        rows = rows.sort_values("day")
        lines = [f"gateway {gateway_title(str(gateway), names)}: days in {timezone}, energy in kWh"]
        table = [list(_HEADINGS)]
        places = _places(rows)
        table += [_day_cells(row, zone, places) for row in rows.to_dict("records")]
        if len(rows) > 1:
            table.append(_total_cells(rows, zone, places))
        lines += _align(table, left={0, len(_HEADINGS) - 1})
        if inverters is not None:
            lines += ["", *_inverter_lines(inverters[inverters["gateway"] == gateway], rows)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _day_cells(row: Mapping[Hashable, Any], zone: ZoneInfo, places: int) -> list[str]:
    notes = _notes(row.get("notes"))
    coverage = _number(row.get("coverage"))
    if not notes and (coverage is None or coverage == 0):
        notes = ["no data"]
    return [
        as_date(row["day"]).isoformat(),
        *(kwh(row.get(column), places) for column in _ENERGY_COLUMNS),
        watts(row.get("peak_watts")),
        _local_time(row.get("peak_at"), zone, "%H:%M"),
        percent(coverage),
        printable("; ".join(notes)),
    ]


def _total_cells(rows: pd.DataFrame, zone: ZoneInfo, places: int) -> list[str]:
    energies = [kwh(rows[column].sum(min_count=1), places) for column in _ENERGY_COLUMNS]
    peaks = pd.to_numeric(rows["peak_watts"], errors="coerce").to_numpy(dtype=float)
    if not np.isnan(peaks).all():
        best = rows.iloc[int(np.nanargmax(peaks))]
        peak, peak_at = watts(best["peak_watts"]), _local_time(best["peak_at"], zone, "%m-%d %H:%M")
    else:
        peak, peak_at = NO_VALUE, NO_VALUE
    coverage = _number(pd.to_numeric(rows["coverage"], errors="coerce").mean())
    return ["total", *energies, peak, peak_at, percent(coverage), f"{len(rows)} days"]


def _inverter_lines(inverters: pd.DataFrame, days: pd.DataFrame) -> list[str]:
    first, last = as_date(days["day"].min()), as_date(days["day"].max())
    period = first.isoformat() if first == last else f"{first} to {last}"
    if inverters.empty:
        return [f"inverters: no inverter energy for {period}"]
    per = inverter_totals(inverters)
    median = per["wh"].median()
    lines = [f"inverters: energy in kWh for {period}, against the median inverter"]
    table = [["serial", "energy", "vs median", "basis"]]
    for row in per.to_dict("records"):
        ratio = row["wh"] / median if median and median > 0 else math.nan
        table.append([printable(str(row["serial"])), kwh(row["wh"], places=3), percent(ratio), row["basis"]])
    lines += _align(table, left={0, 3})
    return lines


def inverter_totals(inverters: pd.DataFrame) -> pd.DataFrame:
    """Each inverter's energy over the whole period and what it rests on, sorted by serial."""
    if inverters.empty:
        return pd.DataFrame({"gateway": [], "serial": [], "wh": [], "basis": []})
    grouped = inverters.groupby(["gateway", "serial"], sort=True)
    wh = grouped["wh"].sum(min_count=1)
    basis = grouped["basis"].agg(lambda values: ", ".join(sorted({str(v) for v in values if _present(v)})))
    return pd.DataFrame({"wh": wh, "basis": basis}).reset_index()


def format_csv(days: pd.DataFrame, inverters: pd.DataFrame | None) -> str:
    """One row per gateway and day, energy in Wh, times in UTC; --inverters adds a column per inverter."""
    if days.empty:
        return ",".join(DAILY_COLUMNS)
    table = pd.DataFrame(
        {
            "gateway": days["gateway"].astype(str),
            "day": [as_date(value).isoformat() for value in days["day"]],
            **{column: pd.to_numeric(days[column], errors="coerce").round(1) for column in _ENERGY_COLUMNS},
            "peak_watts": pd.to_numeric(days["peak_watts"], errors="coerce").round(1),
            "peak_at": [iso_utc(value) or "" for value in days["peak_at"]],
            "coverage": pd.to_numeric(days["coverage"], errors="coerce").round(4),
            "notes": ["; ".join(_notes(value)) for value in days["notes"]],
        },
        columns=list(DAILY_COLUMNS),
    )
    if inverters is not None and not inverters.empty:
        wide = inverters.assign(day=[as_date(value).isoformat() for value in inverters["day"]])
        wide = wide.pivot_table(index=["gateway", "day"], columns="serial", values="wh", aggfunc="sum")
        wide = wide.round(1).rename(columns=lambda serial: f"inverter_{serial}_wh").reset_index()
        wide["gateway"] = wide["gateway"].astype(str)
        table = table.merge(wide, on=["gateway", "day"], how="left")
    table = table.sort_values(["gateway", "day"], kind="stable")
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, lineterminator="\n", na_rep="")
    return buffer.getvalue().rstrip("\n")


def kwh(wh: Any, places: int = 2) -> str:
    """Energy in Wh as kWh with `places` decimals, a dash where unknown."""
    value = _number(wh)
    return NO_VALUE if value is None else f"{value / 1000:,.{places}f}"


def _places(rows: pd.DataFrame) -> int:
    """Two decimals, one where a total reaches 1,000 kWh: a column keeps one precision."""
    totals = rows[list(_ENERGY_COLUMNS)].apply(pd.to_numeric, errors="coerce").abs().sum()
    return 1 if totals.max() >= 1_000_000 else 2


def watts(value: Any) -> str:
    """Power in whole watts with thousands separators."""
    number = _number(value)
    return NO_VALUE if number is None else f"{number:,.0f}"


def percent(share: Any) -> str:
    """A share (0..1) as a whole percentage."""
    number = _number(share)
    return NO_VALUE if number is None else f"{number * 100:.0f}%"


def as_date(value: Any) -> date:
    """A report's day, whether pandas handed it over as a date, a Timestamp or text."""
    if isinstance(value, datetime):  # pandas' Timestamp is one too
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def iso_utc(value: Any) -> str | None:
    """A time (naive ones are UTC) as ISO 8601 UTC with a Z; None where there is none."""
    return iso_z(_utc(value)) if _present(value) else None


def _local_time(value: Any, zone: ZoneInfo, pattern: str) -> str:
    return _utc(value).astimezone(zone).strftime(pattern) if _present(value) else NO_VALUE


def _utc(value: Any) -> datetime:
    moment: datetime = pd.Timestamp(value).to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _notes(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [str(note) for note in value]


def _number(value: Any) -> float | None:
    if not _present(value):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _rounded(value: Any, digits: int) -> float | None:
    number = _number(value)
    return None if number is None else round(number, digits)


def _present(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return False
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: present
        return True


def _align(rows: list[list[str]], *, left: set[int]) -> list[str]:
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(widths[index]) if index in left else cell.rjust(widths[index])
            for index, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def report_document(days: pd.DataFrame, inverters: pd.DataFrame | None, timezone: str) -> dict[str, Any]:
    """The JSON of `envoylog report --format json` : NaN becomes null, times end in Z."""
    per_day: dict[tuple[str, date], list[dict[str, Any]]] = {}
    if inverters is not None:
        for row in inverters.itertuples(index=False):
            key = (str(row.gateway), cast(date, row.day))
            per_day.setdefault(key, []).append({"serial": str(row.serial), "wh": _rounded(row.wh, 1)})
    documents = []
    for row in days.itertuples(index=False):
        document: dict[str, Any] = {
            "gateway": str(row.gateway),
            "day": cast(date, row.day).isoformat(),
            "production_wh": _rounded(row.production_wh, 1),
            "consumption_wh": _rounded(row.consumption_wh, 1),
            "import_wh": _rounded(row.import_wh, 1),
            "export_wh": _rounded(row.export_wh, 1),
            "self_consumed_wh": _rounded(row.self_consumed_wh, 1),
            "peak_watts": _rounded(row.peak_watts, 1),
            "peak_at": iso_utc(row.peak_at),
            "coverage": _rounded(row.coverage, 4),
        }
        if inverters is not None:
            document["inverters"] = per_day.get((str(row.gateway), cast(date, row.day)), [])
        document["notes"] = list(cast(Iterable[str], row.notes))
        documents.append(document)
    return {"timezone": timezone, "days": documents}
