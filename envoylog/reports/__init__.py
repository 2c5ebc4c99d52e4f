"""Queries: daily yield, per-inverter energy and power curves as DataFrames; the stored state as plain data.

Nothing here prints; `envoylog.render` turns what these return into tables, CSV, JSON and plots.
"""

from envoylog.reports.columns import CURVE_COLUMNS, DAILY_COLUMNS, INVERTER_COLUMNS
from envoylog.reports.common import gateway_names
from envoylog.reports.curve import power_curve
from envoylog.reports.days import daily_report
from envoylog.reports.inverters import inverter_report

__all__ = [
    "CURVE_COLUMNS",
    "DAILY_COLUMNS",
    "INVERTER_COLUMNS",
    "daily_report",
    "gateway_names",
    "inverter_report",
    "power_curve",
]
