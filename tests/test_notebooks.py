"""The notebooks in notebooks/: committed without outputs, and running cleanly against a demo database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import typer
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from typer.testing import CliRunner

from envoylog.cli import app

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Each notebook and the fewest charts it draws from a demo database with one gateway.
CHARTS = {"daily_yield.ipynb": 3, "inverters.ipynb": 2}
DEMO_DAYS = 3
ZONE = "Europe/Amsterdam"


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _demo_fills_days() -> bool:
    demo = typer.main.get_command(app).commands["demo"]
    return any(param.name == "days" for param in demo.params)


def test_every_notebook_is_tested() -> None:
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == sorted(CHARTS)


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_committed_notebooks_have_no_outputs(name: str) -> None:
    notebook = _read(name)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert (cell.outputs, cell.execution_count) == ([], None), cell.source[:60]


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SQLite file that `envoylog demo --days 3` filled with simulated history, and the user env set."""
    if not _demo_fills_days():
        pytest.skip("`envoylog demo --days N` is not there yet: the notebooks need its simulated history")
    directory = tmp_path_factory.mktemp("notebooks")
    url = f"sqlite:///{directory / 'demo.db'}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        for variable in list(os.environ):
            if variable.startswith("ENVOYLOG_"):
                monkeypatch.delenv(variable)
        home = directory / "home"
        home.mkdir()
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
        monkeypatch.setenv("ENVOYLOG_TIMEZONE", ZONE)
        result = CliRunner().invoke(app, ["--db", url, "demo", "--days", str(DEMO_DAYS)])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        # The notebooks find the database as a user points them at it, and their kernel inherits it.
        monkeypatch.setenv("ENVOYLOG_DB", url)
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHARTS))
def test_notebook_runs_against_a_demo_database(name: str, demo_database: str, tmp_path: Path) -> None:
    notebook = _read(name)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    charts = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(charts) >= CHARTS[name], f"{name} drew {len(charts)} charts"
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "No data" not in printed and "No inverter energy" not in printed, printed


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHARTS))
@pytest.mark.parametrize("database", ["missing", "empty"])
def test_notebook_stops_with_one_clear_message_without_data(
    name: str, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data" / "envoylog.db"
    url = f"sqlite:///{path}"
    if database == "empty":
        assert CliRunner().invoke(app, ["--db", url, "db", "upgrade"]).exit_code == 0
    for variable in list(os.environ):
        if variable.startswith("ENVOYLOG_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("ENVOYLOG_DB", url)
    monkeypatch.setenv("ENVOYLOG_TIMEZONE", ZONE)
    notebook = _read(name)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError):
        client.execute()
    errors = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    errors = [output for output in errors if output.output_type == "error"]
    assert len(errors) == 1
    (line,) = errors[0].traceback  # one line, no traceback: the message is what the user needs
    expected = (
        f"envoylog: error: no database at {path}: run envoylog collect or envoylog demo first"
        if database == "missing"
        else "envoylog: error: no "
    )
    assert line.startswith(expected), line
    assert path.exists() == (database == "empty")  # a missing database stays missing, folder and all
    assert path.parent.exists() == (database == "empty")
