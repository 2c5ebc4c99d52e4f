"""`envoylog report` on half a day logged from the simulated gateway: periods, formats, inverters, plots.

The collector runs against the metered simulator every ten simulated minutes from 04:00 to 16:00 in
Amsterdam on 2026-06-21, once per database (SQLite and, when ENVOYLOG_TEST_POSTGRES_URL is set,
PostgreSQL); every test then reads that database through the command line.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from conftest import DATABASES, Site, empty_database
from typer.testing import CliRunner, Result

from envoylog.cli import app
from envoylog.reports import DAILY_COLUMNS as DAY_COLUMNS
from envoylog.simulator import Simulator

runner = CliRunner()

ZONE = "Europe/Amsterdam"
DAY = date(2026, 6, 21)
FIRST_RUN = datetime(2026, 6, 21, 4, 0, tzinfo=ZoneInfo(ZONE))
CYCLES = 73  # 04:00 to 16:00, a collect every ten minutes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JSON_DAY_KEYS = {
    "gateway",
    "day",
    "production_wh",
    "consumption_wh",
    "import_wh",
    "export_wh",
    "self_consumed_wh",
    "peak_watts",
    "peak_at",
    "coverage",
    "notes",
}


@dataclass(frozen=True)
class Logged:
    """A database holding half a day of the simulated gateway, and what the simulator was."""

    db_url: str
    serial: str
    name: str
    inverters: frozenset[str]


@pytest.fixture(scope="module", params=DATABASES)
def logged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """Half a summer day collected from the metered simulator, once per database."""
    directory = tmp_path_factory.mktemp("report")
    with (
        empty_database(request.param, directory) as db_url,
        Simulator("metered", state_dir=directory / "sim", start=FIRST_RUN) as sim,
    ):
        site = Site(sim, db_url)
        for cycle in range(CYCLES):
            sim.clock.set(FIRST_RUN + timedelta(minutes=10 * cycle))
            run = site.collect()
            assert run.error is None, run.error
        serials = frozenset(row[0] for row in site.query("SELECT device FROM series WHERE kind = 'inverter'"))
        yield Logged(db_url=db_url, serial=sim.serial, name="home", inverters=serials)


@pytest.fixture
def db(logged: Logged, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Logged:
    """The logged database, and the environment a user sets to report on it."""
    monkeypatch.setenv("ENVOYLOG_DB", logged.db_url)
    monkeypatch.setenv("ENVOYLOG_TIMEZONE", ZONE)
    return logged


def report(*args: str) -> Result:
    """`envoylog report ARGS` in this process, stdout and stderr apart."""
    return runner.invoke(app, ["report", *args])


def ok(*args: str) -> str:
    """The stdout of a report that must succeed quietly."""
    result = report(*args)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def document(*args: str) -> dict[str, Any]:
    """The JSON report."""
    parsed: dict[str, Any] = json.loads(ok(*args, "--format", "json"))
    return parsed


def failure(*args: str) -> str:
    """The one line on stderr of a report refused as bad usage (exit 2)."""
    result = report(*args)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("envoylog: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# --- periods ------------------------------------------------------------------------------------------


def test_day_reports_the_logged_half_day(db: Logged) -> None:
    doc = document("--day", DAY.isoformat())
    assert doc["timezone"] == ZONE
    (day,) = doc["days"]
    assert set(day) == JSON_DAY_KEYS
    assert (day["gateway"], day["day"]) == (db.serial, "2026-06-21")
    assert day["production_wh"] > 1000  # a June morning and noon of 30 inverters
    assert day["consumption_wh"] > 0 and day["import_wh"] >= 0 and day["export_wh"] >= 0
    assert day["self_consumed_wh"] == pytest.approx(day["production_wh"] - day["export_wh"], abs=0.5)
    # Twelve hours of collect runs, each covering the ten minutes after it, of a 24-hour day.
    assert day["coverage"] == pytest.approx(12 / 24, abs=0.02)
    peak_at = datetime.fromisoformat(day["peak_at"].replace("Z", "+00:00"))
    assert peak_at.tzinfo is not None and FIRST_RUN <= peak_at <= FIRST_RUN + timedelta(hours=12)
    assert day["peak_watts"] > 0


def test_range_lists_every_day_and_days_without_data_are_not_errors(db: Logged) -> None:
    doc = document("--from", "2026-06-20", "--to", "2026-06-22")
    days = {day["day"]: day for day in doc["days"]}
    assert sorted(days) == ["2026-06-20", "2026-06-21", "2026-06-22"]
    assert days["2026-06-21"]["coverage"] > 0.4
    for empty in ("2026-06-20", "2026-06-22"):
        assert days[empty]["coverage"] == 0
        assert days[empty]["notes"], "a day without data says so in its notes"
    assert days["2026-06-21"] == document("--day", "2026-06-21")["days"][0]


def test_month_covers_the_calendar_month(db: Logged) -> None:
    days = document("--month", "2026-06")["days"]
    assert [day["day"] for day in days] == [f"2026-06-{n:02d}" for n in range(1, 31)]
    assert [day["day"] for day in days if day["coverage"] > 0] == ["2026-06-21"]


def test_default_is_yesterday_in_the_configured_zone(db: Logged) -> None:
    yesterday = datetime.now(ZoneInfo(ZONE)).date() - timedelta(days=1)
    (day,) = document()["days"]
    assert day["day"] == yesterday.isoformat()
    assert day["coverage"] == 0 and day["notes"]


def test_a_day_without_data_is_reported_as_such_in_the_table(db: Logged) -> None:
    table = ok("--day", "2026-06-25")
    assert "2026-06-25" in table
    line = next(line for line in table.splitlines() if line.startswith("2026-06-25"))
    assert "0%" in line


# --- formats ------------------------------------------------------------------------------------------


def test_table_reads_in_kwh_with_coverage_and_totals(db: Logged) -> None:
    (day,) = document("--day", DAY.isoformat())["days"]
    table = ok("--day", DAY.isoformat())
    assert f"gateway {db.serial} ({db.name}): days in {ZONE}, energy in kWh" in table
    line = next(line for line in table.splitlines() if line.startswith("2026-06-21"))
    assert f"{day['production_wh'] / 1000:,.2f}" in line  # kWh with two decimals
    assert f"{day['coverage'] * 100:.0f}%" in line
    peak_local = datetime.fromisoformat(day["peak_at"].replace("Z", "+00:00")).astimezone(ZoneInfo(ZONE))
    assert f"{peak_local:%H:%M}" in line
    ranged = ok("--from", "2026-06-20", "--to", "2026-06-21")
    total = next(line for line in ranged.splitlines() if line.startswith("total"))
    assert f"{day['production_wh'] / 1000:,.2f}" in total


def test_csv_has_the_documented_header_and_matches_the_json(db: Logged) -> None:
    rows = list(
        csv.DictReader(io.StringIO(ok("--from", "2026-06-21", "--to", "2026-06-22", "--format", "csv")))
    )
    assert list(rows[0]) == list(DAY_COLUMNS)
    assert set(DAY_COLUMNS) == JSON_DAY_KEYS  # the CSV carries the same fields as the JSON contract
    assert [row["day"] for row in rows] == ["2026-06-21", "2026-06-22"]
    (day,) = document("--day", DAY.isoformat())["days"]
    assert float(rows[0]["production_wh"]) == pytest.approx(day["production_wh"], abs=0.1)
    assert rows[0]["peak_at"] == day["peak_at"]
    assert float(rows[1]["coverage"]) == 0 and rows[1]["notes"]


def test_inverters_add_each_inverters_energy_in_every_format(db: Logged) -> None:
    (day,) = document("--day", DAY.isoformat(), "--inverters")["days"]
    assert set(day) == JSON_DAY_KEYS | {"inverters"}
    assert {inverter["serial"] for inverter in day["inverters"]} == db.inverters
    inverter_wh = sum(inverter["wh"] for inverter in day["inverters"])
    assert inverter_wh > 0
    # The inverters' AC energy and the production CT's measure the same power.
    assert inverter_wh == pytest.approx(day["production_wh"], rel=0.15)

    header = ok("--day", DAY.isoformat(), "--inverters", "--format", "csv").splitlines()[0].split(",")
    assert header[: len(DAY_COLUMNS)] == list(DAY_COLUMNS)
    assert set(header[len(DAY_COLUMNS) :]) == {f"inverter_{serial}_wh" for serial in db.inverters}

    table = ok("--day", DAY.isoformat(), "--inverters")
    assert "inverters:" in table
    listed = [
        line.split()[0] for line in table.splitlines() if line.split() and line.split()[0] in db.inverters
    ]
    assert sorted(listed) == sorted(db.inverters)


def test_gateway_is_chosen_by_name_or_serial(db: Logged) -> None:
    everything = document("--day", DAY.isoformat())
    assert document("--day", DAY.isoformat(), "--gateway", db.name) == everything
    assert document("--day", DAY.isoformat(), "--gateway", db.serial) == everything


# --- plots --------------------------------------------------------------------------------------------


def test_plot_of_a_day_draws_its_power_curves(db: Logged, tmp_path: Path) -> None:
    path = tmp_path / "day.png"
    table = ok("--day", DAY.isoformat(), "--plot", str(path))
    assert "2026-06-21" in table  # the report is printed as well
    assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 10_000


def test_plot_of_a_range_draws_daily_bars(db: Logged, tmp_path: Path) -> None:
    path = tmp_path / "range.png"
    ok("--from", "2026-06-19", "--to", "2026-06-23", "--plot", str(path), "--format", "csv")
    assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 10_000


def test_plots_name_the_gateway_and_mark_the_days_not_fully_logged() -> None:
    from envoylog.render import plots

    days = pd.DataFrame(
        {
            "gateway": ["122238082763"] * 3,
            "day": [date(2026, 6, 20), date(2026, 6, 21), date(2026, 6, 22)],
            "production_wh": [30000.0, 12000.0, math.nan],
            "consumption_wh": [10000.0, 5000.0, math.nan],
            "import_wh": [2000.0, 1000.0, math.nan],
            "export_wh": [22000.0, 8000.0, math.nan],
            "coverage": [1.0, 0.5, 0.0],
        }
    )
    names = {"122238082763": "home"}
    (ax,) = plots.plot_days(days, ZONE, names).axes
    assert ax.get_title() == f"2026-06-20 to 2026-06-22 ({ZONE}), gateway 122238082763 (home)"
    bars = [patch for patch in ax.patches if patch.get_width() > 0]
    full = [bar for bar in bars if round(bar.get_x() + bar.get_width() / 2) == 0]
    partial = [bar for bar in bars if round(bar.get_x() + bar.get_width() / 2) == 1]
    assert len(full) == len(partial) == 4  # production, consumption, import, export
    assert all(bar.get_hatch() is None and bar.get_alpha() is None for bar in full)
    assert all(bar.get_hatch() == plots.PARTIAL_HATCH for bar in partial)
    labels = [text.get_text() for text in ax.texts]
    assert "50%" in labels and "no data" in labels
    assert "day not fully logged" in [text.get_text() for text in ax.get_legend().get_texts()]
    curve = pd.DataFrame(columns=["gateway", "at", "production_watts", "consumption_watts", "net_watts"])
    curve.loc[0] = ["122238082763", pd.Timestamp("2026-06-21T10:00Z"), 1000.0, 500.0, -500.0]
    (ax,) = plots.plot_day(curve, date(2026, 6, 21), ZONE, names).axes
    assert ax.get_title() == f"2026-06-21 ({ZONE}), gateway 122238082763 (home)"


def test_gateway_text_cannot_drive_the_terminal(db: Logged) -> None:
    from envoylog.render.report import format_table

    days = pd.DataFrame(
        {column: [math.nan] for column in DAY_COLUMNS}
        | {"gateway": ["\x1b]0;evil\x07"], "day": [DAY], "notes": [[]]}
    )
    inverters = pd.DataFrame(
        {
            "gateway": ["\x1b]0;evil\x07"],
            "day": [DAY],
            "serial": ["\x1b[2J"],
            "wh": [1.0],
            "basis": ["joules"],
        }
    )
    table = format_table(days, inverters, ZONE, {"\x1b]0;evil\x07": "\x1b[31mred"})
    assert "\x1b" not in table and "\x07" not in table
    assert "gateway ?]0;evil? (?[31mred)" in table and "?[2J" in table


def test_plot_of_a_day_without_data_still_draws_and_says_so(db: Logged, tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    ok("--day", "2026-06-25", "--plot", str(path))
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_without_matplotlib_says_which_extra_to_install(
    db: Logged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("matplotlib", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when the package is absent
    path = tmp_path / "day.png"
    line = failure("--day", DAY.isoformat(), "--plot", str(path))
    assert "pip install 'envoylog[plots]'" in line
    assert not path.exists()


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--day", "2026-13-01"], "--day"),
        (["--day", "21/06/2026"], "--day"),
        (["--month", "2026-6"], "--month"),
        (["--month", "2026-13"], "--month"),
        (["--from", "2026-06-01"], "--to"),
        (["--to", "2026-06-01"], "--from"),
        (["--from", "2026-06-21", "--to", "2026-06-20"], "before"),
        (["--day", "2026-06-21", "--month", "2026-06"], "one of"),
        (["--day", "2026-06-21", "--plot", "report.txt"], "--plot"),
        (["--day", "2026-06-21", "--gateway", "barn"], "barn"),
        (["--day", "2026-06-21", "--plot", "no-such-folder/day.png"], "cannot write the plot"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db: Logged, args: list[str], says: str) -> None:
    assert says in failure(*args)


def test_unknown_format_is_usage_error(db: Logged) -> None:
    result = report("--format", "xml")
    assert result.exit_code == 2


def test_the_command_line_imports_pandas_and_matplotlib_only_when_reporting() -> None:
    code = "import sys, envoylog.cli; print(sorted({'pandas', 'numpy', 'matplotlib'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_report_leaves_the_garbage_collector_as_it_was(db: Logged) -> None:
    # The command collects no garbage while it runs (its process ends soon after); a program that runs it
    # in-process gets its collector back as it was, on or off, after a report and after a refused one.
    ok("--day", DAY.isoformat())
    assert gc.isenabled()
    gc.disable()
    try:
        failure("--day", DAY.isoformat(), "--gateway", "barn")
        assert not gc.isenabled()
    finally:
        gc.enable()
