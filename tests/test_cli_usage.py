"""The command line as a user types it: global options anywhere, one-line usage errors, help that tells.

Every command is found by walking the command tree, so a command added later is held to the same rules.
"""

from __future__ import annotations

import enum
import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from envoylog.cli import DemoProfile, SimulatorProfile, app, cron
from envoylog.config import ENVIRONMENT
from envoylog.simulator.profiles import PROFILES

runner = CliRunner()

# What a command needs on its command line besides the global options.
REQUIRED = {"export": ["--from", "2026-11-20"], "auth set-token": ["eyJhbGciOiJIUzI1NiJ9.e30.c2ln"]}
# The commands that only read (`check` writes only what it said): they refuse a database that does not exist
# and create nothing.
READ_ONLY = ["latest", "status", "report", "check", "export", "auth status", "auth logout", "db current"]
# The commands that may create a database.
CREATING = ["collect", "demo", "db upgrade", "auth login", "auth set-token"]
NOT_DATABASE = ["simulate"]


def leaf_commands() -> Iterator[tuple[str, Any]]:
    """Every command a user can run, as 'auth status', with its click command."""

    def walk(prefix: str, group: Any) -> Iterator[tuple[str, Any]]:
        for name, command in group.commands.items():
            path = f"{prefix} {name}".strip()
            if hasattr(command, "commands"):
                yield from walk(path, command)
            else:
                yield path, command

    yield from walk("", typer.main.get_command(app))


COMMANDS = [path for path, _ in leaf_commands()]


def envoylog(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


def one_error_line(result: Result) -> str:
    """The single `envoylog: error: ...` line a failing command prints (and nothing on stdout)."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("envoylog: error: "), lines[0]
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
    return lines[0]


def test_every_command_is_classified() -> None:
    assert sorted(COMMANDS) == sorted(READ_ONLY + CREATING + NOT_DATABASE)


# --- global options after the subcommand ------------------------------------------------------------


@pytest.mark.parametrize("command", READ_ONLY)
def test_a_read_only_command_takes_db_after_its_name_and_creates_nothing(
    command: str, tmp_path: Path, isolated_env: Path
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    args = [*command.split(), *REQUIRED.get(command, []), "--db", f"sqlite:///{missing}"]
    line = one_error_line(result := envoylog(*args))
    assert result.exit_code == 2
    assert line == f"envoylog: error: no database at {missing}: run envoylog collect or envoylog demo first"
    assert not missing.parent.parent.exists()


@pytest.mark.parametrize("command", READ_ONLY)
def test_a_read_only_command_takes_config_after_its_name(
    command: str, tmp_path: Path, isolated_env: Path
) -> None:
    missing = tmp_path / "from-config.db"
    config = tmp_path / "config.toml"
    config.write_text(f'db = "sqlite:///{missing}"\n')
    result = envoylog(*command.split(), *REQUIRED.get(command, []), "--config", str(config))
    assert result.exit_code == 2
    assert f"no database at {missing}" in one_error_line(result)
    assert not missing.exists()


def test_the_value_given_last_wins(tmp_path: Path, isolated_env: Path) -> None:
    real, other = tmp_path / "real.db", tmp_path / "other.db"
    assert envoylog("--db", f"sqlite:///{real}", "db", "upgrade").exit_code == 0
    after = envoylog("--db", f"sqlite:///{other}", "latest", "--db", f"sqlite:///{real}")
    assert after.exit_code == 0 and "nothing stored yet" in after.stdout
    twice = envoylog("latest", "--db", f"sqlite:///{real}", "--db", f"sqlite:///{other}")
    assert twice.exit_code == 2 and f"no database at {other}" in one_error_line(twice)
    nested = envoylog("--db", f"sqlite:///{other}", "auth", "--db", f"sqlite:///{other}", "status", "--db",
                      f"sqlite:///{real}")  # fmt: skip
    assert nested.exit_code == 0 and nested.stdout.startswith("no gateway known yet")


def test_verbose_after_the_subcommand_tells_what_happens(tmp_path: Path, isolated_env: Path) -> None:
    database = tmp_path / "x.db"
    quiet = envoylog("db", "upgrade", "--db", f"sqlite:///{database}")
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    verbose = envoylog("db", "upgrade", "--db", f"sqlite:///{database}", "-v")
    assert verbose.exit_code == 0 and verbose.stderr.startswith("database already at revision ")


def test_collect_takes_every_global_option_after_its_name(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVOYLOG_HOST", "127.0.0.1:9")  # nothing listens there: refused at once
    config = tmp_path / "config.toml"
    config.write_text('timezone = "Europe/Amsterdam"\n')
    database = tmp_path / "logs" / "envoylog.db"
    result = envoylog("collect", "--db", f"sqlite:///{database}", "--config", str(config), "-v")
    assert result.exit_code == 4
    assert "default (unknown serial): failed" in result.stderr  # the -v run summary
    assert database.exists()  # collect may create its database


def test_auth_status_takes_db_and_verbose_after_the_subcommand(tmp_path: Path, isolated_env: Path) -> None:
    database = tmp_path / "x.db"
    assert envoylog("db", "upgrade", "--db", f"sqlite:///{database}").exit_code == 0
    result = envoylog("auth", "status", "--db", f"sqlite:///{database}", "-v", "--format", "json")
    assert result.exit_code == 0 and result.stdout.strip().startswith('{\n  "gateways": []')


# --- usage errors -------------------------------------------------------------------------------------

USAGE_ERRORS = [
    (["colect"], "No such command 'colect'. Did you mean 'collect'? (see envoylog --help)"),
    (
        ["auth", "sett-token"],
        "No such command 'sett-token'. Did you mean 'set-token'? (see envoylog auth --help)",
    ),
    (
        ["report", "--format", "xml"],
        "Invalid value for '--format': 'xml' is not one of 'table', 'csv', 'json'. "
        "(see envoylog report --help)",
    ),
    (
        ["report", "--formt", "json"],
        "No such option: --formt. Did you mean --format? (see envoylog report --help)",
    ),
    (["export"], "Missing option '--from'. (see envoylog export --help)"),
    (
        ["export", "--from", "2026-11-20", "--table", "inverter"],
        "Invalid value for '--table': 'inverter' is not one of 'meters', 'inverters', 'batteries'. "
        "(see envoylog export --help)",
    ),
    (["collect", "--every"], "Option '--every' requires an argument."),
    (["demo", "--days", "many"], "Invalid value for '--days': "),
    (
        ["report", "--day", "2026-13-01"],
        "bad --day '2026-13-01': expected a date like 2026-06-21, today or yesterday",
    ),
    (["report", "--month", "June"], "bad --month 'June': expected YYYY-MM, e.g. 2026-06"),
    (["auth", "set-token"], "Missing argument 'TOKEN'. (see envoylog auth set-token --help)"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS, ids=lambda value: " ".join(value)[:40])
def test_a_usage_error_is_one_line_and_exit_2(args: list[str], message: str, isolated_env: Path) -> None:
    result = envoylog(*args)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"envoylog: error: {message}")


def test_no_arguments_print_the_short_help() -> None:
    short = envoylog()
    assert short.exit_code == 0 and short.stderr == ""
    assert short.stdout.startswith("Usage: envoylog [OPTIONS] COMMAND [ARGS]...")
    for command in ("collect", "report", "demo", "auth", "db"):
        assert re.search(rf"^  {command} ", short.stdout, re.MULTILINE), command
    assert len(short.stdout) < len(envoylog("--help").stdout) / 2
    group = envoylog("auth")
    assert group.exit_code == 0 and "set-token" in group.stdout


# --- help ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_global_options_choices_and_no_placeholders(command: str) -> None:
    result = envoylog(*command.split(), "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "--db URL" in text and "[env: ENVOYLOG_DB]" in " ".join(text.split())
    assert "--config FILE" in text and "[env: ENVOYLOG_CONFIG]" in " ".join(text.split())
    assert "-v, --verbose" in text
    # A flag has no value to show; every other option's value has a name the reader understands.
    options = text.split("\nOptions:\n", 1)[1]
    assert not re.search(r"<(bool|str|int|float|path)>", options), options
    for name, choices in choice_options(command).items():
        listed = "<" + "|".join(choices) + ">"
        # Each choice shown: as the option's value, or (a long list) in its help text.
        assert listed in text or all(choice in " ".join(text.split()) for choice in choices), name


def choice_options(command: str) -> dict[str, list[str]]:
    """The options of `command` whose values are a fixed set (an Enum), with their values."""
    registry: Any = app
    *groups, name = command.split()
    for group in groups:
        registry = next(g.typer_instance for g in registry.registered_groups if g.name == group)
    (info,) = [c for c in registry.registered_commands if (c.name or c.callback.__name__) == name]
    choices = {}
    for parameter in inspect.signature(info.callback, eval_str=True).parameters.values():
        kind = typing.get_args(parameter.annotation)[0] if typing.get_args(parameter.annotation) else None
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            choices[parameter.name] = [str(member.value) for member in kind]
    return choices


def test_main_help_names_every_environment_variable_and_the_exit_codes() -> None:
    text = envoylog("--help").stdout
    for variable in ENVIRONMENT:
        assert re.search(rf"^\s+{variable}\s+\S", text, re.MULTILINE), variable
    for code in range(7):
        assert re.search(rf"^\s+{code}\s+\w", text, re.MULTILINE), code
    assert "--install-completion" in text


def test_shell_completion_can_be_installed(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Name the shell rather than have it detected from the processes that run the tests.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    shown = envoylog("--show-completion", "bash")
    assert shown.exit_code == 0, (shown.stdout, shown.stderr, shown.exception)
    assert "_ENVOYLOG_COMPLETE" in shown.stdout and "complete " in shown.stdout
    installed = envoylog("--install-completion", "bash")
    assert installed.exit_code == 0, (installed.stdout, installed.stderr, installed.exception)
    assert "envoylog" in (isolated_env / ".bashrc").read_text()


def test_profile_choices_are_the_simulators_profiles() -> None:
    assert [profile.value for profile in SimulatorProfile] == list(PROFILES)
    assert {profile.value for profile in DemoProfile} <= set(PROFILES)


# --- the cron path: a plain `collect` is read without Typer (cli/cron.py) -----------------------------

PLAIN_COLLECT_LINES = [
    ["collect"],
    ["--db", "sqlite:///a.db", "collect"],
    ["collect", "--db=sqlite:///b.db", "-v"],
    ["-v", "--config", "c.toml", "collect", "--deadline", "30", "--every=60", "--textfile", "x.prom"],
    ["--db", "sqlite:///a.db", "collect", "--db", "sqlite:///b.db", "--config=d.toml"],
    ["collect", "--deadline", "1.5", "--deadline", "2", "--verbose"],
    ["--db", "collect", "collect"],
    ["collect", "--textfile=/var/lib/node exporter/envoylog.prom", "--deadline=0"],
]
# Command lines the cron path leaves to Typer: it answers them as it always did.
NOT_PLAIN = [
    [],
    ["-h"],
    ["--version", "collect"],
    ["collect", "--help"],
    ["collect", "-vv"],
    ["collect", "--verbose=1"],
    ["collect", "--every"],
    ["collect", "--deadline", "1e3"],
    ["collect", "--deadline", "-1"],
    ["collect", "--deadline", " 5"],
    ["collect", "--db", ""],
    ["collect", "--", "--db"],
    ["--every", "5", "collect"],
    ["collect", "extra"],
    ["collect", "collect"],
    ["latest"],
]


@pytest.fixture
def collect_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `collect` is asked for, by either path, instead of collecting."""
    calls: list[dict[str, Any]] = []

    def record(options: Any, every: float | None, deadline: float, textfile: Path | None) -> None:
        calls.append(
            {
                "db": options.db,
                "config": options.config,
                "verbose": options.verbose,
                "every": every,
                "deadline": deadline,
                "textfile": textfile,
            }
        )

    monkeypatch.setattr(cron, "collect", record)
    return calls


def by_both_paths(args: list[str], calls: list[dict[str, Any]]) -> tuple[Any, Any]:
    """What Typer asks `collect` for, and what the cron path does (None: it leaves the line to Typer)."""
    result = envoylog(*args)
    assert result.exit_code == 0, (args, result.stderr)
    by_typer = calls.pop()
    try:
        cron.run_plain_collect(args)
        return by_typer, None
    except SystemExit as exc:
        assert exc.code == 0
    return by_typer, calls.pop()


@pytest.mark.parametrize("args", PLAIN_COLLECT_LINES, ids=" ".join)
def test_a_plain_collect_line_means_the_same_without_typer(
    args: list[str], collect_calls: list[dict[str, Any]]
) -> None:
    by_typer, by_cron = by_both_paths(args, collect_calls)
    assert by_cron == by_typer


@pytest.mark.parametrize("args", NOT_PLAIN, ids=" ".join)
def test_anything_but_a_plain_collect_line_is_left_to_typer(args: list[str]) -> None:
    assert cron.read_collect_line(args) is None


GLOBAL_WORDS = [["-v"], ["--verbose"], ["--db", "a.db"], ["--db=b.db"], ["--config", "c"], ["--config=d"]]
COLLECT_WORDS = [["--every", "60"], ["--every=1.5"], ["--deadline", "30"], ["--deadline=2.5"]]
COLLECT_WORDS += [["--textfile", "x.prom"], ["--textfile=y.prom"]]
ODD_WORDS = ["collect", "--db", "--every", "-vv", "-1", "1e2", "", "--help", "x", "--textfile=-"]


@given(
    before=st.lists(st.sampled_from(GLOBAL_WORDS), max_size=3),
    after=st.lists(st.sampled_from(GLOBAL_WORDS + COLLECT_WORDS), max_size=5),
    odd=st.none() | st.tuples(st.integers(min_value=0), st.sampled_from(ODD_WORDS)),
)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_whatever_the_cron_path_reads_typer_reads_the_same(
    before: list[list[str]],
    after: list[list[str]],
    odd: tuple[int, str] | None,
    collect_calls: list[dict[str, Any]],
) -> None:
    args = [word for option in [*before, ["collect"], *after] for word in option]
    if odd is not None:  # a word out of place: the cron path reads the line the same as Typer, or not at all
        where, word = odd
        args.insert(where % (len(args) + 1), word)
    if cron.read_collect_line(args) is None:
        return
    by_typer, by_cron = by_both_paths(args, collect_calls)
    assert by_cron == by_typer
