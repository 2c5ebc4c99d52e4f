"""The public Python API: every name `envoylog` offers resolves, and using one loads only what it needs."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import DemoRun

import envoylog


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    names = [name for name in envoylog.__all__ if name != "__version__"]
    assert {"daily_report", "inverter_report", "power_curve", "load_settings", "collect_all"} <= set(names)
    for name in names:
        value = getattr(envoylog, name)
        assert getattr(value, "__name__", name) == name, name
    assert set(names) <= set(dir(envoylog))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'dialy_report'"):
        _ = envoylog.dialy_report  # type: ignore[attr-defined]


def test_importing_the_package_and_the_collector_loads_no_pandas() -> None:
    code = (
        "import sys, envoylog; envoylog.collect_all; envoylog.load_settings; "
        "print(sorted({'pandas', 'numpy', 'matplotlib'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_report_through_the_package_is_the_demo_day(demo_run: DemoRun) -> None:
    from envoylog import reports

    zone = ZoneInfo("Europe/Amsterdam")
    day = demo_run.started_at.astimezone(zone).date() - timedelta(days=1)
    db_url = f"sqlite:///{demo_run.database}"
    through_package = envoylog.daily_report(db_url, day, day, timezone="Europe/Amsterdam")
    assert through_package.equals(reports.daily_report(db_url, day, day, timezone="Europe/Amsterdam"))
    assert list(through_package["day"]) == [day]
    assert through_package.loc[0, "production_wh"] > 0
    assert through_package.loc[0, "coverage"] == 1.0
