"""`envoylog report --plot`: one day's power curves, or a range's daily energy bars, drawn with matplotlib.

The drawing takes the report's DataFrames and never queries: the caller reads the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pandas as pd

from envoylog.errors import ConfigError
from envoylog.render.report import as_date, gateway_title
from envoylog.times import local_midnight

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "--plot needs matplotlib: pip install 'envoylog[plots]'"
_DAY_SERIES = (  # drawn in this order: the grid behind, production in front
    ("net_watts", "grid (+ import, - export)", "#909090"),
    ("consumption_watts", "consumption", "#3070c0"),
    ("production_watts", "production", "#e8a010"),
)
PARTIAL_HATCH = "///"
PARTIAL_ALPHA = 0.45
LABELLED_DAYS = 62  # up to two months the partial days' coverage is written on them; a year has no room
_ENERGY_BARS = (
    ("production_wh", "production", "#e8a010"),
    ("consumption_wh", "consumption", "#3070c0"),
    ("import_wh", "import", "#c04040"),
    ("export_wh", "export", "#40a040"),
)


def require_matplotlib(path: Path) -> None:
    """Fail with one line before any work if matplotlib is missing or the file type is not an image."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None

    kind = path.suffix.lower().lstrip(".")
    supported = FigureCanvasAgg.get_supported_filetypes()
    if kind not in supported:
        names = ", ".join(f".{name}" for name in sorted(supported))
        raise ConfigError(f"bad --plot {str(path)!r}: give a file name ending in one of {names}")


def plot_report(
    days: pd.DataFrame,
    curve: pd.DataFrame | None,
    first: date,
    last: date,
    *,
    timezone: str,
    names: Mapping[str, str],
    path: Path,
) -> None:
    """Draw a report: one day as its power curves (`curve`), a range of days as daily energy bars."""
    if first == last and curve is not None:
        figure = plot_day(curve, first, timezone, names)
    else:
        figure = plot_days(days, timezone, names)
    _save(figure, path)


def plot_day(curve: pd.DataFrame, day: date, timezone: str, names: Mapping[str, str]) -> Figure:
    """Production, consumption and grid power over one local day, one panel per gateway."""
    zone = ZoneInfo(timezone)
    gateways = sorted(curve["gateway"].unique()) if not curve.empty else [None]
    figure, axes = _figure(len(gateways), height=3.6)
    for ax, gateway in zip(axes, gateways, strict=True):
        rows = curve[curve["gateway"] == gateway].sort_values("at") if gateway is not None else curve
        title = f"{day.isoformat()} ({timezone})" + _gateway_part(gateway, names)
        ax.set_title(title)
        ax.set_ylabel("W")
        if rows.empty:
            _no_data(ax, f"no data for {day.isoformat()}")
            continue
        hours = (pd.to_datetime(rows["at"], utc=True) - _local_midnight(day, zone)).dt.total_seconds() / 3600
        for column, label, color in _DAY_SERIES:
            values = pd.to_numeric(rows[column], errors="coerce")
            if values.notna().any():
                ax.step(hours, values, where="post", label=label, color=color, linewidth=1.2)
        ax.axhline(0, color="black", linewidth=0.5, zorder=0)
        _clock_axis(ax, day, zone)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], loc="upper left", fontsize="small")
    return figure


def plot_days(days: pd.DataFrame, timezone: str, names: Mapping[str, str]) -> Figure:
    """Daily production, consumption, import and export as grouped bars, one panel per gateway.

    A day the logger saw only in part gets hatched, lighter bars and its coverage above them: its energy is
    only what was logged. A day without data says so.
    """
    gateways = sorted(days["gateway"].unique()) if not days.empty else [None]
    figure, axes = _figure(len(gateways), height=3.8)
    for ax, gateway in zip(axes, gateways, strict=True):
        rows = days[days["gateway"] == gateway] if gateway is not None else days
        rows = rows.assign(day=[as_date(value) for value in rows["day"]]).sort_values("day")
        first, last = (rows["day"].min(), rows["day"].max()) if not rows.empty else (None, None)
        ax.set_title(f"{first} to {last} ({timezone})" + _gateway_part(gateway, names))
        ax.set_ylabel("kWh")
        if rows.empty or pd.to_numeric(rows["coverage"], errors="coerce").fillna(0).eq(0).all():
            _no_data(ax, "no data for these days")
            continue
        positions = list(range(len(rows)))
        coverage = pd.to_numeric(rows["coverage"], errors="coerce").fillna(0).to_list()
        partial = [0 < share < 1 for share in coverage]
        width = 0.8 / len(_ENERGY_BARS)
        for index, (column, label, color) in enumerate(_ENERGY_BARS):
            values = (pd.to_numeric(rows[column], errors="coerce") / 1000).fillna(0).to_list()
            offset = (index - (len(_ENERGY_BARS) - 1) / 2) * width
            bars = ax.bar([p + offset for p in positions], values, width, label=label, color=color)
            for bar, part in zip(bars, partial, strict=True):
                if part:
                    bar.set_alpha(PARTIAL_ALPHA)
                    bar.set_hatch(PARTIAL_HATCH)
        top = max(ax.get_ylim()[1], 0.0)
        for position, share, part in zip(positions, coverage, partial, strict=True):
            if not share:
                ax.text(
                    position, 0, "no data", rotation=90, ha="center", va="bottom", color="grey", size="small"
                )
            elif part and len(rows) <= LABELLED_DAYS:
                ax.text(
                    position, top * 0.02, f"{share:.0%}", ha="center", va="bottom", color="grey", size="small"
                )
        if any(partial):
            ax.bar(
                [0],
                [0],
                0,
                color="white",
                edgecolor="grey",
                hatch=PARTIAL_HATCH,
                label="day not fully logged",
            )
        ax.margins(y=0.2)  # room for the legend above the highest bar
        step = max(1, len(rows) // 15)
        ax.set_xticks(positions[::step])
        ax.set_xticklabels([day.strftime("%m-%d") for day in rows["day"]][::step], rotation=45, ha="right")
        ax.legend(loc="upper left", fontsize="small", ncols=5)
        ax.grid(axis="y", alpha=0.3)
    return figure


def _gateway_part(gateway: str | None, names: Mapping[str, str]) -> str:
    return f", gateway {gateway_title(gateway, names)}" if gateway is not None else ""


def _figure(panels: int, height: float) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure on the Agg canvas, without pyplot: no global state, no display needed.
    figure = Figure(figsize=(10, height * panels), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    return figure, list(axes)


def _local_midnight(day: date, zone: ZoneInfo) -> pd.Timestamp:
    return pd.Timestamp(local_midnight(day, zone))


def _clock_axis(ax: Axes, day: date, zone: ZoneInfo) -> None:
    """Hours since local midnight on the axis, labelled with the local clock (right on DST days too)."""
    midnight = _local_midnight(day, zone)
    hours = round((_local_midnight(day + timedelta(days=1), zone) - midnight).total_seconds() / 3600)
    ticks = list(range(0, hours + 1, 2))
    labels = [(midnight + pd.Timedelta(hours=tick)).tz_convert(zone).strftime("%H:%M") for tick in ticks]
    ax.set_xticks(ticks, labels)
    ax.set_xlim(0, hours)
    ax.grid(alpha=0.3)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(figure: Figure, path: Path) -> None:
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise ConfigError(f"cannot write the plot to {str(path)!r}: {exc.strerror or exc}") from None
