"""The README cannot drift: its tour runs as printed, and what it shows is what the program prints.

The tour is every `$ envoylog ...` line of the README's ```text blocks, run in order in one user's home
after the README's first command (`envoylog demo`), against the demo's database as the README says. The
output is compared by shape (times, numbers, paths and widths may differ; the lines, their words and their
order may not), with `...` in the README standing for lines left out. The README's Python blocks run as
printed too, and so does its recipe for opening the notebooks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import nbformat
import pytest
from conftest import DemoRun, user_environment
from nbclient import NotebookClient
from urllib3.exceptions import InsecureRequestWarning

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The day the README's samples were made: dates in its commands move with the day the test runs.
SAMPLES_MADE = date(2026, 11, 28)
DEMO_ZONE = "Europe/Amsterdam"
SKIPPED = "..."

_SHAPES = [
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"), "<time>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "<date>"),
    (re.compile(r"https?://[\w.:-]+"), "<url>"),
    (re.compile(r"(?<![\w.])(?:~|/[\w.@-]+)(?:/[\w.@-]+)+/?"), "<path>"),
    (re.compile(r"\b\d{1,2}:\d{2}\b"), "<hh:mm>"),
    (re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?%?"), "<n>"),
]


def shape(line: str) -> str:
    """A line with what may differ between runs replaced by its kind, and spacing collapsed."""
    for pattern, kind in _SHAPES:
        line = pattern.sub(kind, line)
    return " ".join(line.split())


def fenced_blocks(language: str) -> list[str]:
    """The bodies of the README's fenced blocks in `language`, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(encoding="utf-8"), re.S | re.M)


@dataclass
class Step:
    """One `$ command` of the tour and the lines the README shows after it."""

    command: str
    expected: list[str]


def tour() -> list[Step]:
    """Every `$ envoylog ...` of the README's text blocks, with the output it shows, in order."""
    steps: list[Step] = []
    for block in fenced_blocks("text"):
        lines = block.splitlines()
        if not lines or not lines[0].startswith("$ envoylog"):
            continue
        for line in lines:
            if line.startswith("$ "):
                steps.append(Step(line[2:], []))
            else:
                steps[-1].expected.append(line)
    return steps


def same_shape(expected: list[str], actual: list[str]) -> bool:
    """Whether the lines match by shape, `...` in `expected` standing for any number of lines."""
    if not expected:
        return not actual
    if expected[0] == SKIPPED:
        return any(same_shape(expected[1:], actual[index:]) for index in range(len(actual) + 1))
    return bool(actual) and shape(expected[0]) == shape(actual[0]) and same_shape(expected[1:], actual[1:])


def shifted(command: str, today: date) -> str:
    """The command with its dates moved by as many days as the test runs after the samples were made."""
    offset = today - SAMPLES_MADE
    return re.sub(
        r"\b\d{4}-\d{2}-\d{2}\b",
        lambda match: (date.fromisoformat(match.group(0)) + offset).isoformat(),
        command,
    )


def test_the_readme_has_a_tour_that_starts_with_the_first_command() -> None:
    steps = tour()
    assert steps[0].command == "envoylog demo"
    first_command = fenced_blocks("sh")[0].strip().splitlines()[-1]
    assert first_command == "python3 -m pip install . && envoylog demo"
    assert len(steps) >= 8


def test_the_first_command_prints_what_the_readme_shows(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.stderr
    assert same_shape(tour()[0].expected, demo_run.stdout.splitlines()), demo_run.stdout


def test_every_command_of_the_tour_prints_what_the_readme_shows(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.stderr
    # The README points the commands at the demo's database, in the simulated site's zone.
    env = user_environment(
        demo_run.home, ENVOYLOG_DB=f"sqlite:///{demo_run.database}", ENVOYLOG_TIMEZONE=DEMO_ZONE
    )
    today = datetime.now(UTC).astimezone(ZoneInfo(DEMO_ZONE)).date()
    for step in tour()[1:]:
        command = shifted(step.command, today)
        done = subprocess.run(
            ["bash", "-c", command], env=env, cwd=demo_run.home, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (command, done.stderr)
        assert done.stderr == "", (command, done.stderr)
        actual = done.stdout.splitlines()
        assert same_shape(step.expected, actual), f"$ {command}\n{done.stdout}"


def test_the_python_examples_run_as_printed(
    demo_run: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [variable for variable in os.environ if variable.startswith("ENVOYLOG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(demo_run.home))
    monkeypatch.setenv("ENVOYLOG_DB", f"sqlite:///{demo_run.database}")
    monkeypatch.setenv("ENVOYLOG_TIMEZONE", DEMO_ZONE)
    monkeypatch.chdir(tmp_path)
    blocks = fenced_blocks("python")
    assert len(blocks) >= 3
    for block in blocks:
        with warnings.catch_warnings():
            # What a user sees as a warning: the README's client talks to a self-signed gateway.
            warnings.simplefilter("ignore", InsecureRequestWarning)
            exec(compile(block, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - our own README


@pytest.mark.slow
def test_the_notebook_recipe_works_as_printed(tmp_path: Path) -> None:
    (recipe,) = [block for block in fenced_blocks("sh") if "jupyter lab" in block]
    fill, open_notebook = recipe.strip().splitlines()
    checkout = tmp_path / "checkout"  # where the user stands: a checkout with its notebooks/
    shutil.copytree(ROOT / "notebooks", checkout / "notebooks")
    (tmp_path / "home").mkdir()
    env = user_environment(tmp_path / "home", ENVOYLOG_TIMEZONE=DEMO_ZONE, PWD=str(checkout))
    done = subprocess.run(["bash", "-c", fill], env=env, cwd=checkout, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # `VARIABLE=value jupyter lab PATH`: the value as the shell expands it; the kernel runs in the folder.
    match = re.fullmatch(r'(\w+)="?([^"\s]+)"? jupyter lab (\S+)', open_notebook)
    assert match, open_notebook
    variable, value, notebook_path = match.groups()
    expanded = subprocess.run(
        ["bash", "-c", f'printf %s "{value}"'], env=env, cwd=checkout, capture_output=True, text=True
    ).stdout
    notebook_file = checkout / notebook_path
    notebook = nbformat.read(notebook_file, as_version=4)
    kernel_env = {**env, variable: expanded}
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(kernel_env)  # the kernel inherits it, as it does from `jupyter lab`
        NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=300,
            resources={"metadata": {"path": str(notebook_file.parent)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert not (notebook_file.parent / "demo.db").exists()  # no stray database beside the notebook


def test_shape_tells_a_different_line_from_a_different_number() -> None:
    assert shape("  production   1,488.6 W  at 2026-11-24T08:40:13Z") == shape(
        "  production 3.0 W  at 2027-01-01T00:00:00Z"
    )
    assert shape("gateway 122238082763 (demo)") != shape("gateway 122238082763 (home)")
    assert same_shape(["a 1", SKIPPED, "z 2"], ["a 3", "b", "c", "z 4"])
    assert not same_shape(["a 1", "z 2"], ["a 3", "b", "z 4"])
    assert shifted("report --day 2026-11-27", SAMPLES_MADE + timedelta(days=3)) == "report --day 2026-11-30"
