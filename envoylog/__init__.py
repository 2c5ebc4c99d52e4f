"""envoylog: a cron-first logger for the Enphase Envoy / IQ Gateway.

The public Python API, for notebooks and scripts:

    from envoylog import load_settings, daily_report
    settings = load_settings()
    days = daily_report(settings.db_url, start, end, timezone=settings.timezone)

Each name is imported on first use, so that `import envoylog` (and a cron `collect`) never loads pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    # settings
    "Settings": "envoylog.config",
    "GatewaySettings": "envoylog.config",
    "load_settings": "envoylog.config",
    # collecting
    "collect_all": "envoylog.collect.run",
    "GatewayRun": "envoylog.collect.run",
    # reports (pandas DataFrames) and their JSON document
    "daily_report": "envoylog.reports",
    "inverter_report": "envoylog.reports",
    "power_curve": "envoylog.reports",
    "gateway_names": "envoylog.reports",
    "report_document": "envoylog.render.report",
    # the simulated gateway and the demo's history
    "Simulator": "envoylog.simulator",
    "fill_history": "envoylog.demo.filler",
    # errors
    "EnvoylogError": "envoylog.errors",
    "ConfigError": "envoylog.errors",
    "AuthError": "envoylog.errors",
    "GatewayError": "envoylog.errors",
    "DatabaseError": "envoylog.errors",
    "NoData": "envoylog.errors",
    "NoDatabase": "envoylog.db.engine",
}

__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from envoylog.collect.run import GatewayRun, collect_all
    from envoylog.config import GatewaySettings, Settings, load_settings
    from envoylog.db.engine import NoDatabase
    from envoylog.demo.filler import fill_history
    from envoylog.errors import AuthError, ConfigError, DatabaseError, EnvoylogError, GatewayError, NoData
    from envoylog.render.report import report_document
    from envoylog.reports import daily_report, gateway_names, inverter_report, power_curve
    from envoylog.simulator import Simulator


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'envoylog' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
