"""`envoylog collect --textfile PATH`: the node_exporter textfile, read back with Prometheus' own parser.

Each test collects from the simulated gateway into a real database (SQLite and, when configured, PostgreSQL)
and checks the file as Prometheus would read it: the values are those `envoylog latest` shows, the names and
types follow Prometheus' conventions, the file is replaced whole, and a path that cannot be written is said in
one line without losing what was read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Site
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import SQLAlchemyError
from test_readme import shape
from typer.testing import CliRunner, Result

from envoylog.cli import app
from envoylog.collect.run import HandOffFailed, collect_all
from envoylog.handoff.state import GatewayState, Latest, RunFacts
from envoylog.handoff.textfile import format_textfile, metric_names

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
ERROR_PREFIX = "envoylog: error: "
DEAD_HOST = "127.0.0.1:9"  # the discard port: nothing listens there, so connecting is refused at once
JOULES_PER_WH = 3600
# Names of counts without a unit, which Prometheus' conventions leave bare.
UNITLESS = {
    "envoylog_gateway_info",
    "envoylog_run_success",
    "envoylog_run_outcome",
    "envoylog_run_requests",
    "envoylog_run_cloud_requests",
    "envoylog_run_rows_added",
}
UNITS = ("_watts", "_joules", "_seconds", "_ratio")


def envoylog(*args: str) -> Result:
    return runner.invoke(app, list(args))


def families(path: Path) -> dict[str, Metric]:
    """The file as Prometheus reads it: metric families by name (a counter's without its `_total`)."""
    return {family.name: family for family in text_string_to_metric_families(path.read_text())}


def values(family: Metric, **match: str) -> dict[tuple[str, ...], float]:
    """The family's samples whose labels include `match`, keyed by their other label values."""
    found = {}
    for sample in family.samples:
        if all(sample.labels.get(k) == v for k, v in match.items()):
            key = tuple(v for k, v in sample.labels.items() if k not in match)
            found[key] = sample.value
    return found


def one(family: Metric, **match: str) -> float:
    (value,) = values(family, **match).values()
    return value


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def latest_json() -> dict[str, Any]:
    result = envoylog("latest", "--format", "json")
    assert result.exit_code == 0, result.stderr
    (gateway,) = json.loads(result.stdout)["gateways"]
    return dict(gateway)


# --- what the file says ------------------------------------------------------------------------------


def test_the_textfile_says_what_latest_says(start_site: Callable[[str], Site], tmp_path: Path) -> None:
    site = start_site("battery")
    path = tmp_path / "envoylog.prom"
    result = envoylog("collect", "--textfile", str(path))
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter often runs as another user
    metrics = families(path)
    latest = latest_json()
    gateway = {"gateway": "default", "serial": site.sim.serial}

    power, energy = metrics["envoylog_power_watts"], metrics["envoylog_energy_joules"]
    for kind in ("production", "consumption", "net_consumption"):
        assert one(power, **gateway, kind=kind, phase="all") == pytest.approx(latest[kind]["watts"])
        phases = {f"l{p['phase'][1:]}": p["watts"] for p in latest[kind]["phases"]}
        assert {k[0]: v for k, v in values(power, **gateway, kind=kind).items() if k[0] != "all"} == phases
    for kind in ("production", "consumption"):
        wh = latest[kind]["wh_lifetime"]
        assert one(energy, **gateway, kind=kind, phase="all") == pytest.approx(wh * JOULES_PER_WH)
    net = latest["net_consumption"]
    assert one(metrics["envoylog_net_energy_joules"], **gateway, phase="all") == pytest.approx(
        net["wh_lifetime"] * JOULES_PER_WH
    )
    imported = one(metrics["envoylog_grid_import_energy_joules"], **gateway, phase="all")
    exported = one(metrics["envoylog_grid_export_energy_joules"], **gateway, phase="all")
    assert imported == pytest.approx(net["wh_imported_lifetime"] * JOULES_PER_WH)
    assert exported == pytest.approx(net["wh_exported_lifetime"] * JOULES_PER_WH)
    assert one(metrics["envoylog_reading_timestamp_seconds"], **gateway, kind="production", phase="all") == (
        unix(latest["production"]["read_at"])
    )

    inverters = {(i["serial"],): i for i in latest["inverters"]}
    assert len(inverters) == 30
    assert values(metrics["envoylog_inverter_power_watts"], **gateway) == {
        k: i["watts"] for k, i in inverters.items()
    }
    assert values(metrics["envoylog_inverter_max_power_watts"], **gateway) == {
        k: i["max_watts"] for k, i in inverters.items()
    }
    assert values(metrics["envoylog_inverter_report_timestamp_seconds"], **gateway) == {
        k: unix(i["reported_at"]) for k, i in inverters.items()
    }
    # The battery site's inverters report their lifetime energy through /ivp/pdm/device_data.
    assert set(values(metrics["envoylog_inverter_energy_joules"], **gateway)) == set(inverters)

    batteries = {(b["serial"],): b for b in latest["batteries"]}
    assert len(batteries) == 2
    assert values(metrics["envoylog_battery_charge_ratio"], **gateway) == pytest.approx(
        {k: b["soc_percent"] / 100 for k, b in batteries.items()}
    )
    assert values(metrics["envoylog_battery_power_watts"], **gateway) == {
        k: b["watts"] for k, b in batteries.items()
    }

    run = {"gateway": "default"}
    assert one(metrics["envoylog_gateway_info"], **gateway, firmware=latest["firmware"]) == 1
    assert one(metrics["envoylog_last_success_timestamp_seconds"], **run) == unix(latest["collected_at"])
    assert one(metrics["envoylog_run_success"], **run) == 1
    assert values(metrics["envoylog_run_outcome"], **run) == {
        ("ok",): 1,
        ("partial",): 0,
        ("failed",): 0,
        ("skipped",): 0,
    }
    assert one(metrics["envoylog_run_requests"], **run) == len(site.requests())
    assert one(metrics["envoylog_run_cloud_requests"], **run) == site.cloud_requests() == 2
    assert one(metrics["envoylog_run_rows_added"], **run) == sum(site.rows().values())
    assert 0 < one(metrics["envoylog_run_duration_seconds"], **run) < 50
    newest = max(unix(latest[kind]["read_at"]) for kind in ("production", "consumption", "net_consumption"))
    assert one(metrics["envoylog_newest_reading_timestamp_seconds"], **run) >= newest


def test_names_types_and_help_follow_prometheus_conventions(cli_site: Site, tmp_path: Path) -> None:
    path = tmp_path / "envoylog.prom"
    cli_site.collect(textfile=path)
    text = path.read_text()
    metrics = families(path)
    assert len(metrics) >= 20
    for family in metrics.values():
        sample_names = {sample.name for sample in family.samples}
        assert family.documentation, family.name  # a HELP line
        assert family.type in ("gauge", "counter"), family.name
        assert f"# TYPE {next(iter(sample_names))} {family.type}\n" in text
        (name,) = sample_names
        assert re.fullmatch(r"envoylog_[a-z_]+", name), name
        # Counters and only counters end in _total; every other name carries its base unit or is a count.
        assert name.endswith("_total") == (family.type == "counter"), name
        base = name.removesuffix("_total")
        assert base.endswith(UNITS) or name in UNITLESS, name
        assert not re.search(r"(^|_)(wh|kwh|kw|percent|milliseconds|ms)(_|$)", name), name
        # node_exporter refuses a family whose samples carry different label names.
        assert len({tuple(sample.labels) for sample in family.samples}) == 1, name
        assert "gateway" in family.samples[0].labels
    assert not re.search(r"\} \S+ \d+$", text, re.M)  # no timestamps: the textfile collector refuses them


def readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("### Prometheus: the textfile collector", 1)[1].split("\n### ", 1)[0]


def test_the_readme_lists_every_metric_the_file_may_hold() -> None:
    section = readme_section()
    listed = set(re.findall(r"^\| `(envoylog_[a-z_]+)`", section, re.M))
    assert listed == set(metric_names())
    # Its PromQL asks only for metrics that exist.
    (promql,) = re.findall(r"^```promql\n(.*?)^```$", section, re.S | re.M)
    asked = set(re.findall(r"envoylog_[a-z_]+", promql + section.rsplit("```", 1)[1]))
    assert asked and asked <= set(metric_names()), asked - set(metric_names())


def test_the_readme_shows_lines_the_file_holds(site: Site, tmp_path: Path) -> None:
    path = tmp_path / "envoylog.prom"
    site.collect(textfile=path)  # the gateway named "home", as in the README
    (excerpt,) = [b for b in re.findall(r"^```text\n(.*?)^```$", readme_section(), re.S | re.M)]
    written = {shape(line) for line in path.read_text().splitlines()}
    for line in excerpt.splitlines():
        assert shape(line) in written, line


@pytest.fixture
def cli_site(start_site: Callable[[str], Site]) -> Site:
    return start_site("metered")


def test_a_firmware_7_gateway_has_its_token_expiry(start_site: Callable[[str], Site], tmp_path: Path) -> None:
    site = start_site("metered-no-cts")
    path = tmp_path / "envoylog.prom"
    result = envoylog("collect", "--textfile", str(path))
    assert result.exit_code == 0, result.stderr
    auth = json.loads(envoylog("auth", "status", "--format", "json").stdout)["gateways"][0]
    metrics = families(path)
    expiry = one(metrics["envoylog_token_expiry_timestamp_seconds"], gateway="default")
    assert expiry == unix(auth["token"]["expires_at"])
    days_left = (expiry - one(metrics["envoylog_run_timestamp_seconds"], gateway="default")) / 86400
    assert round(days_left) == auth["token"]["days_left"]
    assert one(metrics["envoylog_gateway_info"], gateway="default", serial=site.sim.serial) == 1
    # No CTs: the site's power comes from the inverters; the grid counters of a CT are absent.
    assert "envoylog_grid_import_energy_joules" not in metrics


def test_a_legacy_gateway_has_no_token_metric(start_site: Callable[[str], Site], tmp_path: Path) -> None:
    start_site("legacy")
    path = tmp_path / "envoylog.prom"
    assert envoylog("collect", "--textfile", str(path)).exit_code == 0
    metrics = families(path)
    assert "envoylog_token_expiry_timestamp_seconds" not in metrics
    assert one(metrics["envoylog_run_cloud_requests"], gateway="default") == 0
    assert one(metrics["envoylog_run_success"], gateway="default") == 1


def test_a_gateway_that_never_answered_has_its_run_metrics_only(
    start_site: Callable[[str], Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = start_site("metered")
    monkeypatch.setenv("ENVOYLOG_HOST", DEAD_HOST)
    path = tmp_path / "envoylog.prom"
    result = envoylog("collect", "--textfile", str(path))
    assert result.exit_code == 4, result.stderr  # unreachable, as without --textfile
    metrics = families(path)
    assert set(metrics) == {
        "envoylog_run_timestamp_seconds",
        "envoylog_run_success",
        "envoylog_run_outcome",
        "envoylog_run_duration_seconds",
        "envoylog_run_requests",
        "envoylog_run_cloud_requests",
        "envoylog_run_rows_added",
    }
    assert one(metrics["envoylog_run_success"], gateway="default") == 0
    assert one(metrics["envoylog_run_outcome"], gateway="default", outcome="failed") == 1
    assert one(metrics["envoylog_run_rows_added"], gateway="default") == 0
    assert site.rows() == {"meter_readings": 0, "inverter_readings": 0, "battery_readings": 0}


def test_odd_gateway_names_are_escaped(site: Site, tmp_path: Path) -> None:
    odd = 'roof "south"\\east\nand west'
    path = tmp_path / "envoylog.prom"
    site.collect(site.settings(name=odd), textfile=path)
    metrics = families(path)
    assert {s.labels["gateway"] for s in metrics["envoylog_inverter_power_watts"].samples} == {odd}
    assert one(metrics["envoylog_run_success"], gateway=odd) == 1
    assert len(path.read_text().splitlines()) == sum(  # no label broke a line
        2 + len(family.samples) for family in metrics.values()
    )


def test_the_format_alone_leaves_out_what_was_never_read() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    run = RunFacts("home", "122", "partial", 1.5, 7, 0, 3)
    reading = Latest("production", 0, "", now, {"watts": 500.0, "wh_lifetime": None})
    state = GatewayState(run, "122", "8.2.4345", (reading,), None, None)
    metrics = {f.name: f for f in text_string_to_metric_families(format_textfile([state], now))}
    assert one(metrics["envoylog_power_watts"], kind="production") == 500
    assert "envoylog_energy_joules" not in metrics  # a lifetime the gateway did not give is absent, not 0
    assert "envoylog_last_success_timestamp_seconds" not in metrics
    assert one(metrics["envoylog_run_success"]) == 1  # partial: readings were stored


# --- how the file is written -------------------------------------------------------------------------


def test_a_second_run_replaces_the_file_whole(site: Site, tmp_path: Path) -> None:
    directory = tmp_path / "textfiles"
    directory.mkdir()
    path = directory / "envoylog.prom"
    site.collect(textfile=path)
    first_text, first_inode = path.read_text(), path.stat().st_ino
    first = families(path)
    site.sim.clock.advance(timedelta(minutes=5))
    site.collect(textfile=path)
    second = families(path)
    # A new file took the old one's name (a reader holding the old one reads it whole); nothing was appended.
    assert path.stat().st_ino != first_inode
    assert path.read_text().count("# TYPE envoylog_power_watts gauge") == 1
    assert sorted(os.listdir(directory)) == ["envoylog.prom"]  # no temporary file left behind
    assert path.read_text() != first_text
    assert one(second["envoylog_run_timestamp_seconds"]) > one(first["envoylog_run_timestamp_seconds"])
    # The house's consumption counts on at night too (production stands still after sunset).
    consumption = {"kind": "consumption", "phase": "all"}
    assert one(second["envoylog_energy_joules"], **consumption) > one(
        first["envoylog_energy_joules"], **consumption
    )


def test_a_directory_that_is_missing_is_refused_before_the_run(cli_site: Site, tmp_path: Path) -> None:
    cli_site.sim.clear_request_log()
    result = envoylog("collect", "--textfile", str(tmp_path / "missing" / "envoylog.prom"))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"{ERROR_PREFIX}--textfile: the directory {tmp_path / 'missing'} does not exist\n"
    assert cli_site.sim.request_log() == []  # refused before the gateway was asked anything


@pytest.mark.parametrize("name", ["envoylog.txt", "envoylog"])
def test_a_name_node_exporter_would_not_read_is_refused(cli_site: Site, tmp_path: Path, name: str) -> None:
    result = envoylog("collect", "--textfile", str(tmp_path / name))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{ERROR_PREFIX}--textfile must end in .prom")
    assert len(result.stderr.splitlines()) == 1


def test_a_write_that_fails_after_the_run_keeps_the_readings_and_exits_2(
    cli_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk, at the outermost edge: the operating system refuses the rename onto the textfile.
    rename = os.replace

    def full(source: Any, target: Any) -> None:
        if str(target).endswith(".prom"):
            raise OSError(28, "No space left on device")
        rename(source, target)

    monkeypatch.setattr(os, "replace", full)
    path = tmp_path / "envoylog.prom"
    result = envoylog("collect", "--textfile", str(path))
    monkeypatch.undo()
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        f"{ERROR_PREFIX}cannot write the Prometheus textfile {path}: No space left on device "
        "(the readings are stored)\n"
    )
    assert cli_site.rows()["inverter_readings"] == 30
    assert not path.exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".envoylog.prom.")]


def test_the_python_api_hands_back_the_runs_with_the_failure(site: Site, tmp_path: Path) -> None:
    path = tmp_path / "gone" / "envoylog.prom"
    with pytest.raises(HandOffFailed) as failed:
        collect_all(site.settings(), cloud_verify=str(site.sim.ca_file), textfile=path)
    (run,) = failed.value.runs
    assert run.outcome == "ok" and run.rows_added["inverter"] == 30
    assert failed.value.status == 2
    assert str(failed.value).startswith(f"cannot write the Prometheus textfile {path}: ")
    assert site.rows()["inverter_readings"] == 30


# --- collect --every ---------------------------------------------------------------------------------


def _runs(site: Site) -> int:
    try:
        return int(site.query("SELECT COUNT(*) FROM runs WHERE finished_at IS NOT NULL")[0][0])
    except SQLAlchemyError:  # the schema is not there yet: the process is still starting
        return 0


def _wait(condition: Callable[[], bool], process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached; the collector exited with {process.poll()}")


def test_collect_every_keeps_writing_and_goes_on_when_a_write_fails(cli_site: Site, tmp_path: Path) -> None:
    path = tmp_path / "envoylog.prom"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(ROOT),
        **cli_site.sim.environment(),
        "ENVOYLOG_DB": cli_site.db_url,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "envoylog", "collect", "--every", "1", "--textfile", str(path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def written_after(when: float) -> Callable[[], bool]:
        def check() -> bool:
            try:
                return path.is_file() and one(families(path)["envoylog_run_timestamp_seconds"]) > when
            except (OSError, KeyError, ValueError):
                return False

        return check

    try:
        _wait(written_after(0), process)
        first = one(families(path)["envoylog_run_timestamp_seconds"])
        _wait(written_after(first), process)  # a later cycle wrote it again
        # A directory where the file should be: the next cycles cannot write it, and go on polling.
        while not path.is_dir():
            path.unlink(missing_ok=True)
            try:
                path.mkdir()
            except FileExistsError:
                continue
        runs = _runs(cli_site)
        _wait(lambda: _runs(cli_site) >= runs + 2, process)
        path.rmdir()
        _wait(written_after(first), process)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        if path.is_dir():
            shutil.rmtree(path)
    assert process.returncode == 0 and out == ""
    lines = err.splitlines()
    assert lines and all(
        line.startswith(f"{ERROR_PREFIX}cannot write the Prometheus textfile {path}: ") for line in lines
    ), err
    assert one(families(path)["envoylog_run_success"]) == 1
