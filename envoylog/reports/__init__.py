"""TODO"""

from envoylog.reports.days import (
    CURVE_COLUMNS,
    DAILY_COLUMNS,
    INVERTER_COLUMNS,
    daily_report,
    gateway_names,
    inverter_report,
    power_curve,
    report_document,
)

__all__ = [
    "CURVE_COLUMNS",
    "DAILY_COLUMNS",
    "INVERTER_COLUMNS",
    "daily_report",
    "gateway_names",
    "inverter_report",
    "power_curve",
    "report_document",
]
