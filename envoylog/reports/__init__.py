"""Queries: daily yield, per-inverter energy and power curves as DataFrames; the stored state as plain data.

Nothing here prints; `envoylog.render` turns what these return into tables, CSV, JSON and plots. The names
below are imported on first use, so that the commands that need no DataFrame (`status`, `latest`, `auth
status`) never load pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from envoylog.reports.columns import CURVE_COLUMNS, DAILY_COLUMNS, INVERTER_COLUMNS

# name -> the module that defines it
_LAZY = {
    "gateway_names": "envoylog.reports.common",
    "power_curve": "envoylog.reports.curve",
    "daily_report": "envoylog.reports.days",
    "inverter_report": "envoylog.reports.inverters",
}

__all__ = [
    "CURVE_COLUMNS",
    "DAILY_COLUMNS",
    "INVERTER_COLUMNS",
    "daily_report",
    "gateway_names",
    "inverter_report",
    "power_curve",
]

if TYPE_CHECKING:
    from envoylog.reports.common import gateway_names
    from envoylog.reports.curve import power_curve
    from envoylog.reports.days import daily_report
    from envoylog.reports.inverters import inverter_report


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'envoylog.reports' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
